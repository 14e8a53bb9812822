// Ding extraction (see ding.h for the rules and why). Line parsing is separate from selection so that the
// rules can be tested on hand-written lines and fuzzed.
#include "models/data/ding.h"

#include "autograd/error.h"

#include <fstream>
#include <sstream>
#include <unordered_set>

namespace gradformer::data {
namespace {

std::vector<std::string_view> split_on(std::string_view text, std::string_view separator) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  for (size_t found = text.find(separator); found != std::string_view::npos; found = text.find(separator, pos)) {
    parts.push_back(text.substr(pos, found - pos));
    pos = found + separator.size();
  }
  parts.push_back(text.substr(pos));
  return parts;
}

bool ends_sentence(std::string_view text) {
  return !text.empty() && (text.back() == '.' || text.back() == '!' || text.back() == '?');
}

bool has_placeholder(const std::vector<std::string>& words) {
  for (const std::string& word : words) {
    for (const char* placeholder : {"jdn.", "jdm.", "jds.", "etw.", "sb.", "sth.", "sb's", "sb.'s"}) {
      if (word.find(placeholder) != std::string::npos) return true;
    }
  }
  return false;
}

}  // namespace

std::string strip_ding_annotations(std::string_view text) {
  std::string kept;
  int depth = 0;
  for (const char c : text) {
    if (c == '{' || c == '[' || c == '<' || c == '(') {
      ++depth;
    } else if (depth > 0 && (c == '}' || c == ']' || c == '>' || c == ')')) {
      --depth;
      if (depth == 0) kept += ' ';  // "a(b)c" becomes "a c", not "ac"
    } else if (depth == 0) {
      kept += c;
    }
  }
  std::string out;
  for (const std::string& word : split_whitespace(kept)) {
    if (word.size() > 2 && word.front() == '/' && word.back() == '/') continue;  // "/HI/" abbreviations
    const bool glue = word.size() == 1 && std::string_view(",.!?;:").find(word[0]) != std::string_view::npos;
    if (!out.empty() && !glue) out += ' ';
    out += word;
  }
  return out;
}

std::vector<DingPair> parse_ding_line(std::string_view line) {
  std::vector<DingPair> pairs;
  if (line.empty() || line.front() == '#') return pairs;
  const std::vector<std::string_view> sides = split_on(line, " :: ");
  if (sides.size() != 2) return pairs;
  const std::vector<std::string_view> german = split_on(sides[0], " | ");
  const std::vector<std::string_view> english = split_on(sides[1], " | ");
  if (german.size() != english.size()) return pairs;
  for (size_t i = 0; i < german.size(); ++i) {
    // Strip first: annotations such as "(Anguilliformes; zoologische Ordnung)" may hold a "; " of their own.
    DingPair pair{strip_ding_annotations(german[i]), strip_ding_annotations(english[i])};
    for (std::string* side : {&pair.german, &pair.english}) {
      const size_t semicolon = side->find(';');
      if (semicolon != std::string::npos) *side = strip_ding_annotations(side->substr(0, semicolon));
    }
    if (pair.german.empty() || pair.english.empty()) continue;
    pairs.push_back(std::move(pair));
  }
  return pairs;
}

Splits parse_ding(std::string_view text, DingPart part, DingReport* report) {
  DingReport local;
  DingReport& counts = report != nullptr ? *report : local;
  counts = DingReport{};
  Splits splits;
  std::unordered_set<std::string> seen;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++counts.lines;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line.front() == '#') {
      ++counts.comments;
      continue;
    }
    const size_t separators = split_on(line, " :: ").size() - 1;
    if (separators != 1) {
      ++counts.malformed;
      continue;
    }
    const std::vector<DingPair> pairs = parse_ding_line(line);
    if (pairs.empty() && split_on(line.substr(0, line.find(" :: ")), " | ").size() !=
                             split_on(line.substr(line.find(" :: ") + 4), " | ").size()) {
      ++counts.misaligned;
      continue;
    }
    for (const DingPair& pair : pairs) {
      ++counts.pairs;
      if (pair.german.find("…") != std::string::npos || pair.english.find("…") != std::string::npos ||
          pair.german.find('/') != std::string::npos || pair.english.find('/') != std::string::npos) {
        continue;
      }
      const std::vector<std::string> german_words = split_whitespace(pair.german);
      const std::vector<std::string> english_words = split_whitespace(pair.english);
      const bool both_end = ends_sentence(pair.german) && ends_sentence(pair.english);
      bool wanted = false;
      if (part == DingPart::sentences) {
        wanted = both_end && german_words.size() >= 3 && german_words.size() <= 15 && english_words.size() >= 3 &&
                 english_words.size() <= 15 && !has_placeholder(german_words) && !has_placeholder(english_words);
      } else {
        wanted = !both_end && german_words.size() >= 2 && german_words.size() <= 8 && english_words.size() >= 2 &&
                 english_words.size() <= 8;
      }
      if (!wanted || !seen.insert(pair.english).second) continue;
      ++counts.selected;
      const uint64_t bucket = fnv1a64(pair.english) % 100;
      auto& split = bucket == 0 ? splits.valid : bucket == 1 ? splits.test : splits.train;
      split.push_back({pair.english, pair.german});
    }
  }
  return splits;
}

Splits load_ding(const std::string& path, DingPart part, DingReport* report) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fail<IOError>("ding " + path,
                  "cannot open for reading (the Ding dictionary comes with Debian's trans-de-en: "
                  "apt-get install trans-de-en)");
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_ding(buffer.str(), part, report);
}

}  // namespace gradformer::data

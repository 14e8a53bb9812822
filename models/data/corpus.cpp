// The TSV reader/writer, the distinct-source split helper and the copy/reverse tasks declared in corpus.h.
// The parser works on a string_view so a fuzzer can feed it arbitrary bytes; files are read whole first.
#include "models/data/corpus.h"

#include "autograd/error.h"
#include "models/data/utf8.h"
#include "nn/output_file.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

namespace gradformer::data {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

// The first max_tokens tokens rejoined by single spaces; `cut` tells whether anything was dropped.
std::string truncate_tokens(std::string_view text, size_t max_tokens, bool& cut) {
  std::vector<std::string> tokens = split_whitespace(text);
  cut = tokens.size() > max_tokens;
  if (!cut) return std::string(text);
  std::string out;
  for (size_t i = 0; i < max_tokens; ++i) {
    if (i > 0) out += ' ';
    out += tokens[i];
  }
  return out;
}

std::string random_symbols(Generator& gen) {
  const size_t length = 3 + gen.below(8);  // 3..10
  std::string out;
  for (size_t i = 0; i < length; ++i) {
    if (i > 0) out += ' ';
    out += std::to_string(1 + gen.below(20));
  }
  return out;
}

}  // namespace

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> tokens;
  size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && is_space(text[pos])) ++pos;
    const size_t start = pos;
    while (pos < text.size() && !is_space(text[pos])) ++pos;
    if (pos > start) tokens.emplace_back(text.substr(start, pos - start));
  }
  return tokens;
}

uint64_t fnv1a64(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::vector<SentencePair> parse_tsv(std::string_view text, std::string_view name, const TsvOptions& options,
                                    TsvReport* report) {
  TsvReport local;
  TsvReport& counts = report != nullptr ? *report : local;
  counts = TsvReport{};
  std::vector<SentencePair> pairs;
  size_t line_number = 0;
  // A byte-order mark (Windows editors write one) is no part of the first sentence.
  size_t pos = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    ++counts.lines;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (std::all_of(line.begin(), line.end(), is_space)) {
      ++counts.skipped_empty;
      continue;
    }
    const size_t tabs = static_cast<size_t>(std::count(line.begin(), line.end(), '\t'));
    if (tabs != 1) {
      if (options.skip_bad_lines) {
        ++counts.skipped_bad;
        continue;
      }
      fail<FormatError>(name, "line {}: expected source<TAB>target, found {} tabs", line_number, tabs);
    }
    if (const size_t bad = first_invalid_utf8(line); bad != std::string_view::npos) {
      if (options.skip_bad_lines) {
        ++counts.skipped_bad;
        continue;
      }
      fail<FormatError>(name, "line {}: not valid UTF-8 (byte 0x{:02x} at byte {} of the line); convert the file to "
                        "UTF-8, or skip such lines with --skip-bad-lines", line_number,
                        static_cast<unsigned char>(line[bad]), bad + 1);
    }
    const size_t tab = line.find('\t');
    SentencePair pair{std::string(line.substr(0, tab)), std::string(line.substr(tab + 1))};
    const auto blank = [](const std::string& side) { return std::all_of(side.begin(), side.end(), is_space); };
    if (blank(pair.source) || blank(pair.target)) {
      ++counts.skipped_empty;
      continue;
    }
    if (options.max_tokens > 0) {
      bool cut_source = false, cut_target = false;
      pair.source = truncate_tokens(pair.source, options.max_tokens, cut_source);
      pair.target = truncate_tokens(pair.target, options.max_tokens, cut_target);
      counts.truncated += cut_source || cut_target;
    }
    pairs.push_back(std::move(pair));
  }
  return pairs;
}

std::vector<SentencePair> read_tsv_from_string(std::string_view text, const TsvOptions& options,
                                               TsvReport* report) {
  return parse_tsv(text, "<string>", options, report);
}

std::vector<SentencePair> read_tsv(const std::string& path, const TsvOptions& options, TsvReport* report) {
  // A directory opens like a file and reads as empty; say what it is instead of "holds no pairs".
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) fail<IOError>("tsv " + path, "is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IOError>("tsv " + path, "cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) fail<IOError>("tsv " + path, "read failed");
  return parse_tsv(buffer.str(), path, options, report);
}

void write_tsv(const std::string& path, const std::vector<SentencePair>& pairs) {
  for (size_t i = 0; i < pairs.size(); ++i) {
    for (const std::string* side : {&pairs[i].source, &pairs[i].target}) {
      if (side->find_first_of("\t\n") != std::string::npos) {
        fail<ValueError>("tsv " + path, "pair {}: a side contains a TAB or newline: \"{}\"", i, *side);
      }
    }
  }
  std::string text;
  for (const SentencePair& pair : pairs) text += pair.source + '\t' + pair.target + '\n';
  nn::write_text_file(path, text);
}

Splits draw_distinct_splits(std::string_view task, const std::function<SentencePair()>& draw, size_t train_size,
                            size_t valid_size, size_t test_size) {
  Splits splits;
  std::unordered_set<std::string> seen;
  const size_t max_fruitless_draws = 1000000;
  for (auto [part, size] : {std::pair{&splits.train, train_size}, std::pair{&splits.valid, valid_size},
                            std::pair{&splits.test, test_size}}) {
    part->reserve(size);
    size_t fruitless = 0;
    while (part->size() < size) {
      SentencePair pair = draw();
      if (seen.insert(pair.source).second) {
        part->push_back(std::move(pair));
        fruitless = 0;
      } else if (++fruitless == max_fruitless_draws) {
        fail<ValueError>(task, "only {} distinct source sentences after {} fruitless draws; asked for {}",
                         seen.size(), max_fruitless_draws, train_size + valid_size + test_size);
      }
    }
  }
  return splits;
}

Splits make_copy_task(uint64_t seed, size_t train_size, size_t valid_size, size_t test_size) {
  Generator gen(seed);
  return draw_distinct_splits(
      "copy task",
      [&] {
        std::string source = random_symbols(gen);
        return SentencePair{source, source};
      },
      train_size, valid_size, test_size);
}

Splits make_reverse_task(uint64_t seed, size_t train_size, size_t valid_size, size_t test_size) {
  Generator gen(seed);
  return draw_distinct_splits(
      "reverse task",
      [&] {
        std::string source = random_symbols(gen);
        std::vector<std::string> tokens = split_whitespace(source);
        std::reverse(tokens.begin(), tokens.end());
        std::string target;
        for (const std::string& token : tokens) target += (target.empty() ? "" : " ") + token;
        return SentencePair{std::move(source), std::move(target)};
      },
      train_size, valid_size, test_size);
}

}  // namespace gradformer::data

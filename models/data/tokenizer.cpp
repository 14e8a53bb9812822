// Vocabulary, word/char tokenisers and BPE (see tokenizer.h). The BPE learner keeps pair counts up to date
// incrementally (only words containing the merged pair are revisited) and picks the best pair from a heap
// with lazy deletion, so tens of thousands of merges over a Ding-sized corpus take seconds, not hours.
// SentencePiece is libsentencepiece's processor and trainer behind the Tokenizer interface; the .model bytes
// travel as base64 inside JSON.
#include "models/data/tokenizer.h"

#include "autograd/error.h"
#include "models/data/utf8.h"
#include "nn/output_file.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_set>

namespace gradformer::data {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

// Why a string cannot be a vocabulary token or BPE symbol, or empty if it can.
std::string token_problem(std::string_view token) {
  if (token.empty()) return "empty token";
  if (std::any_of(token.begin(), token.end(), is_space)) return "token contains whitespace";
  if (!is_valid_utf8(token)) return "token is not valid UTF-8";
  return "";
}

// Lines of a text file; a final "\n" does not start another line. A "\r" before "\n" is kept, so CRLF files
// are rejected by the whitespace check instead of silently changing tokens.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return lines;
}

std::string read_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IOError>(std::string(what) + " " + path, "cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool is_split_punctuation(char c) { return std::string_view(".,!?;:\"()[]{}").find(c) != std::string_view::npos; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool ends_with(std::string_view text, std::string_view suffix) { return text.ends_with(suffix); }

}  // namespace

void count_tokens(const std::vector<std::string>& tokens, TokenCounts& counts) {
  for (const std::string& token : tokens) ++counts[token];
}

// ---------------------------------------------------------------------------------------------- Vocabulary

Vocabulary::Vocabulary() {
  for (const char* special : special_tokens) {
    ids_.emplace(special, static_cast<int64_t>(tokens_.size()));
    tokens_.emplace_back(special);
  }
}

Vocabulary Vocabulary::build(const TokenCounts& counts, size_t min_freq, size_t max_size) {
  std::vector<std::pair<std::string, size_t>> entries;
  for (const auto& [token, count] : counts) {
    const std::string problem = token_problem(token);
    if (!problem.empty()) fail<ValueError>("Vocabulary::build", "{}: \"{}\"", problem, token);
    if (count >= min_freq) entries.emplace_back(token, count);
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocabulary vocabulary;
  for (const auto& [token, count] : entries) {
    if (max_size > 0 && vocabulary.size() >= max_size) break;
    if (vocabulary.contains(token)) continue;  // a special token written literally in the corpus
    vocabulary.ids_.emplace(token, static_cast<int64_t>(vocabulary.tokens_.size()));
    vocabulary.tokens_.push_back(token);
  }
  return vocabulary;
}

int64_t Vocabulary::id(std::string_view token) const {
  const auto found = ids_.find(std::string(token));
  return found == ids_.end() ? unk_id : found->second;
}

const std::string& Vocabulary::token(int64_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
    fail<IndexError>("Vocabulary::token", "id {} outside [0, {})", id, tokens_.size());
  }
  return tokens_[static_cast<size_t>(id)];
}

std::vector<int64_t> Vocabulary::encode(const std::vector<std::string>& tokens, bool add_bos, bool add_eos) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size() + 2);
  if (add_bos) ids.push_back(bos_id);
  for (const std::string& token : tokens) ids.push_back(id(token));
  if (add_eos) ids.push_back(eos_id);
  return ids;
}

std::vector<std::string> Vocabulary::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  for (const int64_t id : ids) {
    if (id == eos_id) break;
    if (id == pad_id || id == bos_id) continue;
    tokens.push_back(token(id));
  }
  return tokens;
}

std::string Vocabulary::to_text() const {
  std::string text;
  for (const std::string& token : tokens_) text += token + "\n";
  return text;
}

Vocabulary Vocabulary::from_tokens(std::vector<std::string> tokens, std::string_view where, bool lines) {
  const char* unit = lines ? "line" : "token";
  for (size_t i = 0; i < std::size(special_tokens); ++i) {
    if (i >= tokens.size()) {
      fail<FormatError>(where, "expected the {} special tokens first, found only {} {}s", std::size(special_tokens),
                        tokens.size(), unit);
    }
    if (tokens[i] != special_tokens[i]) {
      fail<FormatError>(where, "{} {}: expected special token {}, found \"{}\"", unit, i + 1, special_tokens[i],
                        tokens[i]);
    }
  }
  Vocabulary vocabulary;
  for (size_t i = std::size(special_tokens); i < tokens.size(); ++i) {
    const std::string problem = token_problem(tokens[i]);
    if (!problem.empty()) fail<FormatError>(where, "{} {}: {}", unit, i + 1, problem);
    const auto [it, inserted] = vocabulary.ids_.emplace(tokens[i], static_cast<int64_t>(i));
    if (!inserted) {
      fail<FormatError>(where, "{} {}: duplicate token \"{}\" (first at {} {})", unit, i + 1, tokens[i], unit,
                        it->second + 1);
    }
    vocabulary.tokens_.push_back(std::move(tokens[i]));
  }
  return vocabulary;
}

Vocabulary Vocabulary::from_text(std::string_view text, std::string_view name) {
  std::vector<std::string> tokens;
  for (const std::string_view line : split_lines(text)) tokens.emplace_back(line);
  return from_tokens(std::move(tokens), name, true);
}

void Vocabulary::save(const std::string& path) const { nn::write_text_file(path, to_text()); }

Vocabulary Vocabulary::load(const std::string& path) { return from_text(read_file(path, "vocabulary"), path); }

nlohmann::json Vocabulary::to_json() const { return {{"tokens", tokens_}}; }

Vocabulary Vocabulary::from_json(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("tokens") || !json["tokens"].is_array()) {
    fail<FormatError>("vocabulary json", "expected an object with a \"tokens\" array");
  }
  std::vector<std::string> tokens;
  for (const auto& token : json["tokens"]) {
    if (!token.is_string()) fail<FormatError>("vocabulary json", "token {}: not a string", tokens.size() + 1);
    tokens.push_back(token.get<std::string>());
  }
  return from_tokens(std::move(tokens), "vocabulary json", false);
}

// ---------------------------------------------------------------------------------------------- word and char

std::vector<std::string> WordTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> tokens;
  std::string current;
  const auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_space(c)) {
      flush();
    } else if (is_split_punctuation(c) &&
               !((c == '.' || c == ',') && i > 0 && is_digit(text[i - 1]) && i + 1 < text.size() &&
                 is_digit(text[i + 1]))) {
      flush();
      tokens.emplace_back(1, c);
    } else {
      current += c;
    }
  }
  flush();
  return tokens;
}

std::string WordTokenizer::detokenize(const std::vector<std::string>& tokens) const {
  std::string text;
  bool glue_next = true;  // no space before the first token or after an opening bracket
  for (const std::string& token : tokens) {
    const bool closing = token.size() == 1 && std::string_view(".,!?;:)]}").find(token[0]) != std::string_view::npos;
    if (!glue_next && !closing) text += ' ';
    text += token;
    glue_next = token.size() == 1 && std::string_view("([{").find(token[0]) != std::string_view::npos;
  }
  return text;
}

std::vector<std::string> CharTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> tokens;
  bool pending_space = false;
  for (const std::string_view unit : utf8_units(text)) {
    if (unit.size() == 1 && is_space(unit[0])) {
      pending_space = true;
      continue;
    }
    if (pending_space && !tokens.empty()) tokens.emplace_back(boundary);
    pending_space = false;
    tokens.emplace_back(unit);
  }
  return tokens;
}

std::string CharTokenizer::detokenize(const std::vector<std::string>& tokens) const {
  std::string text;
  for (const std::string& token : tokens) text += token == boundary ? std::string(" ") : token;
  return text;
}

// ---------------------------------------------------------------------------------------------- BPE

size_t Bpe::MergeHash::operator()(const Merge& merge) const {
  return std::hash<std::string>()(merge.first) * 31 + std::hash<std::string>()(merge.second);
}

namespace {

// Why (left, right) cannot be a merge, or empty if it can: both must be tokens, and only the right one may end
// the word.
std::string merge_problem(const Bpe::Merge& merge) {
  for (const std::string* side : {&merge.first, &merge.second}) {
    const std::string problem = token_problem(*side);
    if (!problem.empty()) return problem;
  }
  const std::string_view end = Bpe::end_of_word;
  if (merge.first.find(end) != std::string::npos) return "left symbol contains </w>";
  const size_t in_right = merge.second.find(end);
  if (in_right != std::string::npos && in_right + end.size() != merge.second.size()) {
    return "</w> inside the right symbol";
  }
  if (merge.second == end) return "right symbol is only </w>";
  return "";
}

std::vector<std::string> initial_symbols(std::string_view word) {
  std::vector<std::string> symbols;
  for (const std::string_view unit : utf8_units(word)) symbols.emplace_back(unit);
  if (!symbols.empty()) symbols.back() += Bpe::end_of_word;
  return symbols;
}

}  // namespace

Bpe::Bpe(std::vector<Merge> merges) : merges_(std::move(merges)) {
  for (size_t rank = 0; rank < merges_.size(); ++rank) {
    const std::string problem = merge_problem(merges_[rank]);
    if (!problem.empty()) fail<ValueError>("Bpe", "merge {}: {}", rank + 1, problem);
    if (!ranks_.emplace(merges_[rank], rank).second) {
      fail<ValueError>("Bpe", "merge {}: duplicate of merge {}", rank + 1, ranks_[merges_[rank]] + 1);
    }
  }
}

Bpe Bpe::learn(const std::vector<std::string>& texts, size_t num_merges) {
  const WordTokenizer words_of;
  std::unordered_map<std::string, size_t> word_counts;
  for (const std::string& text : texts) {
    for (const std::string& word : words_of.tokenize(text)) ++word_counts[word];
  }
  // Sorted so that the order words are visited in, and hence every tie, is the same on every machine.
  std::vector<std::pair<std::string, size_t>> sorted(word_counts.begin(), word_counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<std::string>> words;
  std::vector<int64_t> frequency;
  for (const auto& [word, count] : sorted) {
    words.push_back(initial_symbols(word));
    frequency.push_back(static_cast<int64_t>(count));
  }

  std::unordered_map<Merge, int64_t, MergeHash> pair_counts;
  std::unordered_map<Merge, std::vector<size_t>, MergeHash> pair_words;  // may list words that lost the pair
  struct Candidate {
    int64_t count;
    Merge pair;
    bool operator<(const Candidate& other) const {  // the heap's top is the largest count, then smallest pair
      return count != other.count ? count < other.count : pair > other.pair;
    }
  };
  std::priority_queue<Candidate> heap;
  for (size_t w = 0; w < words.size(); ++w) {
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const Merge pair{words[w][i], words[w][i + 1]};
      pair_counts[pair] += frequency[w];
      pair_words[pair].push_back(w);
    }
  }
  for (const auto& [pair, count] : pair_counts) heap.push({count, pair});

  std::vector<Merge> merges;
  while (merges.size() < num_merges && !heap.empty()) {
    Candidate best = heap.top();
    heap.pop();
    const auto found = pair_counts.find(best.pair);
    if (found == pair_counts.end() || found->second != best.count) continue;  // stale entry
    if (best.count < 2) break;
    const std::string merged = best.pair.first + best.pair.second;
    std::vector<size_t> affected = std::move(pair_words[best.pair]);
    pair_words.erase(best.pair);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    // Count changes are gathered first so that a pair whose count did not change is not pushed again.
    std::unordered_map<Merge, int64_t, MergeHash> delta;
    for (const size_t w : affected) {
      auto& symbols = words[w];
      std::vector<std::string> next;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == best.pair.first && symbols[i + 1] == best.pair.second) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(symbols[i]);
        }
      }
      if (next.size() == symbols.size()) continue;  // listed earlier, but an earlier merge took the pair away
      for (size_t i = 0; i + 1 < symbols.size(); ++i) delta[Merge{symbols[i], symbols[i + 1]}] -= frequency[w];
      for (size_t i = 0; i + 1 < next.size(); ++i) {
        Merge pair{next[i], next[i + 1]};
        // Only pairs with the new symbol are new to this word; the others already list it.
        if (next[i] == merged || next[i + 1] == merged) pair_words[pair].push_back(w);
        delta[std::move(pair)] += frequency[w];
      }
      symbols = std::move(next);
    }
    for (auto& [pair, change] : delta) {
      if (change == 0) continue;
      int64_t& count = pair_counts[pair];
      count += change;
      if (count > 0) heap.push({count, pair});
    }
    pair_counts.erase(best.pair);
    merges.push_back(std::move(best.pair));
  }
  return Bpe(std::move(merges));
}

std::vector<std::string> Bpe::encode_word(std::string_view word) const {
  std::vector<std::string> symbols = initial_symbols(word);
  for (;;) {
    size_t best_rank = merges_.size();
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto found = ranks_.find(Merge{symbols[i], symbols[i + 1]});
      if (found != ranks_.end()) best_rank = std::min(best_rank, found->second);
    }
    if (best_rank == merges_.size()) return symbols;
    const Merge& merge = merges_[best_rank];
    std::vector<std::string> next;
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && symbols[i] == merge.first && symbols[i + 1] == merge.second) {
        next.push_back(merge.first + merge.second);
        ++i;
      } else {
        next.push_back(symbols[i]);
      }
    }
    symbols = std::move(next);
  }
}

std::vector<std::string> Bpe::tokenize(std::string_view text) const {
  std::vector<std::string> tokens;
  for (const std::string& word : WordTokenizer().tokenize(text)) {
    for (std::string& symbol : encode_word(word)) tokens.push_back(std::move(symbol));
  }
  return tokens;
}

std::string Bpe::detokenize(const std::vector<std::string>& tokens) const {
  std::vector<std::string> words;
  std::string current;
  for (const std::string& token : tokens) {
    if (ends_with(token, end_of_word)) {
      current += token.substr(0, token.size() - std::string_view(end_of_word).size());
      words.push_back(std::move(current));
      current.clear();
    } else {
      current += token;
    }
  }
  // A model may stop mid-word; keep what it produced rather than dropping it.
  if (!current.empty()) words.push_back(std::move(current));
  return WordTokenizer().detokenize(words);
}

nlohmann::json Bpe::to_json() const {
  nlohmann::json merges = nlohmann::json::array();
  for (const Merge& merge : merges_) merges.push_back({merge.first, merge.second});
  return {{"kind", "bpe"}, {"merges", std::move(merges)}};
}

Bpe Bpe::from_json(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("merges") || !json["merges"].is_array()) {
    fail<FormatError>("bpe json", "expected an object with a \"merges\" array");
  }
  std::vector<Merge> merges;
  for (const auto& merge : json["merges"]) {
    if (!merge.is_array() || merge.size() != 2 || !merge[0].is_string() || !merge[1].is_string()) {
      fail<FormatError>("bpe json", "merge {}: expected [\"left\", \"right\"]", merges.size() + 1);
    }
    merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  try {
    return Bpe(std::move(merges));
  } catch (const ValueError& e) {
    throw FormatError(std::string("bpe json: ") + e.what());
  }
}

std::string Bpe::to_text() const {
  std::string text = "#bpe v1\n";
  for (const Merge& merge : merges_) text += merge.first + " " + merge.second + "\n";
  return text;
}

Bpe Bpe::from_text(std::string_view text, std::string_view name) {
  const std::vector<std::string_view> lines = split_lines(text);
  if (lines.empty() || lines[0] != "#bpe v1") {
    fail<FormatError>(name, "line 1: expected the header \"#bpe v1\"");
  }
  std::vector<Merge> merges;
  std::unordered_map<Merge, size_t, MergeHash> seen;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
      fail<FormatError>(name, "line {}: expected \"left right\" separated by one space", i + 1);
    }
    Merge merge{std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
    const std::string problem = merge_problem(merge);
    if (!problem.empty()) fail<FormatError>(name, "line {}: {}", i + 1, problem);
    const auto [it, inserted] = seen.emplace(merge, i + 1);
    if (!inserted) fail<FormatError>(name, "line {}: duplicate of the merge on line {}", i + 1, it->second);
    merges.push_back(std::move(merge));
  }
  return Bpe(std::move(merges));
}

void Bpe::save(const std::string& path) const { nn::write_text_file(path, to_text()); }

Bpe Bpe::load(const std::string& path) { return from_text(read_file(path, "bpe"), path); }

std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("kind") || !json["kind"].is_string()) {
    fail<FormatError>("tokenizer json", "expected an object with a string \"kind\"");
  }
  const std::string kind = json["kind"].get<std::string>();
  if (kind == "word") return std::make_unique<WordTokenizer>();
  if (kind == "char") return std::make_unique<CharTokenizer>();
  if (kind == "bpe") return std::make_unique<Bpe>(Bpe::from_json(json));
  if (kind == "spm") return std::make_unique<SentencePiece>(SentencePiece::from_json(json));
  fail<FormatError>("tokenizer json", "unknown kind \"{}\" (expected word, char, bpe or spm)", kind);
}

// ---------------------------------------------------------------------------------------------- SentencePiece

namespace {

constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// RFC 4648 base64 with padding: a .model file is binary, and a checkpoint's config is JSON text.
std::string base64_encode(std::string_view bytes) {
  std::string text;
  text.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t group = 0;
    const size_t count = std::min<size_t>(3, bytes.size() - i);
    for (size_t k = 0; k < 3; ++k)
      group = group << 8 | (k < count ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) text += k <= count ? base64_alphabet[(group >> (18 - 6 * k)) & 63] : '=';
  }
  return text;
}

// The bytes of base64 `text`; FormatError naming `where` on a length that is not a multiple of 4, a character
// outside the alphabet, or padding anywhere but the end.
std::string base64_decode(std::string_view text, std::string_view where) {
  if (text.size() % 4 != 0) fail<FormatError>(where, "base64 text of {} characters, not a multiple of 4", text.size());
  std::string bytes;
  bytes.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t group = 0;
    size_t padding = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      const size_t value = base64_alphabet.find(c);
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++padding;
      } else if (value == std::string_view::npos || padding > 0) {
        fail<FormatError>(where, "character {} of the base64 text is '{}', not base64", i + k + 1, c);
      }
      group = group << 6 | (c == '=' ? 0u : static_cast<uint32_t>(value));
    }
    for (size_t k = 0; k < 3 - padding; ++k) bytes += static_cast<char>((group >> (16 - 8 * k)) & 0xFF);
  }
  return bytes;
}

// Feeds the trainer sentences from memory, skipping blank ones as spm_train skips blank lines.
class SentenceList : public sentencepiece::SentenceIterator {
 public:
  explicit SentenceList(const std::vector<std::string>& texts) : texts_(texts) { skip_blank(); }
  bool done() const override { return position_ >= texts_.size(); }
  void Next() override {
    ++position_;
    skip_blank();
  }
  const std::string& value() const override { return texts_[position_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void skip_blank() {
    while (position_ < texts_.size() && std::all_of(texts_[position_].begin(), texts_[position_].end(), is_space))
      ++position_;
  }
  const std::vector<std::string>& texts_;
  size_t position_ = 0;
};

}  // namespace

SentencePiece::SentencePiece(std::string model, std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor)
    : model_(std::move(model)), processor_(std::move(processor)) {}

SentencePiece SentencePiece::train(const std::vector<std::string>& texts, const TrainOptions& options) {
  SentenceList sentences(texts);
  if (sentences.done()) fail<ValueError>("SentencePiece::train", "no text to train on");
  // hard_vocab_limit=false: a small corpus gets the pieces it supports rather than an error. minloglevel=1 keeps
  // the library's progress lines (dozens per training) off stderr and its warnings on it.
  const std::unordered_map<std::string, std::string> arguments = {
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", options.model_type},
      {"hard_vocab_limit", "false"},
      {"num_threads", std::to_string(options.threads)},
      {"minloglevel", "1"},
  };
  std::string model;
  const sentencepiece::util::Status status = sentencepiece::SentencePieceTrainer::Train(arguments, &sentences, &model);
  if (!status.ok())
    fail<ValueError>("SentencePiece::train", "{} (vocabulary size {}, model type {})", status.message(),
                     options.vocab_size, options.model_type);
  return from_model(std::move(model), "SentencePiece::train");
}

SentencePiece SentencePiece::from_model(std::string model, std::string_view name) {
  auto processor = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const sentencepiece::util::Status status = processor->LoadFromSerializedProto(model);
  if (!status.ok()) {
    // The library's message is the check that failed, e.g. "./src/sentencepiece_processor.cc(232)
    // [model_proto->ParseFromArray(...)] ": useful for a bug report, so kept, but after the plain words.
    std::string detail = status.message();
    while (!detail.empty() && is_space(detail.back())) detail.pop_back();
    fail<FormatError>(name, "not a SentencePiece model (libsentencepiece: {})", detail);
  }
  return SentencePiece(std::move(model), std::move(processor));
}

SentencePiece SentencePiece::load(const std::string& path) {
  return from_model(read_file(path, "SentencePiece model"), path);
}

std::vector<std::string> SentencePiece::tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  const sentencepiece::util::Status status = processor_->Encode(text, &pieces);
  if (!status.ok()) fail<ValueError>("SentencePiece::tokenize", "{}", status.message());
  return pieces;
}

std::string SentencePiece::detokenize(const std::vector<std::string>& tokens) const {
  std::string text;
  const sentencepiece::util::Status status = processor_->Decode(tokens, &text);
  if (!status.ok()) fail<ValueError>("SentencePiece::detokenize", "{}", status.message());
  return text;
}

nlohmann::json SentencePiece::to_json() const { return {{"kind", "spm"}, {"model", base64_encode(model_)}}; }

SentencePiece SentencePiece::from_json(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("model") || !json["model"].is_string())
    fail<FormatError>("spm json", "expected an object with a base64 \"model\" string");
  return from_model(base64_decode(json["model"].get_ref<const std::string&>(), "spm json"), "spm json");
}

}  // namespace gradformer::data

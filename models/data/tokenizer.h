// Tokenisers and the vocabulary that maps their tokens to ids. Four tokenisers share one interface: word level
// (whitespace, with punctuation split off), character level (with "▁" marking word boundaries), BPE (merges
// learned over a joint source+target corpus, "</w>" closing each word) and SentencePiece (the library Marian
// builds in, on raw text). The first three detokenise to the same normalised text: single spaces, no space
// before . , ! ? ; : or a closing bracket, none after an opening bracket; SentencePiece restores the text as
// its model normalises it.
// Loaders take strings so fuzzers can feed them bytes; malformed input is a FormatError naming file and line.
// Not Unicode-aware beyond UTF-8 code points: no normalisation, no case folding, no language-specific rules.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace gradformer::data {

inline constexpr int64_t pad_id = 0;
inline constexpr int64_t bos_id = 1;
inline constexpr int64_t eos_id = 2;
inline constexpr int64_t unk_id = 3;
inline constexpr const char* special_tokens[] = {"<pad>", "<bos>", "<eos>", "<unk>"};

using TokenCounts = std::unordered_map<std::string, size_t>;
void count_tokens(const std::vector<std::string>& tokens, TokenCounts& counts);

// Ids 0..3 are always <pad>, <bos>, <eos>, <unk>; the rest follow by falling count, ties by token bytes.
// Tokens are non-empty valid UTF-8 without whitespace (every tokeniser here produces such tokens).
class Vocabulary {
 public:
  Vocabulary();  // the four special tokens only

  // Keeps tokens seen at least min_freq times; max_size > 0 caps the size, special tokens included.
  // Throws ValueError on a token a file could not hold (empty, whitespace, invalid UTF-8).
  static Vocabulary build(const TokenCounts& counts, size_t min_freq = 1, size_t max_size = 0);

  size_t size() const { return tokens_.size(); }
  bool contains(std::string_view token) const { return ids_.find(std::string(token)) != ids_.end(); }
  int64_t id(std::string_view token) const;      // unk_id for an unknown token
  const std::string& token(int64_t id) const;    // IndexError outside [0, size)

  std::vector<int64_t> encode(const std::vector<std::string>& tokens, bool add_bos = false,
                              bool add_eos = false) const;
  // Drops <pad> and <bos> and stops at the first <eos>: what a decoder's output means.
  std::vector<std::string> decode(const std::vector<int64_t>& ids) const;

  // One token per line, in id order, each line ended by "\n".
  std::string to_text() const;
  static Vocabulary from_text(std::string_view text, std::string_view name = "<string>");
  void save(const std::string& path) const;
  static Vocabulary load(const std::string& path);

  // {"tokens": [...]} in id order, for a checkpoint's metadata.
  nlohmann::json to_json() const;
  static Vocabulary from_json(const nlohmann::json& json);

  bool operator==(const Vocabulary& other) const { return tokens_ == other.tokens_; }

 private:
  // The checks shared by the text and JSON loaders; errors say "<where>: line N" or "<where>: token N".
  static Vocabulary from_tokens(std::vector<std::string> tokens, std::string_view where, bool lines);

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<std::string> tokenize(std::string_view text) const = 0;
  virtual std::string detokenize(const std::vector<std::string>& tokens) const = 0;
  virtual std::string kind() const = 0;  // "word", "char", "bpe" or "spm"
  // {"kind": ...} plus whatever the tokeniser needs (BPE: its merges); see tokenizer_from_json.
  virtual nlohmann::json to_json() const = 0;
};

// Splits on whitespace and splits off . , ! ? ; : " ( ) [ ] { } as tokens of their own, except "." and ","
// between digits ("3.5", "1,000"). Apostrophes and hyphens stay inside words.
class WordTokenizer : public Tokenizer {
 public:
  std::vector<std::string> tokenize(std::string_view text) const override;
  // Joins with single spaces, except before . , ! ? ; : ) ] } and after ( [ {.
  std::string detokenize(const std::vector<std::string>& tokens) const override;
  std::string kind() const override { return "word"; }
  nlohmann::json to_json() const override { return {{"kind", "word"}}; }
};

// One token per UTF-8 code point; each run of whitespace becomes one "▁" token (text containing "▁" itself
// does not round-trip). A byte that is not valid UTF-8 becomes a token of its own, which round-trips here but
// which Vocabulary::build refuses (ValueError naming it): vocabularies must survive JSON.
class CharTokenizer : public Tokenizer {
 public:
  static constexpr const char* boundary = "\u2581";
  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;
  std::string kind() const override { return "char"; }
  nlohmann::json to_json() const override { return {{"kind", "char"}}; }
};

// Byte-pair encoding after Sennrich et al.: words come from WordTokenizer, each is split into code points with
// "</w>" appended to its last one, and learned merges are applied by rank. detokenize(tokenize(t)) equals
// WordTokenizer's detokenize of t's words, whatever merges were learned.
class Bpe : public Tokenizer {
 public:
  static constexpr const char* end_of_word = "</w>";
  using Merge = std::pair<std::string, std::string>;

  Bpe() = default;
  explicit Bpe(std::vector<Merge> merges);  // validates like from_text; throws ValueError

  // Learns up to num_merges merges from raw sentences (source and target together); stops early when no pair
  // occurs twice. The most frequent pair wins, ties go to the smaller pair by bytes, so learning is deterministic.
  static Bpe learn(const std::vector<std::string>& texts, size_t num_merges);

  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;
  std::string kind() const override { return "bpe"; }
  nlohmann::json to_json() const override;  // {"kind": "bpe", "merges": [["a", "b"], ...]}
  static Bpe from_json(const nlohmann::json& json);

  // "#bpe v1" then one merge per line: left, one space, right.
  std::string to_text() const;
  static Bpe from_text(std::string_view text, std::string_view name = "<string>");
  void save(const std::string& path) const;
  static Bpe load(const std::string& path);

  const std::vector<Merge>& merges() const { return merges_; }
  std::vector<std::string> encode_word(std::string_view word) const;  // symbols of one word, last ends in </w>

 private:
  struct MergeHash {
    size_t operator()(const Merge& merge) const;
  };
  std::vector<Merge> merges_;
  std::unordered_map<Merge, size_t, MergeHash> ranks_;
};

// A SentencePiece model (unigram or BPE) run by libsentencepiece. Tokens are its pieces ("▁the", "s"); the
// model is kept as its serialized bytes, which to_json stores (base64) so that a checkpoint needs no .model file.
class SentencePiece : public Tokenizer {
 public:
  struct TrainOptions {
    size_t vocab_size = 8000;          // at most: a small corpus may support fewer pieces
    std::string model_type = "unigram";  // unigram or bpe
    int threads = 1;                     // the trainer's threads (the library's own default is 16)
    bool operator==(const TrainOptions&) const = default;
  };
  // Trains on the sentences in memory (no file is read or written); ValueError with the library's message when
  // it refuses (no text, a vocabulary smaller than the characters it must cover, an unknown model type).
  static SentencePiece train(const std::vector<std::string>& texts, const TrainOptions& options);
  // From the bytes of a .model file; FormatError "<name>: not a SentencePiece model (...)" otherwise.
  static SentencePiece from_model(std::string model, std::string_view name);
  static SentencePiece load(const std::string& path);  // IOError when unreadable, FormatError as from_model

  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;
  std::string kind() const override { return "spm"; }
  nlohmann::json to_json() const override;  // {"kind": "spm", "model": base64 of the .model bytes}
  static SentencePiece from_json(const nlohmann::json& json);

  const std::string& model() const { return model_; }  // the .model file's bytes

 private:
  SentencePiece(std::string model, std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor);
  std::string model_;
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor_;
};

// Rebuilds a tokeniser from Tokenizer::to_json(); FormatError on an unknown kind or malformed merges or model.
std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& json);

}  // namespace gradformer::data

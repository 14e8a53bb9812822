// From a task name to batches of ids: loads the sentence pairs (grammar, grammar-long, ding-sentences, ding-phrases, copy,
// reverse, or a TSV file), tokenises them, builds one joint vocabulary from the training split, and turns groups
// of examples into padded tensors. The corpus and tokenizer code itself lives in models/data/.
#pragma once

#include "autograd/tensor.h"
#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/tokenizer.h"

#include <memory>
#include <string>
#include <vector>

namespace gradformer::models {

struct TaskOptions {
  std::string tokenizer = "word";  // word, char, bpe or spm
  size_t bpe_merges = 8000;
  data::SentencePiece::TrainOptions spm;  // spm, when no spm_model is given; learn() sets its threads
  std::string spm_model;                  // spm: an existing .model file instead of training one
  size_t max_tokens = 64;          // longer sentences are truncated (counted in the report)
  size_t min_freq = 1;
  uint64_t seed = 1;               // for the generated tasks
  bool skip_bad_lines = false;     // TSV
  bool operator==(const TaskOptions&) const = default;
};

// What a run trains on: the task and how its text is read and cut. gradformer-train stores it in every checkpoint
// (under "data") so that a resume reads the same data, whatever flags it is given.
struct DataSettings {
  std::string task = "grammar";  // a load_task name; a TSV path is stored absolute, so a resume may run elsewhere
  TaskOptions options;
  bool operator==(const DataSettings&) const = default;
};
nlohmann::json to_json(const DataSettings& settings);
// Throws FormatError naming `path` when a field is missing or of the wrong type.
DataSettings data_settings_from_json(const nlohmann::json& json, const std::string& path);

// Sentence pairs of a named task: grammar, grammar-long (128,000 training pairs: --max-train-sentences takes
// nested subsets of them), ding-sentences, ding-phrases, copy, reverse, or tsv:PATH (train only
// is read from PATH; valid and test are split off by a hash of the source, 1% each). For a TSV file, `tsv_report`
// (if given) receives what the reader skipped, for the caller to report.
data::Splits load_task(const std::string& name, const TaskOptions& options, data::TsvReport* tsv_report = nullptr);
// The names load_task knows, for --help and error messages.
std::vector<std::string> task_names();

struct Example {
  std::vector<int64_t> source;  // ids, ending with <eos>
  std::vector<int64_t> target;  // ids, without <bos> and <eos>
};

// A tokenizer and a joint vocabulary, learned from a training split, and what they make of sentences.
class TextCodec {
 public:
  TextCodec(std::unique_ptr<data::Tokenizer> tokenizer, data::Vocabulary vocabulary);
  static TextCodec learn(const std::vector<data::SentencePair>& train, const TaskOptions& options);
  static TextCodec from_json(const nlohmann::json& json);
  // The codec gradformer-train stores under "codec" in a checkpoint's config, removed from `config` so that the
  // rest describes the model. Throws FormatError naming `path` when there is none.
  static TextCodec take_from_config(nlohmann::json& config, const std::string& path);
  nlohmann::json to_json() const;

  // Sides longer than max_tokens tokens are cut to their first max_tokens; `truncated` (if given) is set to
  // whether anything was cut, so that the programs can count and report it once.
  Example encode(const data::SentencePair& pair, size_t max_tokens, bool* truncated = nullptr) const;
  std::vector<int64_t> encode_source(const std::string& text, size_t max_tokens, bool* truncated = nullptr) const;
  std::string decode(const std::vector<int64_t>& ids) const;
  std::vector<std::string> tokens(const std::vector<int64_t>& ids) const;  // for attention pictures
  const data::Vocabulary& vocabulary() const { return vocabulary_; }
  const data::Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  std::shared_ptr<data::Tokenizer> tokenizer_;
  data::Vocabulary vocabulary_;
};

// One padded batch: src (B, S) ending with <eos>; tgt_in (B, T) = <bos> target; tgt_out (B, T) = target <eos>,
// padded with <pad>, which the loss ignores.
struct TensorBatch {
  Tensor src, tgt_in, tgt_out;
  int64_t target_tokens = 0;  // non-padding entries of tgt_out
};

TensorBatch make_tensor_batch(const std::vector<Example>& examples, const std::vector<size_t>& indices);
// Source rows padded into one (B, S) block.
Tensor make_source_batch(const std::vector<std::vector<int64_t>>& sources);

}  // namespace gradformer::models

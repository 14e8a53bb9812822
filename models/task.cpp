#include "models/task.h"

#include "models/data/ding.h"
#include "models/data/grammar.h"
#include "ops/threads.h"

#include <filesystem>

namespace gradformer::models {

std::vector<std::string> task_names() {
  return {"grammar", "grammar-long", "ding-sentences", "ding-phrases", "copy", "reverse", "tsv:PATH"};
}

data::Splits load_task(const std::string& name, const TaskOptions& options, data::TsvReport* tsv_report) {
  if (name == "grammar") return data::make_grammar_task(options.seed);
  if (name == "grammar-long") return data::make_grammar_long_task(options.seed);
  if (name == "copy") return data::make_copy_task(options.seed);
  if (name == "reverse") return data::make_reverse_task(options.seed);
  if (name == "ding-sentences") return data::load_ding("/usr/share/trans/de-en", data::DingPart::sentences);
  if (name == "ding-phrases") return data::load_ding("/usr/share/trans/de-en", data::DingPart::phrases);
  if (name.rfind("tsv:", 0) == 0) {
    data::TsvOptions tsv;
    tsv.skip_bad_lines = options.skip_bad_lines;
    std::vector<data::SentencePair> pairs = data::read_tsv(name.substr(4), tsv, tsv_report);
    data::Splits splits;
    for (auto& pair : pairs) {
      const uint64_t bucket = data::fnv1a64(pair.source) % 100;
      (bucket == 0 ? splits.valid : bucket == 1 ? splits.test : splits.train).push_back(std::move(pair));
    }
    if (splits.train.empty()) fail<ValueError>("task " + name, "the file holds no training pairs");
    return splits;
  }
  fail<ValueError>("task", "unknown task '{}' (known: {})", name, fmt::join(task_names(), ", "));
}

nlohmann::json to_json(const DataSettings& settings) {
  const TaskOptions& o = settings.options;
  return {{"task", settings.task},           {"tokenizer", o.tokenizer}, {"bpe_merges", o.bpe_merges},
          {"max_sentence_tokens", o.max_tokens}, {"min_freq", o.min_freq},   {"seed", o.seed},
          {"skip_bad_lines", o.skip_bad_lines}};
}

DataSettings data_settings_from_json(const nlohmann::json& json, const std::string& path) {
  DataSettings settings;
  TaskOptions& o = settings.options;
  try {
    settings.task = json.at("task").get<std::string>();
    o.tokenizer = json.at("tokenizer").get<std::string>();
    o.bpe_merges = json.at("bpe_merges").get<size_t>();
    o.max_tokens = json.at("max_sentence_tokens").get<size_t>();
    o.min_freq = json.at("min_freq").get<size_t>();
    o.seed = json.at("seed").get<uint64_t>();
    o.skip_bad_lines = json.at("skip_bad_lines").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail<FormatError>(path, "the checkpoint's data settings are unreadable: {}", e.what());
  }
  return settings;
}

TextCodec::TextCodec(std::unique_ptr<data::Tokenizer> tokenizer, data::Vocabulary vocabulary)
    : tokenizer_(std::move(tokenizer)), vocabulary_(std::move(vocabulary)) {}

namespace {

// Source and target sentences together: the subword models are joint, as the vocabulary is.
std::vector<std::string> joint_texts(const std::vector<data::SentencePair>& train) {
  std::vector<std::string> texts;
  for (const auto& pair : train) {
    texts.push_back(pair.source);
    texts.push_back(pair.target);
  }
  return texts;
}

}  // namespace

namespace {

// The largest .model file taken: real ones are a few megabytes; past this a file is not a model (or is /dev/zero).
constexpr uintmax_t kLargestSpmModel = uintmax_t{256} << 20;

// A --spm-model must be a regular file of a model's size: a directory, a device or an empty file would otherwise
// reach the SentencePiece parser and give its message, which names none of these.
void check_spm_model_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  const std::string where = "--spm-model " + path;
  if (!fs::exists(status)) fail<IOError>(where, "no such file");
  if (fs::is_directory(status)) fail<IOError>(where, "is a directory, not a SentencePiece .model file");
  if (!fs::is_regular_file(status)) fail<IOError>(where, "is not a regular file (a device or FIFO), so not a "
                                                         "SentencePiece .model file");
  const uintmax_t size = fs::file_size(path, error);
  if (error) fail<IOError>(where, "cannot read its size: {}", error.message());
  if (size == 0) fail<IOError>(where, "is empty, not a SentencePiece .model file");
  if (size > kLargestSpmModel)
    fail<IOError>(where, "is {} bytes; a SentencePiece .model file is at most {} MiB", size, kLargestSpmModel >> 20);
}

}  // namespace

TextCodec TextCodec::learn(const std::vector<data::SentencePair>& train, const TaskOptions& options) {
  if (!options.spm_model.empty() && options.tokenizer != "spm")
    fail<ValueError>("--spm-model " + options.spm_model, "a SentencePiece model needs --tokenizer spm (the "
                     "tokenizer is {})", options.tokenizer);
  std::unique_ptr<data::Tokenizer> tokenizer;
  if (options.tokenizer == "word") {
    tokenizer = std::make_unique<data::WordTokenizer>();
  } else if (options.tokenizer == "char") {
    tokenizer = std::make_unique<data::CharTokenizer>();
  } else if (options.tokenizer == "bpe") {
    tokenizer = std::make_unique<data::Bpe>(data::Bpe::learn(joint_texts(train), options.bpe_merges));
  } else if (options.tokenizer == "spm") {
    if (!options.spm_model.empty()) check_spm_model_file(options.spm_model);
    data::SentencePiece::TrainOptions spm = options.spm;
    spm.threads = num_threads();
    tokenizer = std::make_unique<data::SentencePiece>(options.spm_model.empty()
                                                          ? data::SentencePiece::train(joint_texts(train), spm)
                                                          : data::SentencePiece::load(options.spm_model));
  } else {
    fail<ValueError>("tokenizer", "unknown tokenizer '{}' (known: word, char, bpe, spm)", options.tokenizer);
  }
  // Only the tokens training sees: those past --max-sentence-tokens are cut off by encode, and counting them
  // would add entries that are never trained (a single long line adds thousands).
  data::TokenCounts counts;
  const auto count_kept = [&](const std::string& text) {
    std::vector<std::string> tokens = tokenizer->tokenize(text);
    if (tokens.size() > options.max_tokens) tokens.resize(options.max_tokens);
    data::count_tokens(tokens, counts);
  };
  for (const auto& pair : train) {
    count_kept(pair.source);
    count_kept(pair.target);
  }
  return TextCodec(std::move(tokenizer), data::Vocabulary::build(counts, options.min_freq));
}

TextCodec TextCodec::from_json(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("tokenizer") || !json.contains("vocabulary"))
    fail<FormatError>("codec", "expected an object with 'tokenizer' and 'vocabulary'");
  return TextCodec(data::tokenizer_from_json(json.at("tokenizer")), data::Vocabulary::from_json(json.at("vocabulary")));
}

TextCodec TextCodec::take_from_config(nlohmann::json& config, const std::string& path) {
  if (!config.is_object() || !config.contains("codec"))
    fail<FormatError>(path, "the checkpoint holds no vocabulary (was it written by gradformer-train?)");
  TextCodec codec = from_json(config.at("codec"));
  config.erase("codec");
  return codec;
}

nlohmann::json TextCodec::to_json() const {
  return {{"tokenizer", tokenizer_->to_json()}, {"vocabulary", vocabulary_.to_json()}};
}

std::vector<int64_t> TextCodec::encode_source(const std::string& text, size_t max_tokens, bool* truncated) const {
  std::vector<std::string> tokens = tokenizer_->tokenize(text);
  const bool cut = tokens.size() > max_tokens;
  if (cut) tokens.resize(max_tokens);
  if (truncated != nullptr) *truncated = cut;
  return vocabulary_.encode(tokens, false, true);
}

Example TextCodec::encode(const data::SentencePair& pair, size_t max_tokens, bool* truncated) const {
  std::vector<std::string> target = tokenizer_->tokenize(pair.target);
  const bool cut_target = target.size() > max_tokens;
  if (cut_target) target.resize(max_tokens);
  bool cut_source = false;
  Example example{encode_source(pair.source, max_tokens, &cut_source), vocabulary_.encode(target)};
  if (truncated != nullptr) *truncated = cut_source || cut_target;
  return example;
}

std::string TextCodec::decode(const std::vector<int64_t>& ids) const {
  return tokenizer_->detokenize(vocabulary_.decode(ids));
}

std::vector<std::string> TextCodec::tokens(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(vocabulary_.token(id));
  return out;
}

Tensor make_source_batch(const std::vector<std::vector<int64_t>>& sources) {
  size_t length = 0;
  std::vector<int64_t> block = data::pad_batch(sources, data::pad_id, length);
  return from_vector(block, {static_cast<int64_t>(sources.size()), static_cast<int64_t>(length)});
}

TensorBatch make_tensor_batch(const std::vector<Example>& examples, const std::vector<size_t>& indices) {
  std::vector<std::vector<int64_t>> sources, inputs, outputs;
  TensorBatch batch;
  for (size_t i : indices) {
    const Example& e = examples.at(i);
    sources.push_back(e.source);
    std::vector<int64_t> in{data::bos_id}, out = e.target;
    in.insert(in.end(), e.target.begin(), e.target.end());
    out.push_back(data::eos_id);
    batch.target_tokens += static_cast<int64_t>(out.size());
    inputs.push_back(std::move(in));
    outputs.push_back(std::move(out));
  }
  size_t length = 0;
  batch.src = make_source_batch(sources);
  std::vector<int64_t> in_block = data::pad_batch(inputs, data::pad_id, length);
  const Shape tgt_shape{static_cast<int64_t>(indices.size()), static_cast<int64_t>(length)};
  batch.tgt_in = from_vector(in_block, tgt_shape);
  batch.tgt_out = from_vector(data::pad_batch(outputs, data::pad_id, length), tgt_shape);
  return batch;
}

}  // namespace gradformer::models

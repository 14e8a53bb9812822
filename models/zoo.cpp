#include "models/zoo.h"

#include "models/attention_seq2seq.h"
#include "models/rnn_seq2seq.h"
#include "models/transformer_seq2seq.h"
#include "nn/checkpoint.h"

#include <algorithm>

namespace gradformer::models {
namespace {

struct TransformerPreset {
  const char* name;
  int64_t d_model, heads, d_ff, layers;
};

// The sizes of ../shared/bench/torch_reference.py's toy, small and base configurations.
constexpr TransformerPreset kTransformerPresets[] = {
    {"transformer-tiny", 64, 4, 256, 2},
    {"transformer-small", 256, 4, 1024, 3},
    {"transformer-base", 512, 8, 2048, 6},
};

const TransformerPreset* find_preset(const std::string& name) {
  for (const TransformerPreset& p : kTransformerPresets)
    if (name == p.name) return &p;
  return nullptr;
}

template <class T>
T required(const nlohmann::json& config, const char* key) {
  if (!config.contains(key))
    fail<FormatError>("model config", "missing '{}' in {}", key, config.dump());
  try {
    return config.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail<FormatError>("model config", "'{}' has the wrong type: {}", key, e.what());
  }
}

// A size field of a configuration, checked to be an integer in 1..max_model_size; `where` starts the message.
int64_t required_size(const nlohmann::json& config, const char* key, const std::string& where = "model config") {
  const auto value = required<nlohmann::json>(config, key);
  if (!value.is_number_integer() || (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t{INT64_MAX}) ||
      value.get<int64_t>() < 1 || value.get<int64_t>() > max_model_size)
    fail<FormatError>(where, "the configuration's '{}' is {}; a size must be an integer in 1..{}", key, value.dump(),
                      max_model_size);
  return value.get<int64_t>();
}

// Where a size of each model shows in its tensors: a dimension of one tensor, or the count of numbered layers
// under a prefix ("<prefix>0.", "<prefix>1.", ...).
struct SizeInTensor {
  const char* field;
  const char* tensor;
  size_t dim;
};
struct LayerCount {
  const char* field;
  const char* prefix;
};
struct SizesInFile {
  std::vector<SizeInTensor> dimensions;
  std::vector<LayerCount> counts;
};

SizesInFile sizes_in_file(const std::string& model) {
  if (find_preset(model))
    return {{{"vocab_size", "source_embedding.weight", 0},
             {"d_model", "source_embedding.weight", 1},
             {"d_ff", "transformer.encoder.layers.0.linear1.weight", 0},
             {"max_length", "positions.pe", 0}},
            {{"layers", "transformer.encoder.layers."}, {"layers", "transformer.decoder.layers."}}};
  if (model == "attention-seq2seq")
    return {{{"vocab_size", "embedding.weight", 0},
             {"d_model", "embedding.weight", 1},
             {"d_ff", "encoder_feed_forward.0.linear1.weight", 0},
             {"max_length", "positions.pe", 0}},
            {{"blocks", "encoder_attention."}, {"blocks", "decoder_attention."}}};
  if (model == "rnn-attention")
    return {{{"vocab_size", "embedding.weight", 0},
             {"embedding_dim", "embedding.weight", 1},
             {"hidden_size", "bridge.weight", 0}},
            {}};
  fail<ValueError>("model", "unknown model '{}' (known: {})", model, fmt::join(model_names(), ", "));
}

// How many numbered layers the tensors hold under `prefix`: one more than the highest number.
int64_t count_layers(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix) {
  int64_t count = 0;
  for (auto it = shapes.lower_bound(prefix); it != shapes.end() && it->first.starts_with(prefix); ++it) {
    const std::string rest = it->first.substr(prefix.size());
    const size_t digits = rest.find_first_not_of("0123456789");
    if (digits == 0 || digits == std::string::npos || digits > 7) continue;
    count = std::max<int64_t>(count, std::stoll(rest.substr(0, digits)) + 1);
  }
  return count;
}

}  // namespace

void check_config_fits(const nlohmann::json& config, const std::map<std::string, std::vector<int64_t>>& shapes,
                       const std::string& path) {
  if (!config.is_object()) fail<nn::CheckpointError>(path, "the model configuration is {}, not an object", config.dump());
  const SizesInFile sizes = sizes_in_file(required<std::string>(config, "model"));
  // Ranges first, so that a message never quotes a size it then builds.
  for (const SizeInTensor& size : sizes.dimensions) required_size(config, size.field, path);
  for (const LayerCount& count : sizes.counts) required_size(config, count.field, path);
  required_size(config, "max_length", path);
  for (const SizeInTensor& size : sizes.dimensions) {
    const int64_t value = config.at(size.field).get<int64_t>();
    const auto tensor = shapes.find(size.tensor);
    if (tensor == shapes.end())
      fail<nn::CheckpointError>(path, "holds no tensor '{}', which a {} model has; the configuration does not "
                                "describe this file", size.tensor, config.at("model").get<std::string>());
    if (tensor->second.size() <= size.dim || tensor->second[size.dim] != value)
      fail<nn::CheckpointError>(path, "the configuration's '{}' is {}, but tensor '{}' has shape {}: the "
                                "configuration does not describe this file's tensors", size.field, value,
                                size.tensor, shape_str(tensor->second));
  }
  for (const LayerCount& count : sizes.counts) {
    const int64_t value = config.at(count.field).get<int64_t>();
    const int64_t held = count_layers(shapes, count.prefix);
    if (held != value)
      fail<nn::CheckpointError>(path, "the configuration's '{}' is {}, but the file holds {} layer(s) under '{}': "
                                "the configuration does not describe this file's tensors", count.field, value,
                                held, count.prefix);
  }
}

std::vector<std::string> model_names() {
  std::vector<std::string> names{"rnn-attention", "attention-seq2seq"};
  for (const TransformerPreset& p : kTransformerPresets) names.emplace_back(p.name);
  return names;
}

nlohmann::json model_config(const std::string& name, const ModelOptions& options) {
  if (options.vocab_size <= 4)
    fail<ValueError>("model " + name, "vocabulary size {} is too small", options.vocab_size);
  nlohmann::json config{{"model", name},
                        {"vocab_size", options.vocab_size},
                        {"dropout", options.dropout},
                        {"max_length", options.max_length}};
  if (const TransformerPreset* p = find_preset(name)) {
    config.update({{"d_model", p->d_model},
                   {"heads", p->heads},
                   {"d_ff", p->d_ff},
                   {"layers", p->layers},
                   {"pre_norm", options.pre_norm},
                   {"share_embeddings", options.share_embeddings}});
    if (!options.sublayers.empty()) config["sublayers"] = options.sublayers;
    return config;
  }
  if (!options.sublayers.empty())
    fail<ValueError>("model " + name, "sublayers '{}' are for the transformer-* models only", options.sublayers);
  if (name == "attention-seq2seq") {
    config.update({{"d_model", 64}, {"d_ff", 256}, {"blocks", 2}});
    return config;
  }
  if (name == "rnn-attention") {
    if (options.rnn_cell != "gru" && options.rnn_cell != "lstm")
      fail<ValueError>("model rnn-attention", "cell '{}' is neither gru nor lstm", options.rnn_cell);
    config.update({{"embedding_dim", 64}, {"hidden_size", 128}, {"cell", options.rnn_cell}});
    return config;
  }
  fail<ValueError>("model", "unknown model '{}' (known: {})", name, fmt::join(model_names(), ", "));
}

std::shared_ptr<Seq2SeqModel> make_model(const nlohmann::json& config, Generator& gen) {
  return make_model(config, Sublayers{}, gen);
}

std::shared_ptr<Seq2SeqModel> make_model(const nlohmann::json& config, const Sublayers& sublayers, Generator& gen) {
  const std::string wanted = config.contains("sublayers") ? required<std::string>(config, "sublayers") : "";
  if (wanted != sublayers.name) {
    if (sublayers.name.empty())
      fail<ValueError>("model config", "the model was built with the sublayers '{}' of the program that trained it; "
                                       "build it with make_model(config, sublayers) from a program that defines them",
                       wanted);
    fail<ValueError>("model config", "sublayers '{}' were given for a configuration that names {}", sublayers.name,
                     wanted.empty() ? std::string("none") : fmt::format("'{}'", wanted));
  }
  const auto name = required<std::string>(config, "model");
  const int64_t vocab_size = required_size(config, "vocab_size");
  const auto dropout = required<double>(config, "dropout");
  const int64_t max_length = required_size(config, "max_length");
  if (find_preset(name)) {
    const TransformerSizes sizes{vocab_size,
                                 required_size(config, "d_model"),
                                 required_size(config, "heads"),
                                 required_size(config, "d_ff"),
                                 required_size(config, "layers"),
                                 dropout,
                                 required<bool>(config, "pre_norm"),
                                 required<bool>(config, "share_embeddings"),
                                 max_length,
                                 sublayers.feed_forward,
                                 sublayers.norm};
    return std::make_shared<TransformerSeq2Seq>(sizes, config, gen);
  }
  if (name == "rnn-attention") {
    const auto cell = required<std::string>(config, "cell");
    if (cell != "gru" && cell != "lstm") fail<FormatError>("model config", "cell '{}' is neither gru nor lstm", cell);
    const RnnSizes sizes{vocab_size, required_size(config, "embedding_dim"), required_size(config, "hidden_size"),
                         dropout, cell == "lstm"};
    return std::make_shared<RnnAttentionSeq2Seq>(sizes, config, gen);
  }
  if (name == "attention-seq2seq") {
    const AttentionSeq2SeqSizes sizes{vocab_size, required_size(config, "d_model"), required_size(config, "d_ff"),
                                      required_size(config, "blocks"), dropout, max_length};
    return std::make_shared<AttentionSeq2Seq>(sizes, config, gen);
  }
  fail<ValueError>("model", "unknown model '{}' (known: {})", name, fmt::join(model_names(), ", "));
}

}  // namespace gradformer::models

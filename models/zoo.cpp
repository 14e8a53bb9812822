#include "models/zoo.h"

#include "models/attention_seq2seq.h"
#include "models/rnn_seq2seq.h"
#include "models/transformer_seq2seq.h"

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

}  // namespace

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
  const auto vocab_size = required<int64_t>(config, "vocab_size");
  const auto dropout = required<double>(config, "dropout");
  const auto max_length = required<int64_t>(config, "max_length");
  if (find_preset(name)) {
    const TransformerSizes sizes{vocab_size,
                                 required<int64_t>(config, "d_model"),
                                 required<int64_t>(config, "heads"),
                                 required<int64_t>(config, "d_ff"),
                                 required<int64_t>(config, "layers"),
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
    const RnnSizes sizes{vocab_size, required<int64_t>(config, "embedding_dim"), required<int64_t>(config, "hidden_size"),
                         dropout, cell == "lstm"};
    return std::make_shared<RnnAttentionSeq2Seq>(sizes, config, gen);
  }
  if (name == "attention-seq2seq") {
    const AttentionSeq2SeqSizes sizes{vocab_size, required<int64_t>(config, "d_model"), required<int64_t>(config, "d_ff"),
                                      required<int64_t>(config, "blocks"), dropout, max_length};
    return std::make_shared<AttentionSeq2Seq>(sizes, config, gen);
  }
  fail<ValueError>("model", "unknown model '{}' (known: {})", name, fmt::join(model_names(), ", "));
}

}  // namespace gradformer::models

#include "models/transformer_seq2seq.h"

#include "models/data/tokenizer.h"
#include "ops/ops.h"

#include <cmath>

namespace gradformer::models {
namespace {

struct TransformerState : DecoderState {
  Tensor memory;          // (B, S, D)
  Tensor source_padding;  // bool (B, S)
  nn::DecoderCache cache;
  int64_t position = 0;

  void select(const Tensor& rows) override {
    memory = select_rows(memory, rows);
    source_padding = select_rows(source_padding, rows);
    for (nn::DecoderLayerCache& layer : cache.layers) {
      for (nn::KVCache* kv : {&layer.self_attn, &layer.cross_attn}) {
        if (kv->key.defined()) kv->key = select_rows(kv->key, rows);
        if (kv->value.defined()) kv->value = select_rows(kv->value, rows);
      }
    }
  }
};

}  // namespace

TransformerSeq2Seq::TransformerSeq2Seq(const TransformerSizes& sizes, nlohmann::json config, Generator& gen)
    : sizes_(sizes), config_(std::move(config)) {
  const nn::TransformerOptions transformer{.layer = {.d_model = sizes.d_model,
                                                     .nhead = sizes.heads,
                                                     .dim_feedforward = sizes.d_ff,
                                                     .dropout = sizes.dropout,
                                                     .norm_first = sizes.pre_norm,
                                                     .feed_forward = sizes.feed_forward,
                                                     .norm = sizes.norm},
                                           .num_encoder_layers = sizes.layers,
                                           .num_decoder_layers = sizes.layers};
  transformer_ = register_module("transformer", std::make_shared<nn::Transformer>(transformer, gen));
  source_embedding_ = register_module("source_embedding",
                                      std::make_shared<nn::Embedding>(sizes.vocab_size, sizes.d_model, data::pad_id, gen));
  target_embedding_ = sizes.share_embeddings
                          ? source_embedding_
                          : register_module("target_embedding", std::make_shared<nn::Embedding>(
                                                                    sizes.vocab_size, sizes.d_model, data::pad_id, gen));
  positions_ = register_module("positions", std::make_shared<nn::SinusoidalPositionalEncoding>(sizes.d_model, sizes.max_length));
  embedding_dropout_ = register_module("embedding_dropout", std::make_shared<nn::Dropout>(sizes.dropout));
  if (!sizes.share_embeddings)
    output_ = register_module("output", std::make_shared<nn::Linear>(sizes.d_model, sizes.vocab_size, true, gen));
}

Tensor TransformerSeq2Seq::embed_source(const Tensor& ids) const {
  const Tensor x = source_embedding_->forward(ids) * std::sqrt(static_cast<double>(sizes_.d_model));  // (B, S, D)
  return embedding_dropout_->forward(positions_->forward(x));
}

Tensor TransformerSeq2Seq::embed_target(const Tensor& ids, int64_t start) const {
  const Tensor x = target_embedding_->forward(ids) * std::sqrt(static_cast<double>(sizes_.d_model));  // (B, T, D)
  return embedding_dropout_->forward(positions_->forward(x, start));
}

Tensor TransformerSeq2Seq::project(const Tensor& y) const {
  return output_ ? output_->forward(y) : linear(y, target_embedding_->weight());  // (B, T, V)
}

Tensor TransformerSeq2Seq::forward(const Tensor& src, const Tensor& tgt_in) const {
  const Tensor source_padding = eq(src, static_cast<double>(data::pad_id));  // (B, S)
  const Tensor memory = transformer_->encode(embed_source(src), source_padding);
  nn::DecodeMasks masks;
  masks.tgt_key_padding_mask = eq(tgt_in, static_cast<double>(data::pad_id));
  masks.memory_key_padding_mask = source_padding;
  return project(transformer_->decode(embed_target(tgt_in, 0), memory, masks));
}

std::unique_ptr<DecoderState> TransformerSeq2Seq::start(const Tensor& src) const {
  auto state = std::make_unique<TransformerState>();
  state->source_padding = eq(src, static_cast<double>(data::pad_id));
  state->memory = transformer_->encode(embed_source(src), state->source_padding);
  state->cache.layers.resize(static_cast<size_t>(sizes_.layers));
  return state;
}

Tensor TransformerSeq2Seq::step(DecoderState& base, const Tensor& last) const {
  auto& state = static_cast<TransformerState&>(base);
  nn::DecodeMasks masks;
  masks.memory_key_padding_mask = state.source_padding;
  const Tensor x = embed_target(unsqueeze(last, 1), state.position);  // (B, 1, D)
  const Tensor y = transformer_->decode(x, state.memory, masks, &state.cache);
  ++state.position;
  return log_softmax(reshape(project(y), {last.size(0), -1}), -1);  // (B, V)
}

std::vector<AttentionMap> TransformerSeq2Seq::attention_maps(const Tensor& src, const Tensor& tgt_in) const {
  NoGradGuard no_grad;
  nn::AttentionWeights weights;  // per layer (1, H, queries, keys)
  const Tensor source_padding = eq(src, static_cast<double>(data::pad_id));
  const Tensor memory = transformer_->encode(embed_source(src), source_padding, &weights);
  nn::DecodeMasks masks;
  masks.memory_key_padding_mask = source_padding;
  transformer_->decode(embed_target(tgt_in, 0), memory, masks, nullptr, &weights);
  std::vector<AttentionMap> maps;
  const auto add = [&](AttentionKind kind, const std::vector<Tensor>& layers) {
    for (size_t layer = 0; layer < layers.size(); ++layer) {
      const Tensor& w = layers[layer];
      for (int64_t head = 0; head < w.size(1); ++head)
        maps.push_back({fmt::format("{}layer {} head {}", kind == AttentionKind::cross ? "" : attention_kind_name(kind) + " ",
                                    layer, head),
                        reshape(slice(w, 1, head, head + 1), {w.size(2), w.size(3)}), kind,
                        static_cast<int64_t>(layer), head});
    }
  };
  add(AttentionKind::cross, weights.cross);
  add(AttentionKind::encoder_self, weights.encoder_self);
  add(AttentionKind::decoder_self, weights.decoder_self);
  return maps;
}

}  // namespace gradformer::models

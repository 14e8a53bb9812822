#include "models/attention_seq2seq.h"

#include "models/data/tokenizer.h"
#include "ops/ops.h"

#include <cmath>

namespace gradformer::models {
namespace {

struct PrefixState : DecoderState {
  Tensor src, memory, source_padding;
  std::vector<Tensor> prefix;  // the tokens fed so far, each (B)

  void select(const Tensor& rows) override {
    src = select_rows(src, rows);
    memory = select_rows(memory, rows);
    source_padding = select_rows(source_padding, rows);
    for (Tensor& t : prefix) t = select_rows(t, rows);
  }
};

}  // namespace

AttentionSeq2Seq::AttentionSeq2Seq(const AttentionSeq2SeqSizes& sizes, nlohmann::json config, Generator& gen)
    : sizes_(sizes), config_(std::move(config)) {
  const int64_t d = sizes.d_model;
  embedding_ = register_module("embedding", std::make_shared<nn::Embedding>(sizes.vocab_size, d, data::pad_id, gen));
  positions_ = register_module("positions", std::make_shared<nn::SinusoidalPositionalEncoding>(d, sizes.max_length));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(sizes.dropout));
  encoder_attention_ = register_module("encoder_attention", std::make_shared<nn::ModuleList>());
  encoder_feed_forward_ = register_module("encoder_feed_forward", std::make_shared<nn::ModuleList>());
  encoder_norms_ = register_module("encoder_norms", std::make_shared<nn::ModuleList>());
  decoder_self_attention_ = register_module("decoder_self_attention", std::make_shared<nn::ModuleList>());
  decoder_attention_ = register_module("decoder_attention", std::make_shared<nn::ModuleList>());
  decoder_feed_forward_ = register_module("decoder_feed_forward", std::make_shared<nn::ModuleList>());
  decoder_norms_ = register_module("decoder_norms", std::make_shared<nn::ModuleList>());
  // Every attention of width d, scaled; every feed-forward block with the model's dropout.
  const nn::SelfAttentionOptions self_attention{.dim = d, .value_dim = d, .attention_dim = d};
  const nn::AttentionLayerOptions attention{.query_dim = d, .key_dim = d, .value_dim = d, .attention_dim = d};
  const nn::FeedForwardOptions feed_forward{.d_model = d, .dim_feedforward = sizes.d_ff, .dropout = sizes.dropout};
  for (int64_t b = 0; b < sizes.blocks; ++b) {
    encoder_attention_->push_back(std::make_shared<nn::SelfAttention>(self_attention, gen));
    encoder_feed_forward_->push_back(std::make_shared<nn::FeedForward>(feed_forward, gen));
    decoder_self_attention_->push_back(std::make_shared<nn::SelfAttention>(self_attention, gen));
    decoder_attention_->push_back(std::make_shared<nn::Attention>(attention, gen));
    decoder_feed_forward_->push_back(std::make_shared<nn::FeedForward>(feed_forward, gen));
    for (int k = 0; k < 2; ++k) encoder_norms_->push_back(std::make_shared<nn::LayerNorm>(Shape{d}));
    for (int k = 0; k < 3; ++k) decoder_norms_->push_back(std::make_shared<nn::LayerNorm>(Shape{d}));
  }
  output_ = register_module("output", std::make_shared<nn::Linear>(d, sizes.vocab_size, true, gen));
}

Tensor AttentionSeq2Seq::encode(const Tensor& src, const Tensor& source_padding, nn::AttentionWeights* weights) const {
  const double scale = std::sqrt(static_cast<double>(sizes_.d_model));
  Tensor x = dropout_->forward(positions_->forward(embedding_->forward(src) * scale));  // (B, S, D)
  for (int64_t b = 0; b < sizes_.blocks; ++b) {
    const auto i = static_cast<size_t>(b);
    const AttentionResult attended =
        encoder_attention_->at<nn::SelfAttention>(i)->forward(x, source_padding, false, weights != nullptr);
    if (weights) weights->encoder_self.push_back(unsqueeze(attended.weights, 1));
    x = encoder_norms_->at<nn::LayerNorm>(2 * i)->forward(x + dropout_->forward(attended.output));
    const Tensor dense = encoder_feed_forward_->at<nn::FeedForward>(i)->forward(x);
    x = encoder_norms_->at<nn::LayerNorm>(2 * i + 1)->forward(x + dropout_->forward(dense));
  }
  return x;
}

Tensor AttentionSeq2Seq::decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& source_padding,
                                nn::AttentionWeights* weights) const {
  const double scale = std::sqrt(static_cast<double>(sizes_.d_model));
  Tensor y = dropout_->forward(positions_->forward(embedding_->forward(tgt_in) * scale));  // (B, T, D)
  for (int64_t b = 0; b < sizes_.blocks; ++b) {
    const auto i = static_cast<size_t>(b);
    const AttentionResult own = decoder_self_attention_->at<nn::SelfAttention>(i)->forward(y, {}, true, weights != nullptr);
    if (weights) weights->decoder_self.push_back(unsqueeze(own.weights, 1));
    y = decoder_norms_->at<nn::LayerNorm>(3 * i)->forward(y + dropout_->forward(own.output));
    const AttentionResult cross =
        decoder_attention_->at<nn::Attention>(i)->forward(y, memory, source_padding, false, weights != nullptr);
    if (weights) weights->cross.push_back(unsqueeze(cross.weights, 1));
    y = decoder_norms_->at<nn::LayerNorm>(3 * i + 1)->forward(y + dropout_->forward(cross.output));
    const Tensor dense = decoder_feed_forward_->at<nn::FeedForward>(i)->forward(y);
    y = decoder_norms_->at<nn::LayerNorm>(3 * i + 2)->forward(y + dropout_->forward(dense));
  }
  return y;
}

Tensor AttentionSeq2Seq::forward(const Tensor& src, const Tensor& tgt_in) const {
  const Tensor source_padding = eq(src, static_cast<double>(data::pad_id));
  return output_->forward(decode(tgt_in, encode(src, source_padding), source_padding, nullptr));
}

std::unique_ptr<DecoderState> AttentionSeq2Seq::start(const Tensor& src) const {
  auto state = std::make_unique<PrefixState>();
  state->src = src;
  state->source_padding = eq(src, static_cast<double>(data::pad_id));
  state->memory = encode(src, state->source_padding);
  return state;
}

Tensor AttentionSeq2Seq::step(DecoderState& base, const Tensor& last) const {
  auto& state = static_cast<PrefixState&>(base);
  state.prefix.push_back(last);
  std::vector<Tensor> columns;
  for (const Tensor& t : state.prefix) columns.push_back(unsqueeze(t, 1));
  const Tensor y = decode(concat(columns, 1), state.memory, state.source_padding, nullptr);  // (B, T, D)
  const Tensor final_step = slice(y, 1, -1, y.size(1));                                   // (B, 1, D)
  return log_softmax(reshape(output_->forward(final_step), {last.size(0), -1}), -1);
}

std::vector<AttentionMap> AttentionSeq2Seq::attention_maps(const Tensor& src, const Tensor& tgt_in) const {
  NoGradGuard no_grad;
  const Tensor source_padding = eq(src, static_cast<double>(data::pad_id));
  nn::AttentionWeights weights;  // per block (1, 1, queries, keys)
  decode(tgt_in, encode(src, source_padding, &weights), source_padding, &weights);
  std::vector<AttentionMap> maps;
  const auto add = [&](AttentionKind kind, const char* what, const std::vector<Tensor>& blocks) {
    for (size_t b = 0; b < blocks.size(); ++b)
      maps.push_back({fmt::format("block {} {}", b, what), reshape(blocks[b], {blocks[b].size(2), blocks[b].size(3)}),
                      kind, static_cast<int64_t>(b), 0});
  };
  add(AttentionKind::cross, "attention", weights.cross);
  add(AttentionKind::encoder_self, "encoder self-attention", weights.encoder_self);
  add(AttentionKind::decoder_self, "decoder self-attention", weights.decoder_self);
  return maps;
}

}  // namespace gradformer::models

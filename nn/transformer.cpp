#include "nn/transformer.h"

#include "nn/init.h"
#include "ops/ops.h"

#include <cmath>

namespace gradformer::nn {
namespace {

Tensor activate(const Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::relu: return relu(x);
    case Activation::gelu: return gelu(x);
    case Activation::silu: return silu(x);
  }
  fail<ValueError>("activation", "unknown Activation {}", static_cast<int>(activation));
}

// (B, L, D) with D = d_model, else a ShapeError naming the layer and the tensor.
void check_sequence(std::string_view layer, std::string_view what, const Tensor& x, int64_t d_model) {
  if (x.dim() != 3 || x.size(2) != d_model)
    fail<ShapeError>(layer, "{} {}: expected (B, L, {}) (d_model)", what, shape_str(x.shape()), d_model);
}

void check_options(std::string_view layer, const TransformerLayerOptions& options) {
  if (options.d_model <= 0 || options.nhead <= 0 || options.dim_feedforward <= 0)
    fail<ValueError>(layer, "d_model {}, nhead {} and dim_feedforward {} must be positive", options.d_model,
                     options.nhead, options.dim_feedforward);
}

// A layer's or stack's norm: the options' factory's, else LayerNorm(d_model). A factory that returns nothing is a
// ValueError naming the layer.
std::shared_ptr<UnaryModule> make_norm(std::string_view layer, const TransformerLayerOptions& options) {
  if (!options.norm) return std::make_shared<LayerNorm>(Shape{options.d_model});
  std::shared_ptr<UnaryModule> norm = options.norm(options.d_model);
  if (!norm) fail<ValueError>(layer, "the norm factory returned a null module");
  return norm;
}

std::shared_ptr<UnaryModule> make_feed_forward(std::string_view layer, const TransformerLayerOptions& options,
                                               Generator& gen) {
  std::shared_ptr<UnaryModule> block = options.feed_forward(options, gen);
  if (!block) fail<ValueError>(layer, "the feed_forward factory returned a null module");
  return block;
}

// The self- and cross-attention of a layer: options.nhead heads, dropout on the weights, biases.
std::shared_ptr<MultiheadAttention> layer_attention(const TransformerLayerOptions& options, Generator& gen) {
  return std::make_shared<MultiheadAttention>(
      MultiheadAttentionOptions{.embed_dim = options.d_model, .num_heads = options.nhead, .dropout = options.dropout},
      gen);
}

// Adds rows start..start+T-1 of a position table [max_len, D] to x (B, T, D).
Tensor add_positions(std::string_view layer, const Tensor& x, const Tensor& table, int64_t start) {
  const int64_t max_len = table.size(0);
  check_sequence(layer, "input", x, table.size(1));
  if (start < 0 || start + x.size(1) > max_len)
    fail<IndexError>(layer, "positions {}..{} of input {} exceed max_len {}", start, start + x.size(1) - 1,
                     shape_str(x.shape()), max_len);
  return x + narrow(table, 0, start, x.size(1));  // (B, T, D) + (T, D)
}

}  // namespace

FeedForward::FeedForward(int64_t d_model, int64_t dim_feedforward, Generator& gen)
    : FeedForward(FeedForwardOptions{.d_model = d_model, .dim_feedforward = dim_feedforward}, gen) {}

FeedForward::FeedForward(const FeedForwardOptions& options, Generator& gen) : activation_(options.activation) {
  linear1_ = register_module("linear1", std::make_shared<Linear>(options.d_model, options.dim_feedforward, true, gen));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(options.dropout));
  linear2_ = register_module("linear2", std::make_shared<Linear>(options.dim_feedforward, options.d_model, true, gen));
}

Tensor FeedForward::forward(const Tensor& x) const {
  return with_forward_hooks(
      [this](const Tensor& input) {
        return linear2_->forward(dropout_->forward(activate(linear1_->forward(input), activation_)));
      },
      x);
}

SinusoidalPositionalEncoding::SinusoidalPositionalEncoding(int64_t d_model, int64_t max_len) {
  if (d_model <= 0 || max_len <= 0)
    fail<ValueError>("SinusoidalPositionalEncoding", "d_model {} and max_len {} must be positive", d_model, max_len);
  Tensor pe = empty({max_len, d_model}, DType::f64);
  double* out = pe.data_ptr<double>();
  for (int64_t p = 0; p < max_len; ++p)
    for (int64_t i = 0; i < d_model; ++i) {
      // Columns 2i and 2i+1 share the frequency 1 / 10000^(2i/D).
      const double angle = static_cast<double>(p) /
                           std::pow(10000.0, static_cast<double>(i - i % 2) / static_cast<double>(d_model));
      out[p * d_model + i] = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  pe_ = register_buffer("pe", pe.to(DType::f32));
}

Tensor SinusoidalPositionalEncoding::forward(const Tensor& x, int64_t start) const {
  return with_forward_hooks(
      [&](const Tensor& input) { return add_positions("SinusoidalPositionalEncoding", input, pe_, start); }, x);
}

LearnedPositionalEncoding::LearnedPositionalEncoding(int64_t d_model, int64_t max_len, Generator& gen) {
  if (d_model <= 0 || max_len <= 0)
    fail<ValueError>("LearnedPositionalEncoding", "d_model {} and max_len {} must be positive", d_model, max_len);
  weight_ = register_parameter("weight", init::normal_(empty({max_len, d_model}), 0.0, 1.0, gen));
}

Tensor LearnedPositionalEncoding::forward(const Tensor& x, int64_t start) const {
  return with_forward_hooks(
      [&](const Tensor& input) { return add_positions("LearnedPositionalEncoding", input, weight_, start); }, x);
}

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t nhead, Generator& gen)
    : TransformerEncoderLayer(TransformerLayerOptions{.d_model = d_model, .nhead = nhead}, gen) {}

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerOptions& options, Generator& gen)
    : options_(options) {
  check_options("TransformerEncoderLayer", options);
  const int64_t d = options.d_model;
  self_attn_ = register_module("self_attn", layer_attention(options, gen));
  if (options.feed_forward) {
    feed_forward_ = register_module("feed_forward", make_feed_forward("TransformerEncoderLayer", options, gen));
  } else {
    linear1_ = register_module("linear1", std::make_shared<Linear>(d, options.dim_feedforward, true, gen));
    dropout_ = register_module("dropout", std::make_shared<Dropout>(options.dropout));
    linear2_ = register_module("linear2", std::make_shared<Linear>(options.dim_feedforward, d, true, gen));
  }
  norm1_ = register_module("norm1", make_norm("TransformerEncoderLayer", options));
  norm2_ = register_module("norm2", make_norm("TransformerEncoderLayer", options));
  dropout1_ = register_module("dropout1", std::make_shared<Dropout>(options.dropout));
  dropout2_ = register_module("dropout2", std::make_shared<Dropout>(options.dropout));
}

Tensor TransformerEncoderLayer::self_attention_block(const Tensor& x, const Tensor& key_padding_mask,
                                                     const Tensor& mask, bool causal, AttentionWeights* weights) const {
  MultiheadAttentionForwardOptions options;
  options.attn_mask = mask;
  options.key_padding_mask = key_padding_mask;
  options.causal = causal;
  options.need_weights = weights != nullptr;
  options.average_attn_weights = false;
  AttentionResult attended = self_attn_->forward(x, x, x, options);
  if (weights) weights->encoder_self.push_back(attended.weights);  // (B, H, S, S)
  return dropout1_->forward(attended.output);
}

Tensor TransformerEncoderLayer::feed_forward_block(const Tensor& x) const {
  if (feed_forward_) return dropout2_->forward(feed_forward_->forward(x));
  return dropout2_->forward(
      linear2_->forward(dropout_->forward(activate(linear1_->forward(x), options_.activation))));
}

Tensor TransformerEncoderLayer::forward(const Tensor& src, const Tensor& src_key_padding_mask, const Tensor& src_mask,
                                        bool causal, AttentionWeights* weights) const {
  return with_forward_hooks(
      [&](const Tensor& source, const Tensor& key_padding_mask, const Tensor& mask) {
        check_sequence("TransformerEncoderLayer", "src", source, options_.d_model);
        Tensor x = source;  // (B, S, D)
        if (options_.norm_first) {
          x = x + self_attention_block(norm1_->forward(x), key_padding_mask, mask, causal, weights);
          return x + feed_forward_block(norm2_->forward(x));
        }
        x = norm1_->forward(x + self_attention_block(x, key_padding_mask, mask, causal, weights));
        return norm2_->forward(x + feed_forward_block(x));
      },
      src, src_key_padding_mask, src_mask);
}

TransformerDecoderLayer::TransformerDecoderLayer(int64_t d_model, int64_t nhead, Generator& gen)
    : TransformerDecoderLayer(TransformerLayerOptions{.d_model = d_model, .nhead = nhead}, gen) {}

TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerOptions& options, Generator& gen)
    : options_(options) {
  check_options("TransformerDecoderLayer", options);
  const int64_t d = options.d_model;
  self_attn_ = register_module("self_attn", layer_attention(options, gen));
  multihead_attn_ = register_module("multihead_attn", layer_attention(options, gen));
  if (options.feed_forward) {
    feed_forward_ = register_module("feed_forward", make_feed_forward("TransformerDecoderLayer", options, gen));
  } else {
    linear1_ = register_module("linear1", std::make_shared<Linear>(d, options.dim_feedforward, true, gen));
    dropout_ = register_module("dropout", std::make_shared<Dropout>(options.dropout));
    linear2_ = register_module("linear2", std::make_shared<Linear>(options.dim_feedforward, d, true, gen));
  }
  norm1_ = register_module("norm1", make_norm("TransformerDecoderLayer", options));
  norm2_ = register_module("norm2", make_norm("TransformerDecoderLayer", options));
  norm3_ = register_module("norm3", make_norm("TransformerDecoderLayer", options));
  dropout1_ = register_module("dropout1", std::make_shared<Dropout>(options.dropout));
  dropout2_ = register_module("dropout2", std::make_shared<Dropout>(options.dropout));
  dropout3_ = register_module("dropout3", std::make_shared<Dropout>(options.dropout));
}

Tensor TransformerDecoderLayer::feed_forward_block(const Tensor& x) const {
  if (feed_forward_) return dropout3_->forward(feed_forward_->forward(x));
  return dropout3_->forward(
      linear2_->forward(dropout_->forward(activate(linear1_->forward(x), options_.activation))));
}

Tensor TransformerDecoderLayer::forward(const Tensor& tgt, const Tensor& memory, bool tgt_causal,
                                        const Tensor& tgt_key_padding_mask, const Tensor& memory_key_padding_mask,
                                        DecoderLayerCache* cache, AttentionWeights* weights) const {
  return with_forward_hooks(
      [&](const Tensor& target, const Tensor& source_memory, const Tensor& target_padding,
          const Tensor& memory_padding) {
        return decode(target, source_memory, tgt_causal, target_padding, memory_padding, cache, weights);
      },
      tgt, memory, tgt_key_padding_mask, memory_key_padding_mask);
}

Tensor TransformerDecoderLayer::decode(const Tensor& tgt, const Tensor& memory, bool tgt_causal,
                                       const Tensor& tgt_key_padding_mask, const Tensor& memory_key_padding_mask,
                                       DecoderLayerCache* cache, AttentionWeights* weights) const {
  check_sequence("TransformerDecoderLayer", "tgt", tgt, options_.d_model);
  check_sequence("TransformerDecoderLayer", "memory", memory, options_.d_model);
  MultiheadAttentionForwardOptions self_options;
  self_options.key_padding_mask = tgt_key_padding_mask;
  self_options.causal = tgt_causal;
  self_options.cache = cache ? &cache->self_attn : nullptr;
  self_options.need_weights = weights != nullptr;
  self_options.average_attn_weights = false;
  MultiheadAttentionForwardOptions cross_options;
  cross_options.key_padding_mask = memory_key_padding_mask;
  cross_options.cache = cache ? &cache->cross_attn : nullptr;
  cross_options.need_weights = weights != nullptr;
  cross_options.average_attn_weights = false;
  const auto self_block = [&](const Tensor& x) {
    AttentionResult attended = self_attn_->forward(x, x, x, self_options);
    if (weights) weights->decoder_self.push_back(attended.weights);  // (B, H, T, T')
    return dropout1_->forward(attended.output);
  };
  const auto cross_block = [&](const Tensor& x) {
    AttentionResult attended = multihead_attn_->forward(x, memory, memory, cross_options);
    if (weights) weights->cross.push_back(attended.weights);  // (B, H, T, S)
    return dropout2_->forward(attended.output);
  };
  Tensor x = tgt;  // (B, T, D)
  if (options_.norm_first) {
    x = x + self_block(norm1_->forward(x));
    x = x + cross_block(norm2_->forward(x));
    return x + feed_forward_block(norm3_->forward(x));
  }
  x = norm1_->forward(x + self_block(x));
  x = norm2_->forward(x + cross_block(x));
  return norm3_->forward(x + feed_forward_block(x));
}

TransformerEncoder::TransformerEncoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm,
                                       Generator& gen) {
  if (num_layers <= 0) fail<ValueError>("TransformerEncoder", "num_layers {} must be positive", num_layers);
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < num_layers; ++i) layers_->push_back(std::make_shared<TransformerEncoderLayer>(layer, gen));
  if (final_norm) norm_ = register_module("norm", make_norm("TransformerEncoder", layer));
}

Tensor TransformerEncoder::forward(const Tensor& src, const Tensor& src_key_padding_mask, const Tensor& mask,
                                   bool causal, AttentionWeights* weights) const {
  return with_forward_hooks(
      [&](const Tensor& source, const Tensor& key_padding_mask, const Tensor& attn_mask) {
        Tensor x = source;  // (B, S, D)
        for (size_t i = 0; i < layers_->size(); ++i)
          x = layers_->at<TransformerEncoderLayer>(i)->forward(x, key_padding_mask, attn_mask, causal, weights);
        return norm_ ? norm_->forward(x) : x;
      },
      src, src_key_padding_mask, mask);
}

TransformerDecoder::TransformerDecoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm,
                                       Generator& gen) {
  if (num_layers <= 0) fail<ValueError>("TransformerDecoder", "num_layers {} must be positive", num_layers);
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < num_layers; ++i) layers_->push_back(std::make_shared<TransformerDecoderLayer>(layer, gen));
  if (final_norm) norm_ = register_module("norm", make_norm("TransformerDecoder", layer));
}

Tensor TransformerDecoder::forward(const Tensor& tgt, const Tensor& memory, bool tgt_causal,
                                   const Tensor& tgt_key_padding_mask, const Tensor& memory_key_padding_mask,
                                   DecoderCache* cache, AttentionWeights* weights) const {
  if (cache) cache->layers.resize(layers_->size());
  return with_forward_hooks(
      [&](const Tensor& target, const Tensor& source_memory, const Tensor& target_padding,
          const Tensor& memory_padding) {
        Tensor x = target;  // (B, T, D)
        for (size_t i = 0; i < layers_->size(); ++i)
          x = layers_->at<TransformerDecoderLayer>(i)->forward(x, source_memory, tgt_causal, target_padding,
                                                               memory_padding, cache ? &cache->layers[i] : nullptr,
                                                               weights);
        return norm_ ? norm_->forward(x) : x;
      },
      tgt, memory, tgt_key_padding_mask, memory_key_padding_mask);
}

Transformer::Transformer(int64_t d_model, int64_t nhead, Generator& gen)
    : Transformer(TransformerOptions{.layer = {.d_model = d_model, .nhead = nhead}}, gen) {}

Transformer::Transformer(const TransformerOptions& options, Generator& gen) {
  encoder_ = register_module(
      "encoder", std::make_shared<TransformerEncoder>(options.layer, options.num_encoder_layers, true, gen));
  decoder_ = register_module(
      "decoder", std::make_shared<TransformerDecoder>(options.layer, options.num_decoder_layers, true, gen));
  for (const Tensor& p : parameters())
    if (p.dim() > 1) init::xavier_uniform_(p, 1.0, gen);
}

Tensor Transformer::encode(const Tensor& src, const Tensor& src_key_padding_mask, AttentionWeights* weights) const {
  return encoder_->forward(src, src_key_padding_mask, {}, false, weights);
}

Tensor Transformer::decode(const Tensor& tgt, const Tensor& memory, const DecodeMasks& masks,
                           DecoderCache* cache, AttentionWeights* weights) const {
  return decoder_->forward(tgt, memory, masks.tgt_causal, masks.tgt_key_padding_mask, masks.memory_key_padding_mask,
                           cache, weights);
}

Tensor Transformer::forward(const Tensor& src, const Tensor& tgt, const Tensor& src_key_padding_mask,
                            const Tensor& tgt_key_padding_mask, const Tensor& memory_key_padding_mask) const {
  DecodeMasks masks;
  masks.tgt_key_padding_mask = tgt_key_padding_mask;
  masks.memory_key_padding_mask = memory_key_padding_mask;
  return decode(tgt, encode(src, src_key_padding_mask), masks);
}

}  // namespace gradformer::nn

// The Transformer of "Attention Is All You Need" as torch.nn.Transformer builds it: the position-wise
// feed-forward block, sinusoidal and learned positional encodings, encoder and decoder layers (post-norm, or
// pre-norm with norm_first), their stacks with a final LayerNorm, and the encoder-decoder. Child names are
// PyTorch's, so a state_dict maps one to one onto nn.Transformer's (table below). Not here: token embeddings,
// the output projection and decoding loops (models/), attention itself (nn/attention.h).
//
// Our state_dict key (= PyTorch nn.Transformer key)               shape, E = d_model, F = dim_feedforward
//   encoder.layers.{i}.self_attn.in_proj_weight                   [3E, E]
//   encoder.layers.{i}.self_attn.in_proj_bias                     [3E]
//   encoder.layers.{i}.self_attn.out_proj.weight                  [E, E]
//   encoder.layers.{i}.self_attn.out_proj.bias                    [E]
//   encoder.layers.{i}.linear1.weight                             [F, E]
//   encoder.layers.{i}.linear1.bias                               [F]
//   encoder.layers.{i}.linear2.weight                             [E, F]
//   encoder.layers.{i}.linear2.bias                               [E]
//   encoder.layers.{i}.norm1.weight, .norm1.bias                  [E]
//   encoder.layers.{i}.norm2.weight, .norm2.bias                  [E]
//   encoder.norm.weight, encoder.norm.bias                        [E]
//   decoder.layers.{i}.self_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias}   as above
//   decoder.layers.{i}.multihead_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias}
//   decoder.layers.{i}.linear1.{weight, bias}, .linear2.{weight, bias}                         as above
//   decoder.layers.{i}.norm1, .norm2, .norm3 (.weight, .bias)     [E]
//   decoder.norm.weight, decoder.norm.bias                        [E]
// The dropouts (dropout, dropout1..3) are children without state, as in PyTorch. Shapes are batch-first
// (PyTorch's batch_first=True).
//
// Extension points: TransformerLayerOptions::feed_forward and ::norm take factories for a user's own blocks
// (a SwiGLU feed-forward, RMSNorm), which every layer of a stack and the stacks' final norms are built with.
// A custom feed-forward is the child `feed_forward` (in place of linear1, dropout, linear2); custom norms keep
// the names norm1..3 and norm. Anything with `Tensor forward(const Tensor&) const` fits, by deriving from
// UnaryModule.
#pragma once

#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"

#include <functional>
#include <memory>
#include <vector>

namespace gradformer::nn {

enum class Activation { relu, gelu, silu };

// d_model and dim_feedforward are required.
struct FeedForwardOptions {
  int64_t d_model = 0;
  int64_t dim_feedforward = 0;
  double dropout = 0.1;
  Activation activation = Activation::relu;
};

// linear2(dropout(activation(linear1(x)))): (B, T, D) -> (B, T, D) through width dim_feedforward.
class FeedForward : public UnaryModule {
 public:
  FeedForward(int64_t d_model, int64_t dim_feedforward, Generator& gen = current_generator());
  explicit FeedForward(const FeedForwardOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "FeedForward"; }
  Tensor forward(const Tensor& x) const override;

 private:
  Activation activation_;
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<Dropout> dropout_;
};

// Both positional encodings take (d_model, max_len), as every layer here takes its width first.

// Vaswani's table pe[p, 2i] = sin(p / 10000^(2i/D)), pe[p, 2i+1] = cos(p / 10000^(2i/D)) as the buffer `pe`
// [max_len, D]; forward adds rows start..start+T-1 (start > 0 when decoding step by step).
class SinusoidalPositionalEncoding : public Module {
 public:
  explicit SinusoidalPositionalEncoding(int64_t d_model, int64_t max_len = 1024);
  std::string type_name() const override { return "SinusoidalPositionalEncoding"; }
  Tensor forward(const Tensor& x, int64_t start = 0) const;  // (B, T, D) -> (B, T, D)
  const Tensor& pe() const { return pe_; }

 private:
  Tensor pe_;
};

// A learned table `weight` [max_len, D], drawn from N(0, 1) as nn.Embedding; forward adds rows start..start+T-1.
class LearnedPositionalEncoding : public Module {
 public:
  explicit LearnedPositionalEncoding(int64_t d_model, int64_t max_len = 1024, Generator& gen = current_generator());
  std::string type_name() const override { return "LearnedPositionalEncoding"; }
  Tensor forward(const Tensor& x, int64_t start = 0) const;  // (B, T, D) -> (B, T, D)
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

struct TransformerLayerOptions;

// Builds a layer's feed-forward block from the layer's options (d_model, dim_feedforward, dropout), drawing its
// initial weights from gen.
using FeedForwardFactory =
    std::function<std::shared_ptr<UnaryModule>(const TransformerLayerOptions& options, Generator& gen)>;
// Builds a norm over the last dimension, of width d_model.
using NormFactory = std::function<std::shared_ptr<UnaryModule>(int64_t d_model)>;

// nn.TransformerEncoderLayer's and nn.TransformerDecoderLayer's arguments, which every layer of a stack shares.
struct TransformerLayerOptions {
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  Activation activation = Activation::relu;  // of the built-in feed-forward
  bool norm_first = false;
  FeedForwardFactory feed_forward{};  // null: linear1, activation, dropout, linear2 as PyTorch
  NormFactory norm{};                 // null: LayerNorm(d_model)
};

// Attention weights per head, collected for pictures (gradformer-translate's --attention-html): one tensor per
// layer in order, before dropout. Asking for them costs the weights' memory and nothing else.
struct AttentionWeights {
  std::vector<Tensor> encoder_self;  // (B, H, S, S)
  std::vector<Tensor> decoder_self;  // (B, H, T, T'), T' = every step so far with a cache
  std::vector<Tensor> cross;         // (B, H, T, S)
};

// nn.TransformerEncoderLayer: post-norm x = norm1(x + dropout1(sa(x))); x = norm2(x + dropout2(ff(x))), or
// pre-norm (norm_first) x = x + dropout1(sa(norm1(x))); x = x + dropout2(ff(norm2(x))).
class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(int64_t d_model, int64_t nhead, Generator& gen = current_generator());
  explicit TransformerEncoderLayer(const TransformerLayerOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "TransformerEncoderLayer"; }
  // src (B, S, D); src_key_padding_mask bool (B, S), true = padding; src_mask as
  // MultiheadAttentionForwardOptions::attn_mask. With weights, appends this layer's to weights->encoder_self.
  Tensor forward(const Tensor& src, const Tensor& src_key_padding_mask = {}, const Tensor& src_mask = {},
                 bool causal = false, AttentionWeights* weights = nullptr) const;

 private:
  Tensor self_attention_block(const Tensor& x, const Tensor& key_padding_mask, const Tensor& mask, bool causal,
                              AttentionWeights* weights) const;
  Tensor feed_forward_block(const Tensor& x) const;

  TransformerLayerOptions options_;
  std::shared_ptr<MultiheadAttention> self_attn_;
  std::shared_ptr<UnaryModule> feed_forward_;  // from options.feed_forward; else the three below
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<Dropout> dropout_, dropout1_, dropout2_;
  std::shared_ptr<UnaryModule> norm1_, norm2_;
};

// A decoder layer's keys and values of the steps decoded so far (self-attention) and of the memory
// (cross-attention, projected once). A fresh one per sequence.
struct DecoderLayerCache {
  KVCache self_attn{};
  KVCache cross_attn{Tensor{}, Tensor{}, true};
};

// nn.TransformerDecoderLayer: self-attention (causal by default), cross-attention over the memory, feed-forward,
// each with its residual, dropout and LayerNorm (after, or before with norm_first).
class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(int64_t d_model, int64_t nhead, Generator& gen = current_generator());
  explicit TransformerDecoderLayer(const TransformerLayerOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "TransformerDecoderLayer"; }
  // tgt (B, T, D), memory (B, S, D). With a cache, tgt holds only the new steps and tgt_key_padding_mask covers
  // every step so far; the cost is that of the new steps alone.
  // With weights, appends this layer's self- and cross-attention weights per head.
  Tensor forward(const Tensor& tgt, const Tensor& memory, bool tgt_causal = true,
                 const Tensor& tgt_key_padding_mask = {}, const Tensor& memory_key_padding_mask = {},
                 DecoderLayerCache* cache = nullptr, AttentionWeights* weights = nullptr) const;

 private:
  Tensor decode(const Tensor& tgt, const Tensor& memory, bool tgt_causal, const Tensor& tgt_key_padding_mask,
                const Tensor& memory_key_padding_mask, DecoderLayerCache* cache,
                AttentionWeights* weights) const;
  Tensor feed_forward_block(const Tensor& x) const;

  TransformerLayerOptions options_;
  std::shared_ptr<MultiheadAttention> self_attn_, multihead_attn_;
  std::shared_ptr<UnaryModule> feed_forward_;  // from options.feed_forward; else the three below
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<Dropout> dropout_, dropout1_, dropout2_, dropout3_;
  std::shared_ptr<UnaryModule> norm1_, norm2_, norm3_;
};

// num_layers encoder layers (`layers.0` ...) and, when final_norm, a norm `norm` after them (layer.norm's, else
// a LayerNorm).
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm = true,
                     Generator& gen = current_generator());
  std::string type_name() const override { return "TransformerEncoder"; }
  Tensor forward(const Tensor& src, const Tensor& src_key_padding_mask = {}, const Tensor& mask = {},
                 bool causal = false, AttentionWeights* weights = nullptr) const;
  const ModuleList& layers() const { return *layers_; }

 private:
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<UnaryModule> norm_;
};

// One DecoderLayerCache per layer; start a new one for every new batch of sequences.
struct DecoderCache {
  std::vector<DecoderLayerCache> layers;
};

class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm = true,
                     Generator& gen = current_generator());
  std::string type_name() const override { return "TransformerDecoder"; }
  // With weights, appends every layer's self- and cross-attention weights per head.
  Tensor forward(const Tensor& tgt, const Tensor& memory, bool tgt_causal = true,
                 const Tensor& tgt_key_padding_mask = {}, const Tensor& memory_key_padding_mask = {},
                 DecoderCache* cache = nullptr, AttentionWeights* weights = nullptr) const;
  const ModuleList& layers() const { return *layers_; }

 private:
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<UnaryModule> norm_;
};

struct DecodeMasks {
  Tensor tgt_key_padding_mask{};     // bool (B, T), true = padding
  Tensor memory_key_padding_mask{};  // bool (B, S), usually the source's padding
  bool tgt_causal = true;
};

// nn.Transformer's arguments, with its defaults: the layers' and the depth of each stack.
struct TransformerOptions {
  TransformerLayerOptions layer{};
  int64_t num_encoder_layers = 6;
  int64_t num_decoder_layers = 6;
};

// nn.Transformer (batch_first): `encoder` and `decoder` stacks, each with its final norm; every parameter of
// two or more dimensions re-drawn Xavier-uniform after construction, as nn.Transformer._reset_parameters.
class Transformer : public Module {
 public:
  Transformer(int64_t d_model, int64_t nhead, Generator& gen = current_generator());
  explicit Transformer(const TransformerOptions& options = {}, Generator& gen = current_generator());
  std::string type_name() const override { return "Transformer"; }
  // src (B, S, D) -> memory (B, S, D)
  Tensor encode(const Tensor& src, const Tensor& src_key_padding_mask = {}, AttentionWeights* weights = nullptr) const;
  // tgt (B, T, D) over memory (B, S, D) -> (B, T, D); with a cache, tgt holds only the new steps.
  Tensor decode(const Tensor& tgt, const Tensor& memory, const DecodeMasks& masks = {},
                DecoderCache* cache = nullptr, AttentionWeights* weights = nullptr) const;
  // decode(tgt, encode(src)) with a causal target, as nn.Transformer(src, tgt, tgt_is_causal=True).
  Tensor forward(const Tensor& src, const Tensor& tgt, const Tensor& src_key_padding_mask = {},
                 const Tensor& tgt_key_padding_mask = {}, const Tensor& memory_key_padding_mask = {}) const;
  const TransformerEncoder& encoder() const { return *encoder_; }
  const TransformerDecoder& decoder() const { return *decoder_; }

 private:
  std::shared_ptr<TransformerEncoder> encoder_;
  std::shared_ptr<TransformerDecoder> decoder_;
};

}  // namespace gradformer::nn

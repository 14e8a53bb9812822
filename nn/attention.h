// Attention layers: the lecture's single-head Attention (keys and values from encoder inputs X, queries from
// decoder inputs X'), SelfAttention (X' = X), and PyTorch's MultiheadAttention with its parameter names, masks
// and a key/value cache for step-by-step decoding. All of them project with `linear` and hand the products to
// the fused scaled_dot_product_attention op (ops/attention.h); none computes a softmax itself. Not here: the
// Transformer layers built on MultiheadAttention (nn/transformer.h), additive (Bahdanau) attention (nn/rnn.h).
#pragma once

#include "nn/layers.h"
#include "nn/module.h"
#include "ops/attention.h"

namespace gradformer::nn {

// Every layer here returns the op's AttentionResult (ops/attention.h): `output`, the attended values, and
// `weights` when asked for; each forward states their shapes.

// The lecture's sizes: queries of query_dim, keys and values of key_dim, projected to attention_dim (queries and
// keys) and value_dim (values). Every size is required.
struct AttentionLayerOptions {
  int64_t query_dim = 0;
  int64_t key_dim = 0;
  int64_t value_dim = 0;
  int64_t attention_dim = 0;
  bool scaled = true;  // scores times 1/√attention_dim
};

// "Transformer Model: Attention without RNN": keys k_i = W_K x_i and values v_i = W_V x_i from the encoder
// inputs x_1..x_S, queries q_j = W_Q x'_j from the decoder inputs x'_1..x'_T; α_j = softmax(Kᵀ q_j), times
// 1/√d_k when scaled, and the context c_j = V α_j. W_Q [d_k, query_dim], W_K [d_k, key_dim], W_V [d_v, key_dim],
// no bias, Xavier-uniform.
class Attention : public Module {
 public:
  explicit Attention(const AttentionLayerOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "Attention"; }
  // decoder_inputs (B, T, query_dim), encoder_inputs (B, S, key_dim); key_padding_mask bool (B, S), true =
  // padding; causal: query j sees keys i <= j. Output: the contexts c_j (B, T, value_dim); weights α (B, T, S).
  AttentionResult forward(const Tensor& decoder_inputs, const Tensor& encoder_inputs,
                          const Tensor& key_padding_mask = {}, bool causal = false, bool need_weights = false) const;
  const Tensor& w_q() const { return w_q_; }
  const Tensor& w_k() const { return w_k_; }
  const Tensor& w_v() const { return w_v_; }
  bool scaled() const { return scaled_; }

 private:
  int64_t query_dim_, key_dim_, attention_dim_;
  bool scaled_;
  Tensor w_q_, w_k_, w_v_;
};

// Attention's sizes when queries and keys are one sequence of width dim.
struct SelfAttentionOptions {
  int64_t dim = 0;
  int64_t value_dim = 0;
  int64_t attention_dim = 0;
  bool scaled = true;
};

// Attention of a sequence over itself: Attention(X, X), held as the child `attention` (so its parameters are
// attention.w_q, attention.w_k, attention.w_v).
class SelfAttention : public Module {
 public:
  explicit SelfAttention(const SelfAttentionOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "SelfAttention"; }
  // x (B, S, dim) -> output (B, S, value_dim), weights (B, S, S)
  AttentionResult forward(const Tensor& x, const Tensor& key_padding_mask = {}, bool causal = false,
                          bool need_weights = false) const;
  const Attention& attention() const { return *attention_; }

 private:
  std::shared_ptr<Attention> attention_;
};

// Keys and values of the steps decoded so far, per head: (B, H, S_so_far, Dh). Self-attention appends each new
// step's k/v and attends over all of them; cross-attention (static_kv) projects the memory on the first call
// and reuses it afterwards. Start with an empty cache (undefined tensors) for every new sequence.
struct KVCache {
  Tensor key{}, value{};  // (B, H, S, Dh)
  bool static_kv = false;
  // Without gradients (decoding), self-attention writes new steps in place into these buffers, (B, H, capacity,
  // Dh) with room to grow, and key and value are views of their first S steps: a step then copies its own keys
  // instead of the whole cache. Replacing key or value (say, reordering beams) simply starts a new buffer.
  Tensor key_buffer{}, value_buffer{};
};

// The arguments of one MultiheadAttention::forward call, as nn.MultiheadAttention.forward's keywords.
struct MultiheadAttentionForwardOptions {
  // As nn.MultiheadAttention: bool with true = NOT allowed, or float added to the scores (-inf masks out);
  // shaped (T, S) or (B|1, H|1, T, S). The bool convention is the opposite of the sdpa op's, and is flipped here.
  Tensor attn_mask{};
  Tensor key_padding_mask{};  // bool (B, S), true = padding; with a self-attention cache S counts every step so far
  bool causal = false;        // with a cache, aligned to the end: new query i sees every cached key and j <= i
  bool need_weights = false;
  bool average_attn_weights = true;  // weights (B, T, S) averaged over heads, else (B, H, T, S)
  KVCache* cache = nullptr;
};

// nn.MultiheadAttention's constructor arguments; embed_dim and num_heads are required.
struct MultiheadAttentionOptions {
  int64_t embed_dim = 0;
  int64_t num_heads = 0;
  double dropout = 0.0;  // on the attention weights, in training
  bool bias = true;
};

// torch.nn.MultiheadAttention (batch_first): in_proj_weight [3E, E] (Xavier-uniform), in_proj_bias [3E]
// (zeros), out_proj.weight [E, E] (as Linear), out_proj.bias [E] (zeros); heads of Dh = E / H, scores scaled by
// 1/√Dh, dropout on the attention weights in training only.
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, Generator& gen = current_generator());
  explicit MultiheadAttention(const MultiheadAttentionOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "MultiheadAttention"; }
  // query (B, T, E), key and value (B, S, E) -> output (B, T, E); weights (B, T, S) or (B, H, T, S) when asked
  // for, before dropout. When query, key and value are one tensor the three projections are one GEMM; when key
  // is value, theirs are one.
  AttentionResult forward(const Tensor& query, const Tensor& key, const Tensor& value,
                          const MultiheadAttentionForwardOptions& options = {}) const;
  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }
  double dropout() const { return dropout_; }
  const Tensor& in_proj_weight() const { return in_proj_weight_; }
  const Tensor& in_proj_bias() const { return in_proj_bias_; }
  const Linear& out_proj() const { return *out_proj_; }

 private:
  AttentionResult attend(const Tensor& query, const Tensor& key, const Tensor& value,
                         const MultiheadAttentionForwardOptions& options) const;
  // (B, L, E) -> (B, H, L, Dh) as a view.
  Tensor split_heads(const Tensor& x) const;
  // Rows [start, start + count·E) of the input projection: (count·E, E) and (count·E) views.
  Tensor weight_rows(int64_t start, int64_t count) const;
  Tensor bias_rows(int64_t start, int64_t count) const;

  int64_t embed_dim_, num_heads_;
  double dropout_;
  Tensor in_proj_weight_, in_proj_bias_;
  std::shared_ptr<Linear> out_proj_;
};

}  // namespace gradformer::nn

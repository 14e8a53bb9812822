#include "nn/attention.h"

#include "nn/init.h"
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gradformer::nn {
namespace {

// A self-attention cache's run of steps `cached` (B, H, S, Dh, or undefined) followed by `fresh` (B, H, T, Dh).
// With gradients, concat records the graph. Without, the fresh steps are written in place after the cached ones in
// `buffer`, which `cached` is then a view of; a new buffer (twice the steps, so growing costs O(1) per step) is
// started when there is none, it is full, or `cached` is no longer its view.
Tensor appended(const Tensor& cached, const Tensor& fresh, Tensor& buffer) {
  if (fresh.requires_grad() || (cached.defined() && cached.requires_grad()))
    return cached.defined() ? concat({cached, fresh}, 2) : fresh;
  const int64_t past = cached.defined() ? cached.size(2) : 0, steps = past + fresh.size(2);
  const bool fits = buffer.defined() && cached.defined() && cached.raw_data() == buffer.raw_data() &&
                    buffer.dtype() == fresh.dtype() && buffer.size(2) >= steps;
  if (!fits) {
    Shape shape = fresh.shape();
    shape[2] = std::max<int64_t>(2 * steps, 16);
    buffer = empty(shape, fresh.dtype());
    if (past > 0) narrow(buffer, 2, 0, past).copy_(cached);
  }
  narrow(buffer, 2, past, fresh.size(2)).copy_(fresh);
  return narrow(buffer, 2, 0, steps);
}

}  // namespace

Attention::Attention(const AttentionLayerOptions& options, Generator& gen)
    : query_dim_(options.query_dim),
      key_dim_(options.key_dim),
      attention_dim_(options.attention_dim),
      scaled_(options.scaled) {
  if (options.query_dim <= 0 || options.key_dim <= 0 || options.value_dim <= 0 || options.attention_dim <= 0)
    fail<ValueError>("Attention", "query_dim {}, key_dim {}, value_dim {} and attention_dim {} must be positive",
                     options.query_dim, options.key_dim, options.value_dim, options.attention_dim);
  w_q_ = register_parameter("w_q", init::xavier_uniform_(empty({attention_dim_, query_dim_}), 1.0, gen));
  w_k_ = register_parameter("w_k", init::xavier_uniform_(empty({attention_dim_, key_dim_}), 1.0, gen));
  w_v_ = register_parameter("w_v", init::xavier_uniform_(empty({options.value_dim, key_dim_}), 1.0, gen));
}

AttentionResult Attention::forward(const Tensor& decoder_inputs, const Tensor& encoder_inputs,
                                   const Tensor& key_padding_mask, bool causal, bool need_weights) const {
  if (decoder_inputs.dim() != 3 || decoder_inputs.size(2) != query_dim_)
    fail<ShapeError>("Attention", "decoder inputs {}: expected (B, T, {}) (query_dim)",
                     shape_str(decoder_inputs.shape()), query_dim_);
  if (encoder_inputs.dim() != 3 || encoder_inputs.size(2) != key_dim_)
    fail<ShapeError>("Attention", "encoder inputs {}: expected (B, S, {}) (key_dim)", shape_str(encoder_inputs.shape()),
                     key_dim_);
  if (decoder_inputs.size(0) != encoder_inputs.size(0))
    fail<ShapeError>("Attention", "decoder inputs {} and encoder inputs {}: batch sizes {} and {} differ",
                     shape_str(decoder_inputs.shape()), shape_str(encoder_inputs.shape()), decoder_inputs.size(0),
                     encoder_inputs.size(0));
  // Row j of q·kᵀ holds Kᵀ q_j, so the op's row softmax is α_j and its product with v is c_j = V α_j.
  const Tensor q = unsqueeze(linear(decoder_inputs, w_q_), 1);  // (B, 1, T, d_k)
  const Tensor k = unsqueeze(linear(encoder_inputs, w_k_), 1);  // (B, 1, S, d_k)
  const Tensor v = unsqueeze(linear(encoder_inputs, w_v_), 1);  // (B, 1, S, d_v)
  AttentionOptions options;
  options.key_padding_mask = key_padding_mask;
  options.causal = causal;
  options.need_weights = need_weights;
  options.scale = scaled_ ? 1.0 / std::sqrt(static_cast<double>(attention_dim_)) : 1.0;
  const AttentionResult result = scaled_dot_product_attention(q, k, v, options);
  AttentionResult out;
  out.output = squeeze(result.output, 1);  // (B, T, d_v)
  if (need_weights) out.weights = squeeze(result.weights, 1);  // (B, T, S)
  return out;
}

SelfAttention::SelfAttention(const SelfAttentionOptions& options, Generator& gen)
    : attention_(register_module("attention", std::make_shared<Attention>(
                                                  AttentionLayerOptions{.query_dim = options.dim,
                                                                        .key_dim = options.dim,
                                                                        .value_dim = options.value_dim,
                                                                        .attention_dim = options.attention_dim,
                                                                        .scaled = options.scaled},
                                                  gen))) {}

AttentionResult SelfAttention::forward(const Tensor& x, const Tensor& key_padding_mask, bool causal,
                                       bool need_weights) const {
  return attention_->forward(x, x, key_padding_mask, causal, need_weights);
}

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, Generator& gen)
    : MultiheadAttention(MultiheadAttentionOptions{.embed_dim = embed_dim, .num_heads = num_heads}, gen) {}

MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& options, Generator& gen)
    : embed_dim_(options.embed_dim), num_heads_(options.num_heads), dropout_(options.dropout) {
  const int64_t embed_dim = options.embed_dim, num_heads = options.num_heads;
  const double dropout = options.dropout;
  const bool bias = options.bias;
  if (embed_dim <= 0 || num_heads <= 0)
    fail<ValueError>("MultiheadAttention", "embed_dim {} and num_heads {} must be positive", embed_dim, num_heads);
  if (embed_dim % num_heads != 0)
    fail<ValueError>("MultiheadAttention", "embed_dim {} is not divisible by num_heads {}", embed_dim, num_heads);
  if (!(dropout >= 0.0 && dropout < 1.0))
    fail<ValueError>("MultiheadAttention", "dropout {} is outside [0, 1)", dropout);
  // PyTorch's order of draws: out_proj is built (Linear's init) before _reset_parameters fills in_proj_weight.
  in_proj_weight_ = register_parameter("in_proj_weight", empty({3 * embed_dim, embed_dim}));
  if (bias) in_proj_bias_ = register_parameter("in_proj_bias", zeros({3 * embed_dim}));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(embed_dim, embed_dim, bias, gen));
  init::xavier_uniform_(in_proj_weight_, 1.0, gen);
  if (bias) init::zeros_(out_proj_->bias());
}

Tensor MultiheadAttention::weight_rows(int64_t start, int64_t count) const {
  return slice(in_proj_weight_, 0, start * embed_dim_, (start + count) * embed_dim_);
}

Tensor MultiheadAttention::bias_rows(int64_t start, int64_t count) const {
  return in_proj_bias_.defined() ? slice(in_proj_bias_, 0, start * embed_dim_, (start + count) * embed_dim_) : Tensor{};
}

Tensor MultiheadAttention::split_heads(const Tensor& x) const {
  // (B, L, E) -> (B, L, H, Dh) -> (B, H, L, Dh): both views, the op reads the strides.
  return transpose(reshape(x, {x.size(0), x.size(1), num_heads_, embed_dim_ / num_heads_}), 1, 2);
}

AttentionResult MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                            const MultiheadAttentionForwardOptions& options) const {
  return with_forward_hooks([&](const Tensor& q, const Tensor& k, const Tensor& v) { return attend(q, k, v, options); },
                            query, key, value);
}

AttentionResult MultiheadAttention::attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                           const MultiheadAttentionForwardOptions& options) const {
  constexpr std::string_view kLayer = "MultiheadAttention";
  if (query.dim() != 3 || key.dim() != 3 || value.dim() != 3)
    fail<ShapeError>(kLayer, "query {}, key {}, value {}: expected (B, T, E), (B, S, E), (B, S, E)",
                     shape_str(query.shape()), shape_str(key.shape()), shape_str(value.shape()));
  if (query.size(2) != key.size(2))
    fail<ShapeError>(kLayer, "query {} and key {}: embedding dims {} and {} differ", shape_str(query.shape()),
                     shape_str(key.shape()), query.size(2), key.size(2));
  if (query.size(2) != embed_dim_)
    fail<ShapeError>(kLayer, "query {}: embedding dim {}, but embed_dim is {}", shape_str(query.shape()),
                     query.size(2), embed_dim_);
  if (key.shape() != value.shape())
    fail<ShapeError>(kLayer, "key {} and value {}: shapes differ", shape_str(key.shape()), shape_str(value.shape()));
  if (query.size(0) != key.size(0))
    fail<ShapeError>(kLayer, "query {} and key {}: batch sizes {} and {} differ", shape_str(query.shape()),
                     shape_str(key.shape()), query.size(0), key.size(0));

  KVCache* cache = options.cache;
  const bool reuse_static = cache && cache->static_kv && cache->key.defined();
  Tensor q, k, v;  // (B, T, E), (B, S, E), (B, S, E)
  if (query.is_same(key) && key.is_same(value) && !reuse_static) {
    const auto qkv = chunk(linear(query, in_proj_weight_, in_proj_bias_), 3, -1);  // 3 × (B, T, E) views
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    q = linear(query, weight_rows(0, 1), bias_rows(0, 1));
    if (!reuse_static && key.is_same(value)) {
      const auto kv = chunk(linear(key, weight_rows(1, 2), bias_rows(1, 2)), 2, -1);  // 2 × (B, S, E) views
      k = kv[0], v = kv[1];
    } else if (!reuse_static) {
      k = linear(key, weight_rows(1, 1), bias_rows(1, 1));
      v = linear(value, weight_rows(2, 1), bias_rows(2, 1));
    }
  }
  const Tensor qh = split_heads(q);  // (B, H, T, Dh)
  Tensor kh, vh;                     // (B, H, S, Dh)
  int64_t past = 0;                  // cached steps before this call, for the causal alignment
  if (reuse_static) {
    kh = cache->key, vh = cache->value;
  } else {
    kh = split_heads(k), vh = split_heads(v);
    if (cache && !cache->static_kv && cache->key.defined()) {
      if (cache->key.size(0) != kh.size(0) || cache->key.size(1) != kh.size(1) || cache->key.size(3) != kh.size(3))
        fail<ShapeError>(kLayer, "cache keys {} and new keys {}: batch, head or head sizes differ",
                         shape_str(cache->key.shape()), shape_str(kh.shape()));
      past = cache->key.size(2);
    }
    if (cache) {
      cache->key = kh = appended(cache->key, kh, cache->key_buffer);
      cache->value = vh = appended(cache->value, vh, cache->value_buffer);
    }
  }

  AttentionOptions attention;
  attention.key_padding_mask = options.key_padding_mask;
  attention.need_weights = options.need_weights;
  if (is_training()) attention.dropout = dropout_;  // drawn from the thread's current generator
  Tensor mask = options.attn_mask;
  if (mask.defined() && mask.dtype() == DType::boolean) mask = logical_not(mask);  // to the op's true = allowed
  const int64_t steps = qh.size(2);
  if (options.causal && past == 0) {
    attention.causal = true;
  } else if (options.causal && steps > 1) {
    // New query i sits at position past + i: it sees every key j <= past + i (the op's causal is top-left).
    // A single new step sees every key, so it needs no mask at all.
    const int64_t keys = kh.size(2);
    const Tensor position = reshape(arange(static_cast<double>(past), static_cast<double>(past + steps), 1.0,
                                           DType::f64), {steps, 1});            // (T, 1)
    const Tensor allowed = le(arange(0.0, static_cast<double>(keys), 1.0, DType::f64), position);  // (T, S)
    if (!mask.defined())
      mask = allowed;
    else if (mask.dtype() == DType::boolean)
      mask = logical_and(mask, allowed);
    else
      mask = masked_fill(mask, logical_not(allowed), -std::numeric_limits<double>::infinity());
  }
  attention.attn_mask = mask;
  const AttentionResult result = scaled_dot_product_attention(qh, kh, vh, attention);  // (B, H, T, Dh)

  AttentionResult out;
  // The one copy: heads back side by side, (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, E).
  out.output =
      out_proj_->forward(reshape(transpose(result.output, 1, 2).contiguous(), {query.size(0), steps, embed_dim_}));
  if (options.need_weights)
    out.weights = options.average_attn_weights ? mean(result.weights, {1}) : result.weights;  // (B, T, S) or (B, H, T, S)
  return out;
}

}  // namespace gradformer::nn

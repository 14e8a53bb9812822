// Scaled dot-product attention as one fused op with a hand-derived backward (llm.c's attention_forward /
// attention_backward pair): batched GEMMs over the heads, masking, a row softmax and dropout in one pass, and a
// backward that needs only the attention probabilities P, never the scores. Not a module: the projections and
// the head split live in nn/ (MultiheadAttention), which calls this.
#pragma once

#include "autograd/generator.h"
#include "autograd/tensor.h"

#include <optional>

namespace gradformer {

// Shape letters: B batch, H heads, T queries, S keys/values, D query/key size, Dv value size.
//
// Masks combine: a key position takes part in query i's softmax only if every given mask lets it.
// - attn_mask: bool or float (the dtype of q), shaped [T, S] or [B|1, H|1, T, S] (size-1 dimensions broadcast).
//   A bool mask follows torch.nn.functional.scaled_dot_product_attention: true = the position TAKES PART,
//   false = masked out. (Careful: nn.MultiheadAttention's bool attn_mask means the opposite.) A float mask is
//   added to the scores: 0 keeps, -inf masks out, anything else biases.
// - key_padding_mask: bool [B, S] as in nn.MultiheadAttention: true = padding, ignored by every query.
// - causal: query i sees keys j <= i (PyTorch's is_causal, aligned top-left, also when T != S). A single new
//   query over a key/value cache wants no causal mask: it may see every cached key.
// A query whose keys are all masked out gets an all-zero weight row, so a zero output row and zero gradients,
// never NaN (PyTorch gives NaN there).
struct AttentionOptions {
  Tensor attn_mask{};
  Tensor key_padding_mask{};
  bool causal = false;
  // Probability of zeroing an attention weight (the kept ones are scaled by 1 / (1 - dropout)); 0 in eval.
  // The mask is the dropout op's (ops/dropout_mask.h) over the weights in row-major [B, H, T, S] order, drawn
  // from `generator` (current_generator() when null; one word per call), so a seeded generator gives the same
  // mask; backward recomputes it from that word instead of saving it.
  double dropout = 0.0;
  Generator* generator = nullptr;
  std::optional<double> scale{};  // multiplies q·kᵀ; 1 / sqrt(D) when not given
  bool need_weights = false;
};

// What every attention returns: this op, and nn's Attention, SelfAttention, MultiheadAttention and
// AdditiveAttention, each of which states its shapes. This op's:
struct AttentionResult {
  Tensor output;   // [B, H, T, Dv]
  // [B, H, T, S] when need_weights, else undefined: the softmax probabilities BEFORE dropout, so each row sums
  // to 1 (0 for a fully masked row) even in training. (nn.MultiheadAttention returns them after dropout.) No
  // gradient flows through them, and they share storage with what backward reads: treat them as read-only.
  Tensor weights;
};

// softmax(q·kᵀ·scale + masks) · v, with dropout on the weights.
// q [B, H, T, D], k [B, H, S, D], v [B, H, S, Dv], all of one floating dtype; any strides (a transposed view
// of a [B, T, H, D] projection reaches the GEMMs as strides, not as a copy).
AttentionResult scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const AttentionOptions& options = {});

}  // namespace gradformer

// Normalisation ops: softmax and log_softmax over any axis, layer norm over the last dimensions, dropout.
// Each has a fused forward kernel and a closed-form backward kernel (not the graph of its pieces).
// Losses built on log_softmax live in ops/loss.h; the nn layers that own weights live in nn/.
#pragma once

#include "autograd/generator.h"
#include "autograd/tensor.h"

namespace gradformer {

// exp(x - max) / sum(exp(x - max)) along `axis`; stable for any finite input. A slice that is entirely -inf
// (a fully masked attention row) gives zeros rather than NaN; a +inf entry gives NaN, as in PyTorch.
Tensor softmax(const Tensor& x, int64_t axis = -1);
// x - max - log(sum(exp(x - max))) along `axis`. An entirely -inf slice stays -inf (never NaN).
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

// PyTorch's layer_norm: over the trailing dimensions named by normalized_shape, with the biased variance:
// y = (x - mean) / sqrt(var + eps) * weight + bias. weight and bias are optional (undefined Tensors) and, when
// given, have shape normalized_shape. A constant slice gives y = bias (finite, for eps > 0).
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);

// Zeroes each element with probability p and scales the others by 1 / (1 - p); the mask (ops/dropout_mask.h)
// comes from one 64-bit draw from `gen`, the thread's current generator unless one is given, whatever x's size,
// and p is realised to within 1/65536. Backward recomputes the mask from that draw instead of keeping it.
// In eval mode (training == false) or with p == 0 it returns x itself and draws nothing.
// p == 1 drops everything (zeros, zero gradient), as PyTorch; p outside [0, 1] is a ValueError.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = current_generator());

}  // namespace gradformer

// Losses: cross entropy (fused with log_softmax), negative log likelihood and mean squared error, each with
// its closed-form backward. Class-weighted losses and probability targets are not provided.
#pragma once

#include "autograd/tensor.h"

namespace gradformer {

enum class Reduction { none, mean, sum };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;   // rows whose target equals this contribute neither loss nor gradient
  double label_smoothing = 0.0;  // ε in [0, 1]
  Reduction reduction = Reduction::mean;
};

// PyTorch's cross_entropy for logits (N, C) and class indices (N) of dtype i64:
//   loss_i = (1 − ε)·(−log p_{i,t_i}) + ε·(−Σ_c log p_{i,c}) / C,  p = softmax(logits_i),
// 0 for ignored rows; mean divides by the number of rows not ignored. Logits of shape (..., C) are flattened by
// the caller (reshape to (-1, C)). One stable pass per row computes logsumexp and the loss.
// Unlike PyTorch (NaN), a mean over no counted row is 0, with zero gradients.
// A target outside [0, C) that is not ignore_index is an IndexError naming it and C.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options = {});

// −log_probs[i, t_i] for log_probs (N, C) and targets (N); ignore_index and the empty mean as cross_entropy.
Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, int64_t ignore_index = -100,
                Reduction reduction = Reduction::mean);

// (a − b)² reduced; a and b must have the same shape (no broadcasting, which in a loss is almost always a bug).
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean);

}  // namespace gradformer

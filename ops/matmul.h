// Matrix products with PyTorch's semantics.
#pragma once

#include "autograd/tensor.h"

namespace gradformer {

// 1-D · 1-D is a dot product; a 1-D first (second) argument is a row (column) that is dropped from the result;
// 2-D and higher multiply the last two dimensions and broadcast the leading ones:
// [..., M, K] x [..., K, N] -> [..., M, N].
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace gradformer

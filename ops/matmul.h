// Matrix products with PyTorch's semantics: matmul (broadcasting), bmm (strict batches) and linear (a layer's
// x·Wᵀ + b as one GEMM with the bias fused). Attention's fused products live in ops/attention.h.
#pragma once

#include "autograd/tensor.h"

namespace gradformer {

// 1-D · 1-D is a dot product; a 1-D first (second) argument is a row (column) that is dropped from the result;
// 2-D and higher multiply the last two dimensions and broadcast the leading ones:
// [..., M, K] x [..., K, N] -> [..., M, N].
Tensor matmul(const Tensor& a, const Tensor& b);

// [B, M, K] x [B, K, N] -> [B, M, N]: exactly 3-D operands with equal batch sizes, no broadcasting.
Tensor bmm(const Tensor& a, const Tensor& b);

// x [..., in] · weight [out, in]ᵀ + bias [out] -> [..., out], as torch.nn.functional.linear. bias may be an
// undefined Tensor (no bias). The weight reaches the GEMM transposed through its strides, never copied.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace gradformer

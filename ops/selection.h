// Selection ops: choosing elements by a bool mask (where, masked_fill) or by i64 indices (index_select,
// gather, embedding), each with its backward. Masks must be bool and indices i64 (a DTypeError otherwise);
// an index out of range throws an IndexError naming the index and the size. Comparisons that make the masks
// are in elementwise.h.
#pragma once

#include "autograd/tensor.h"

namespace gradformer {

// mask ? a : b over the broadcast shape of all three; the gradient goes to a where mask holds, to b elsewhere.
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);
// x with `value` where mask (broadcastable to x) holds; filled positions pass no gradient.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// The slices index[j] of x along `axis`: out.size(axis) = index.numel(). index is 1-D i64; repeated indices
// accumulate their gradients.
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);
// PyTorch's gather: out[i][j][k] = x[i][index[i][j][k]][k] for axis 1. index has x's rank and, along every
// other axis, at most x's size; out has index's shape.
Tensor gather(const Tensor& x, int64_t axis, const Tensor& index);

// Rows of weight (V, D) looked up by ids (i64, any shape): out is ids.shape + [D]. The row padding_idx
// (-1 for none) is read as any other but receives no gradient, as torch.nn.functional.embedding.
Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx = -1);

}  // namespace gradformer

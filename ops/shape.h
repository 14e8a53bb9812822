// Shape ops: views on the same storage wherever the strides allow it, with their backward. Only concat and
// stack (and reshape of a tensor whose strides admit no view) copy. Semantics follow PyTorch; negative axes
// count from the end. Not here: gathers and index selection (selection.h), reductions (reduce.h).
#pragma once

#include "autograd/tensor.h"

#include <limits>
#include <vector>

namespace gradformer {

// One -1 in the shape is inferred. reshape copies when the strides do not allow a view; view throws instead.
Tensor reshape(const Tensor& x, Shape shape);
Tensor view(const Tensor& x, Shape shape);
Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1);

// Output dimension d is input dimension dims[d]; dims must be a permutation of the axes.
Tensor permute(const Tensor& x, std::vector<int64_t> dims);
// Without an axis drops every size-1 dimension; with one drops it if it has size 1 and is a no-op otherwise.
Tensor squeeze(const Tensor& x);
Tensor squeeze(const Tensor& x, int64_t axis);
// Inserts a size-1 dimension at `axis`, which ranges over -(rank + 1)..rank.
Tensor unsqueeze(const Tensor& x, int64_t axis);
// Repeats size-1 dimensions (and new leading ones) by stride 0; -1 keeps an existing dimension's size.
// The result aliases: writing into it writes every repeat.
Tensor expand(const Tensor& x, Shape shape);

// x[start:end:step] along axis, as Python: negative start/end count from the end, both are clamped to
// [0, size], end <= start gives an empty dimension; step must be positive.
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end = std::numeric_limits<int64_t>::max(),
             int64_t step = 1);
// Elements start..start+length-1 along axis (start may be negative); out of range throws instead of clamping.
Tensor narrow(const Tensor& x, int64_t axis, int64_t start, int64_t length);

// Joins tensors of one dtype and rank whose shapes differ only along `axis`; the result is a new tensor.
Tensor concat(const std::vector<Tensor>& tensors, int64_t axis = 0);
inline Tensor cat(const std::vector<Tensor>& tensors, int64_t axis = 0) { return concat(tensors, axis); }
// Joins tensors of one shape along a new dimension at `axis` (-(rank + 1)..rank).
Tensor stack(const std::vector<Tensor>& tensors, int64_t axis = 0);
// Views of consecutive pieces of split_size along axis (the last may be smaller), each with its own node.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t axis = 0);
// At most `chunks` views of ceil(size / chunks) along axis, as torch.chunk (fewer when the size runs out).
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t axis = 0);

}  // namespace gradformer

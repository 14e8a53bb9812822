// Reductions over any set of axes (negative axes count from the end; an empty list means all axes), with
// PyTorch's semantics. Not here: elementwise maximum/minimum of two tensors (elementwise.h), softmax.
#pragma once

#include "autograd/tensor.h"

#include <concepts>
#include <vector>

namespace gradformer {

Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
// x summed over the dimensions along which `shape` broadcasts to x's shape (PyTorch's Tensor.sum_to_size): the
// gradient of broadcasting.
Tensor sum_to_size(const Tensor& x, const Shape& shape);

// The largest (smallest) element over axes; NaN wins if present. The gradient goes to ONE element per output:
// the first extremum in row-major order among ties (PyTorch's max(dim) does the same; its full max() splits
// it evenly among ties instead). An empty reduction throws a ShapeError.
Tensor max(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor min(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
// Variance sum((x - mean)²) / (N - correction): correction 1 is unbiased (the default, as PyTorch), 0 the
// population variance. N - correction <= 0 gives inf or NaN, as in PyTorch.
Tensor var(const Tensor& x, std::vector<int64_t> axes = {}, double correction = 1, bool keepdim = false);
// A bool in the third place would silently become the correction: pass both, var(x, axes, 1, true).
template <class Bool>
  requires std::same_as<Bool, bool>
Tensor var(const Tensor& x, std::vector<int64_t> axes, Bool keepdim) = delete;
// log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m the maximum: finite for large |x|; a slice of
// all -inf gives -inf (its gradient is NaN, as in PyTorch); an empty slice gives -inf.
Tensor logsumexp(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
// The index (i64, no gradient) of the first largest (smallest) element along axis; NaN wins if present.
// Without an axis, the index into the flattened tensor.
Tensor argmax(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor argmax(const Tensor& x);
Tensor argmin(const Tensor& x);

// Normalises and sorts axes (empty = all), rejecting duplicates and out-of-range axes with op's name.
std::vector<int64_t> reduction_axes(const Tensor& x, std::vector<int64_t> axes, std::string_view op);
// The shape after reducing `axes` (normalised) with or without keepdim.
Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& axes, bool keepdim);

}  // namespace gradformer

// Reductions, forward and backward side by side. The backward of a reduction broadcasts the output gradient
// back over the reduced axes: it is viewed with its keepdim shape and expanded by stride 0, not copied.
#include "ops/reduce.h"

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/kernels.h"

#include <algorithm>

namespace gradformer {
namespace {

// dout (reduced shape) seen as the input's shape: keepdim view, then stride 0 along the reduced axes.
Tensor broadcast_back(const Tensor& dout, const Shape& input_shape, const std::vector<int64_t>& axes) {
  const Shape keep = reduced_shape(input_shape, axes, true);
  const Tensor dense = dout.contiguous();
  const Tensor kept = dense.as_strided(keep, contiguous_strides(keep), dense.offset());
  return kept.as_strided(input_shape, kernels::broadcast_strides(kept, input_shape), kept.offset());
}

}  // namespace

std::vector<int64_t> reduction_axes(const Tensor& x, std::vector<int64_t> axes, std::string_view op) {
  if (axes.empty()) {
    for (int64_t d = 0; d < x.dim(); ++d) axes.push_back(d);
    return axes;
  }
  for (int64_t& axis : axes) axis = normalize_axis(axis, x.dim(), op);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    fail<IndexError>(op, "axis {} appears twice in the axes for shape {}", *std::adjacent_find(axes.begin(), axes.end()),
                     shape_str(x.shape()));
  if (x.dim() == 0) axes.clear();  // axis 0 / -1 of a scalar is the scalar itself
  return axes;
}

Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& axes, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    const bool reduced = std::binary_search(axes.begin(), axes.end(), static_cast<int64_t>(d));
    if (!reduced)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  axes = reduction_axes(x, std::move(axes), "sum");
  const Tensor summed = kernels::sum_keepdim(x, axes);
  const Shape shape = reduced_shape(x.shape(), axes, keepdim);
  Tensor out = summed.as_strided(shape, contiguous_strides(shape), 0);
  return record(out, "sum", {x}, [input_shape = x.shape(), axes](const Tensor& dout, InputGrads& g) {
    g[0] = broadcast_back(dout, input_shape, axes);
  });
}

Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  axes = reduction_axes(x, std::move(axes), "mean");
  int64_t count = 1;
  for (int64_t axis : axes) count *= x.shape()[static_cast<size_t>(axis)];
  if (count == 0) fail<ShapeError>("mean", "mean over an empty set of elements (shape {})", shape_str(x.shape()));
  Tensor total = sum(x, axes, keepdim);
  return mul(total, 1.0 / static_cast<double>(count));
}

}  // namespace gradformer

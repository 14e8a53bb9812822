// Shape ops. A view shares storage and only rewrites shape, strides and offset; its backward applies the
// inverse view to the output gradient.
#include "ops/shape.h"

#include "autograd/engine.h"

#include <optional>

namespace gradformer {
namespace {

Shape infer_shape(const Tensor& x, Shape shape, std::string_view op) {
  int64_t known = 1, inferred = -1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1) {
      if (inferred >= 0) fail<ShapeError>(op, "only one dimension can be -1, got {}", shape_str(shape));
      inferred = static_cast<int64_t>(d);
    } else if (shape[d] < 0) {
      fail<ShapeError>(op, "invalid size {} in shape {}", shape[d], shape_str(shape));
    } else {
      known *= shape[d];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || x.numel() % known != 0)
      fail<ShapeError>(op, "shape {} is invalid for input of shape {} ({} elements)", shape_str(shape),
                       shape_str(x.shape()), x.numel());
    shape[static_cast<size_t>(inferred)] = x.numel() / known;
  }
  if (numel_of(shape) != x.numel())
    fail<ShapeError>(op, "shape {} is invalid for input of shape {} ({} elements)", shape_str(shape),
                     shape_str(x.shape()), x.numel());
  return shape;
}

// Strides that let `shape` view x's elements in row-major order, if any exist (PyTorch's computeStride):
// x's dimensions split into chunks that are contiguous among themselves; each chunk must map onto whole
// dimensions of the new shape.
std::optional<Shape> view_strides(const Tensor& x, const Shape& shape) {
  Shape strides(shape.size());
  if (x.numel() == 0 || x.dim() == 0) return contiguous_strides(shape);
  const Shape& old_shape = x.shape();
  const Shape& old_strides = x.strides();
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = x.dim() - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_shape[static_cast<size_t>(tensor_d)];
    const bool chunk_ends =
        tensor_d == 0 || (old_shape[static_cast<size_t>(tensor_d - 1)] != 1 &&
                          old_strides[static_cast<size_t>(tensor_d - 1)] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || shape[static_cast<size_t>(view_d)] == 1)) {
      strides[static_cast<size_t>(view_d)] = view_numel * chunk_base_stride;
      view_numel *= shape[static_cast<size_t>(view_d)];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (tensor_d > 0) {
      chunk_base_stride = old_strides[static_cast<size_t>(tensor_d - 1)];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return strides;
}

Tensor record_view(const Tensor& x, Tensor out, std::string_view op) {
  return record(out, op, {x}, [input_shape = x.shape()](const Tensor& dout, InputGrads& g) {
    g[0] = reshape(dout, input_shape);
  });
}

}  // namespace

Tensor view(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), "view");
  const std::optional<Shape> strides = view_strides(x, shape);
  if (!strides)
    fail<ShapeError>("view", "a tensor of shape {} and strides {} cannot be viewed as {}; use reshape",
                     shape_str(x.shape()), shape_str(x.strides()), shape_str(shape));
  return record_view(x, x.as_strided(shape, *strides, x.offset()), "view");
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), "reshape");
  if (const std::optional<Shape> strides = view_strides(x, shape))
    return record_view(x, x.as_strided(shape, *strides, x.offset()), "reshape");
  const Tensor dense = x.contiguous();
  return record_view(dense, dense.as_strided(shape, contiguous_strides(shape), dense.offset()), "reshape");
}

Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1) {
  if (x.dim() == 0) return x;  // a scalar has nothing to swap (axes 0 and -1 both name it)
  const auto a = static_cast<size_t>(normalize_axis(axis0, x.dim(), "transpose"));
  const auto b = static_cast<size_t>(normalize_axis(axis1, x.dim(), "transpose"));
  Shape shape = x.shape(), strides = x.strides();
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return record(x.as_strided(shape, strides, x.offset()), "transpose", {x},
                [axis0, axis1](const Tensor& dout, InputGrads& g) { g[0] = transpose(dout, axis0, axis1); });
}

}  // namespace gradformer

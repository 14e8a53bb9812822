// Shape ops. A view shares storage and only rewrites shape, strides and offset; its backward applies the
// inverse view to the output gradient. concat and stack copy into a new tensor, and their backward hands each
// input a view of the output gradient.
#include "ops/shape.h"

#include "autograd/engine.h"
#include "ops/kernels.h"

#include <algorithm>
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

Tensor record_view(const Tensor& x, Tensor out, Op op) {
  return record(out, op, {x}, [input_shape = x.shape()](const Tensor& dout, InputGrads& g) {
    g[0] = reshape(dout, input_shape);
  });
}

// x's elements start, start + step, ... (length of them) along axis, as a plain view without a node.
Tensor strided_slice(const Tensor& x, size_t axis, int64_t start, int64_t length, int64_t step) {
  Shape shape = x.shape(), strides = x.strides();
  const int64_t offset = x.offset() + start * strides[axis];
  shape[axis] = length;
  strides[axis] *= step;
  return x.as_strided(std::move(shape), std::move(strides), offset);
}

// x without its size-1 dimension at axis, as a plain view.
Tensor drop_axis(const Tensor& x, size_t axis) {
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + static_cast<std::ptrdiff_t>(axis));
  strides.erase(strides.begin() + static_cast<std::ptrdiff_t>(axis));
  return x.as_strided(std::move(shape), std::move(strides), x.offset());
}

// The differentiable slice behind slice, narrow, split and chunk: its backward writes dout into the matching
// slice of a tensor of the input's shape that is zero elsewhere. For a step of 1 only the parts before and after
// the slice are zero-filled (chunk's backward would otherwise write every element twice).
Tensor record_slice(const Tensor& x, size_t axis, int64_t start, int64_t length, int64_t step, Op op) {
  return record(strided_slice(x, axis, start, length, step), op, {x},
                [shape = x.shape(), dtype = x.dtype(), axis, start, length, step](const Tensor& dout, InputGrads& g) {
                  Tensor grad = step == 1 ? empty(shape, dtype) : zeros(shape, dtype);
                  if (step == 1) {
                    const int64_t end = start + length;
                    if (start > 0) strided_slice(grad, axis, 0, start, 1).fill_(0.0);
                    if (end < shape[axis]) strided_slice(grad, axis, end, shape[axis] - end, 1).fill_(0.0);
                  }
                  strided_slice(grad, axis, start, length, step).copy_(dout);
                  g[0] = grad;
                });
}

size_t sliced_axis(const Tensor& x, int64_t axis, std::string_view op) {
  if (x.dim() == 0) fail<IndexError>(op, "cannot slice a 0-dimensional tensor (shape [])");
  return static_cast<size_t>(normalize_axis(axis, x.dim(), op));
}

// Copies `parts` (same rank, equal except along axis) side by side along axis into a new tensor.
Tensor join(const std::vector<Tensor>& parts, size_t axis) {
  Shape shape = parts[0].shape();
  shape[axis] = 0;
  for (const Tensor& part : parts) shape[axis] += part.shape()[axis];
  Tensor out = empty(shape, parts[0].dtype());
  int64_t start = 0;
  for (const Tensor& part : parts) {
    strided_slice(out, axis, start, part.shape()[axis], 1).copy_(part);
    start += part.shape()[axis];
  }
  return out;
}

void check_joinable(const std::vector<Tensor>& tensors, std::string_view op) {
  if (tensors.empty()) fail<ValueError>(op, "expects at least one tensor, got none");
  for (size_t i = 1; i < tensors.size(); ++i)
    if (tensors[i].dtype() != tensors[0].dtype())
      fail<DTypeError>(op, "tensor {} is {} {} but tensor 0 is {} {}", i, dtype_name(tensors[i].dtype()),
                       shape_str(tensors[i].shape()), dtype_name(tensors[0].dtype()), shape_str(tensors[0].shape()));
}

}  // namespace

Tensor view(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), op_name(Op::view));
  const std::optional<Shape> strides = view_strides(x, shape);
  if (!strides)
    fail<ShapeError>(Op::view, "a tensor of shape {} and strides {} cannot be viewed as {}; use reshape",
                     shape_str(x.shape()), shape_str(x.strides()), shape_str(shape));
  return record_view(x, x.as_strided(shape, *strides, x.offset()), Op::view);
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), op_name(Op::reshape));
  if (const std::optional<Shape> strides = view_strides(x, shape))
    return record_view(x, x.as_strided(shape, *strides, x.offset()), Op::reshape);
  const Tensor dense = x.contiguous();
  return record_view(dense, dense.as_strided(shape, contiguous_strides(shape), dense.offset()), Op::reshape);
}

Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1) {
  if (x.dim() == 0) return x;  // a scalar has nothing to swap (axes 0 and -1 both name it)
  const auto a = static_cast<size_t>(normalize_axis(axis0, x.dim(), op_name(Op::transpose)));
  const auto b = static_cast<size_t>(normalize_axis(axis1, x.dim(), op_name(Op::transpose)));
  Shape shape = x.shape(), strides = x.strides();
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return record(x.as_strided(shape, strides, x.offset()), Op::transpose, {x},
                [axis0, axis1](const Tensor& dout, InputGrads& g) { g[0] = transpose(dout, axis0, axis1); });
}

Tensor permute(const Tensor& x, std::vector<int64_t> dims) {
  if (static_cast<int64_t>(dims.size()) != x.dim())
    fail<ShapeError>(Op::permute, "dims {} has {} entries for a tensor of shape {} (rank {})", shape_str(dims),
                     dims.size(), shape_str(x.shape()), x.dim());
  std::vector<bool> seen(dims.size(), false);
  Shape shape(dims.size()), strides(dims.size());
  std::vector<int64_t> inverse(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    const auto from = static_cast<size_t>(normalize_axis(dims[d], x.dim(), op_name(Op::permute)));
    if (seen[from])
      fail<IndexError>(Op::permute, "axis {} appears twice in dims {} for shape {}", from, shape_str(dims),
                       shape_str(x.shape()));
    seen[from] = true;
    shape[d] = x.shape()[from];
    strides[d] = x.strides()[from];
    inverse[from] = static_cast<int64_t>(d);
  }
  return record(x.as_strided(shape, strides, x.offset()), Op::permute, {x},
                [inverse](const Tensor& dout, InputGrads& g) { g[0] = permute(dout, inverse); });
}

Tensor squeeze(const Tensor& x) {
  Shape shape, strides;
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (x.shape()[d] == 1) continue;
    shape.push_back(x.shape()[d]);
    strides.push_back(x.strides()[d]);
  }
  return record_view(x, x.as_strided(shape, strides, x.offset()), Op::squeeze);
}

Tensor squeeze(const Tensor& x, int64_t axis) {
  const auto a = static_cast<size_t>(normalize_axis(axis, x.dim(), op_name(Op::squeeze)));
  if (x.dim() == 0 || x.shape()[a] != 1) return x;  // as PyTorch: squeezing a dimension that is not 1 does nothing
  return record_view(x, drop_axis(x, a), Op::squeeze);
}

Tensor unsqueeze(const Tensor& x, int64_t axis) {
  const auto a = static_cast<size_t>(normalize_axis(axis, x.dim() + 1, op_name(Op::unsqueeze)));
  Shape shape = x.shape(), strides = x.strides();
  // Any stride works for a size-1 dimension; this one keeps a contiguous tensor contiguous.
  const int64_t stride = a < shape.size() ? strides[a] * shape[a] : 1;
  shape.insert(shape.begin() + static_cast<std::ptrdiff_t>(a), 1);
  strides.insert(strides.begin() + static_cast<std::ptrdiff_t>(a), stride);
  return record(x.as_strided(shape, strides, x.offset()), Op::unsqueeze, {x},
                [axis = static_cast<int64_t>(a)](const Tensor& dout, InputGrads& g) { g[0] = squeeze(dout, axis); });
}

Tensor expand(const Tensor& x, Shape shape) {
  const Shape requested = shape;
  if (static_cast<int64_t>(shape.size()) < x.dim())
    fail<ShapeError>(Op::expand, "cannot expand {} to {} (the target has fewer dimensions)", shape_str(x.shape()),
                     shape_str(requested));
  const size_t lead = shape.size() - x.shape().size();
  Shape strides(shape.size(), 0);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d < lead) {
      if (shape[d] < 0)
        fail<ShapeError>(Op::expand, "cannot expand {} to {} (new leading dimension {} cannot be {})",
                         shape_str(x.shape()), shape_str(requested), d, shape[d]);
      continue;
    }
    const int64_t size = x.shape()[d - lead];
    if (shape[d] == -1) shape[d] = size;
    if (shape[d] == size) {
      strides[d] = x.strides()[d - lead];
    } else if (size != 1 || shape[d] < 0) {
      fail<ShapeError>(Op::expand, "cannot expand {} to {} (dimension {} is {}, not 1)", shape_str(x.shape()),
                       shape_str(requested), d - lead, size);
    }
  }
  return record(x.as_strided(shape, strides, x.offset()), Op::expand, {x},
                [input_shape = x.shape()](const Tensor& dout, InputGrads& g) {
                  g[0] = kernels::sum_to(dout, input_shape);
                });
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step) {
  const size_t a = sliced_axis(x, axis, op_name(Op::slice));
  if (step <= 0) fail<ValueError>(Op::slice, "step must be positive, got {} (shape {})", step, shape_str(x.shape()));
  const int64_t size = x.shape()[a];
  auto clamp = [size](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + size : i, 0, size); };
  start = clamp(start);
  end = clamp(end);
  const int64_t length = end > start ? (end - start - 1) / step + 1 : 0;
  return record_slice(x, a, start, length, step, Op::slice);
}

Tensor narrow(const Tensor& x, int64_t axis, int64_t start, int64_t length) {
  const size_t a = sliced_axis(x, axis, op_name(Op::narrow));
  const int64_t size = x.shape()[a];
  const int64_t first = start < 0 ? start + size : start;
  if (first < 0 || first > size)
    fail<IndexError>(Op::narrow, "start {} is out of range for dimension {} of size {} (shape {})", start, a, size,
                     shape_str(x.shape()));
  if (length < 0 || length > size - first)
    fail<IndexError>(Op::narrow, "start {} with length {} does not fit in dimension {} of size {} (shape {})", start,
                     length, a, size, shape_str(x.shape()));
  return record_slice(x, a, first, length, 1, Op::narrow);
}

Tensor concat(const std::vector<Tensor>& tensors, int64_t axis) {
  check_joinable(tensors, op_name(Op::concat));
  const Tensor& first = tensors[0];
  if (first.dim() == 0) fail<ShapeError>(Op::concat, "tensor 0 is 0-dimensional (shape []); concat needs dimensions");
  const auto a = static_cast<size_t>(normalize_axis(axis, first.dim(), op_name(Op::concat)));
  for (size_t i = 1; i < tensors.size(); ++i) {
    const Shape& shape = tensors[i].shape();
    if (shape.size() != first.shape().size())
      fail<ShapeError>(Op::concat, "tensor {} has shape {} but tensor 0 has {} (ranks differ)", i, shape_str(shape),
                       shape_str(first.shape()));
    for (size_t d = 0; d < shape.size(); ++d)
      if (d != a && shape[d] != first.shape()[d])
        fail<ShapeError>(Op::concat,
                         "tensor {} has shape {} but tensor 0 has {} (dimension {} may differ only along axis {})", i,
                         shape_str(shape), shape_str(first.shape()), d, a);
  }
  std::vector<int64_t> starts, lengths;
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    starts.push_back(start);
    lengths.push_back(t.shape()[a]);
    start += t.shape()[a];
  }
  return record(join(tensors, a), Op::concat, tensors, [a, starts, lengths](const Tensor& dout, InputGrads& g) {
    for (size_t i = 0; i < starts.size(); ++i)
      if (g.needs(i)) g[i] = strided_slice(dout, a, starts[i], lengths[i], 1);
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t axis) {
  check_joinable(tensors, op_name(Op::stack));
  const Tensor& first = tensors[0];
  const auto a = static_cast<size_t>(normalize_axis(axis, first.dim() + 1, op_name(Op::stack)));
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].shape() != first.shape())
      fail<ShapeError>(Op::stack, "tensor {} has shape {} but tensor 0 has {} (stack needs equal shapes)", i,
                       shape_str(tensors[i].shape()), shape_str(first.shape()));
    Shape shape = tensors[i].shape(), strides = tensors[i].strides();
    shape.insert(shape.begin() + static_cast<std::ptrdiff_t>(a), 1);
    strides.insert(strides.begin() + static_cast<std::ptrdiff_t>(a), 1);
    parts.push_back(tensors[i].as_strided(shape, strides, tensors[i].offset()));
  }
  return record(join(parts, a), Op::stack, tensors, [a](const Tensor& dout, InputGrads& g) {
    for (size_t i = 0; i < g.all().size(); ++i)
      if (g.needs(i)) g[i] = drop_axis(strided_slice(dout, a, static_cast<int64_t>(i), 1, 1), a);
  });
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t axis) {
  const size_t a = sliced_axis(x, axis, op_name(Op::split));
  if (split_size <= 0)
    fail<ValueError>(Op::split, "split_size must be positive, got {} (shape {})", split_size, shape_str(x.shape()));
  const int64_t size = x.shape()[a];
  if (size == 0) return {record_slice(x, a, 0, 0, 1, Op::split)};
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < size; start += split_size)
    pieces.push_back(record_slice(x, a, start, std::min(split_size, size - start), 1, Op::split));
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t axis) {
  const size_t a = sliced_axis(x, axis, op_name(Op::chunk));
  if (chunks <= 0)
    fail<ValueError>(Op::chunk, "chunks must be positive, got {} (shape {})", chunks, shape_str(x.shape()));
  const int64_t size = x.shape()[a];
  if (size == 0) return {record_slice(x, a, 0, 0, 1, Op::chunk)};
  const int64_t piece = (size + chunks - 1) / chunks;
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < size; start += piece)
    pieces.push_back(record_slice(x, a, start, std::min(piece, size - start), 1, Op::chunk));
  return pieces;
}

}  // namespace gradformer

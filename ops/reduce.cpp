// Reductions, forward and backward side by side. The backward of a reduction broadcasts the output gradient
// back over the reduced axes: it is viewed with its keepdim shape and expanded by stride 0, not copied.
//
// max/min, var, logsumexp and argmax walk x as a row-major [rows, cols] block with the reduced axes last: a
// view when x already is laid out that way (the common reduction over the last axis of a contiguous tensor),
// one copy otherwise. Each row is then one pass (two for var and logsumexp) over contiguous memory, and rows
// are split across OpenMP threads when the block is large.
#include "ops/reduce.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/elementwise.h"
#include "ops/fast_exp.h"
#include "ops/kernels.h"
#include "ops/shape.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>

namespace gradformer {
namespace {

// dout (reduced shape) seen as the input's shape: keepdim view, then stride 0 along the reduced axes.
Tensor broadcast_back(const Tensor& dout, const Shape& input_shape, const std::vector<int64_t>& axes) {
  const Shape keep = reduced_shape(input_shape, axes, true);
  const Tensor dense = dout.contiguous();
  const Tensor kept = dense.as_strided(keep, contiguous_strides(keep), dense.offset());
  return kept.as_strided(input_shape, kernels::broadcast_strides(kept, input_shape), kept.offset());
}

// x as [rows, cols]: the kept dimensions in order, then the reduced ones in order, contiguous.
struct RowBlock {
  Tensor data;
  int64_t rows = 1;
  int64_t cols = 1;
};

RowBlock reduced_last(const Tensor& x, const std::vector<int64_t>& axes) {
  RowBlock block;
  Shape shape, strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (std::binary_search(axes.begin(), axes.end(), d)) continue;
    shape.push_back(x.shape()[static_cast<size_t>(d)]);
    strides.push_back(x.strides()[static_cast<size_t>(d)]);
    block.rows *= shape.back();
  }
  for (int64_t axis : axes) {
    shape.push_back(x.shape()[static_cast<size_t>(axis)]);
    strides.push_back(x.strides()[static_cast<size_t>(axis)]);
    block.cols *= shape.back();
  }
  block.data = x.as_strided(shape, strides, x.offset());
  if (!block.data.is_contiguous()) {
    Tensor dense = empty(shape, x.dtype());
    dense.copy_(block.data);
    block.data = dense;
  }
  return block;
}

// The index of the first largest (Max) or smallest element of x[0..n), n >= 1, or of the first NaN. The first
// pass is a branch-free running extremum that vectorises; the second finds where it first occurs.
template <bool Max, class T>
int64_t extremum_index(const T* x, int64_t n) {
  // `omp simd reduction` lets the compiler reorder the comparisons (vmaxps); without it GCC keeps them in
  // order for NaN's sake and the loop stays scalar. NaNs are counted apart and handled below.
  T best = x[0];
  int64_t nans = 0;
  if constexpr (Max) {
#pragma omp simd reduction(max : best) reduction(+ : nans)
    for (int64_t i = 0; i < n; ++i) {
      best = x[i] > best ? x[i] : best;
      nans += x[i] != x[i];
    }
  } else {
#pragma omp simd reduction(min : best) reduction(+ : nans)
    for (int64_t i = 0; i < n; ++i) {
      best = x[i] < best ? x[i] : best;
      nans += x[i] != x[i];
    }
  }
  if (nans > 0) {
    for (int64_t i = 0; i < n; ++i)
      if (x[i] != x[i]) return i;
  }
  for (int64_t i = 0; i < n; ++i)
    if (x[i] == best) return i;
  return 0;
}

// Per output element, the index (into the row of reduced elements, row-major) of its extremum.
template <bool Max>
Tensor extremum_indices(const RowBlock& block, std::string_view op) {
  Tensor indices = empty({block.rows}, DType::i64);
  int64_t* index = indices.data_ptr<int64_t>();
  visit_floating(block.data.dtype(), op, [&]<class T>(std::type_identity<T>) {
    const T* x = block.data.data_ptr<const T>();
    const int64_t cols = block.cols;
    parallel_for(block.rows, block.rows * cols, kParallelGrain, [&](int64_t r) { index[r] = extremum_index<Max>(x + r * cols, cols); });
  });
  return indices;
}

void check_nonempty(const Tensor& x, const std::vector<int64_t>& axes, int64_t cols, std::string_view op) {
  if (cols == 0)
    fail<ShapeError>(op, "cannot reduce over zero elements (shape {}, axes {})", shape_str(x.shape()),
                     shape_str(axes));
}

// Offset of element `index` of a row-major walk over `dims` of a tensor with contiguous strides `strides`.
int64_t offset_in(int64_t index, const std::vector<int64_t>& dims, const Shape& shape, const Shape& strides) {
  int64_t offset = 0;
  for (size_t k = dims.size(); k-- > 0;) {
    const auto d = static_cast<size_t>(dims[k]);
    offset += (index % shape[d]) * strides[d];
    index /= shape[d];
  }
  return offset;
}

// The backward of max/min: a zero gradient with dout written at each output's extremum.
Tensor scatter_to_extrema(const Tensor& dout, const Tensor& indices, const Shape& input_shape,
                          const std::vector<int64_t>& axes, std::string_view op) {
  Tensor grad = zeros(input_shape, dout.dtype());
  const Tensor dense = dout.contiguous();
  const Shape strides = contiguous_strides(input_shape);
  std::vector<int64_t> kept;
  for (int64_t d = 0; d < static_cast<int64_t>(input_shape.size()); ++d)
    if (!std::binary_search(axes.begin(), axes.end(), d)) kept.push_back(d);
  const int64_t* index = indices.data_ptr<const int64_t>();
  visit_floating(dout.dtype(), op, [&]<class T>(std::type_identity<T>) {
    T* g = grad.data_ptr<T>();
    const T* d = dense.data_ptr<const T>();
    for (int64_t r = 0; r < indices.numel(); ++r)
      g[offset_in(r, kept, input_shape, strides) + offset_in(index[r], axes, input_shape, strides)] = d[r];
  });
  return grad;
}

// log(sum(exp(x[0..n)))) for one row: the maximum, then the shifted sum of exponentials.
template <class T>
T logsumexp_row(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  int64_t nans = 0;
#pragma omp simd reduction(max : m) reduction(+ : nans)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    nans += x[i] != x[i];
  }
  if (nans > 0) return std::numeric_limits<T>::quiet_NaN();
  // All -inf (or empty) gives -inf, a +inf gives +inf: subtracting m would make NaN of either.
  if (!std::isfinite(m)) return m;
  T total = 0;
  if constexpr (std::is_same_v<T, float>) {
#pragma omp simd reduction(+ : total)
    for (int64_t i = 0; i < n; ++i) total += kernels::exp_nonpositive(x[i] - m);
  } else {
    for (int64_t i = 0; i < n; ++i) total += std::exp(x[i] - m);
  }
  return m + std::log(total);
}

template <bool Max>
Tensor extremum(const Tensor& x, std::vector<int64_t> axes, bool keepdim, std::string_view op) {
  axes = reduction_axes(x, std::move(axes), op);
  const RowBlock block = reduced_last(x, axes);
  check_nonempty(x, axes, block.cols, op);
  const Tensor indices = extremum_indices<Max>(block, op);
  Tensor out = empty(reduced_shape(x.shape(), axes, keepdim), x.dtype());
  visit_floating(x.dtype(), op, [&]<class T>(std::type_identity<T>) {
    const T* values = block.data.data_ptr<const T>();
    const int64_t* index = indices.data_ptr<const int64_t>();
    T* o = out.data_ptr<T>();
    for (int64_t r = 0; r < block.rows; ++r) o[r] = values[r * block.cols + index[r]];
  });
  return record(out, Max ? Op::max : Op::min, {x}, [indices, input_shape = x.shape(), axes, op](const Tensor& dout, InputGrads& g) {
    g[0] = scatter_to_extrema(dout, indices, input_shape, axes, op);
  });
}

template <bool Max>
Tensor arg_extremum(const Tensor& x, std::vector<int64_t> axes, bool keepdim, std::string_view op) {
  axes = reduction_axes(x, std::move(axes), op);
  const RowBlock block = reduced_last(x, axes);
  check_nonempty(x, axes, block.cols, op);
  const Tensor indices = extremum_indices<Max>(block, op);
  const Shape shape = reduced_shape(x.shape(), axes, keepdim);
  return indices.as_strided(shape, contiguous_strides(shape), 0);
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
  axes = reduction_axes(x, std::move(axes), op_name(Op::sum));
  const Tensor summed = kernels::sum_keepdim(x, axes);
  const Shape shape = reduced_shape(x.shape(), axes, keepdim);
  Tensor out = summed.as_strided(shape, contiguous_strides(shape), 0);
  return record(out, Op::sum, {x}, [input_shape = x.shape(), axes](const Tensor& dout, InputGrads& g) {
    g[0] = broadcast_back(dout, input_shape, axes);
  });
}

Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  axes = reduction_axes(x, std::move(axes), op_name(Op::mean));
  int64_t count = 1;
  for (int64_t axis : axes) count *= x.shape()[static_cast<size_t>(axis)];
  if (count == 0) fail<ShapeError>(Op::mean, "mean over an empty set of elements (shape {})", shape_str(x.shape()));
  Tensor total = sum(x, axes, keepdim);
  return mul(total, 1.0 / static_cast<double>(count));
}

Tensor max(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  return extremum<true>(x, std::move(axes), keepdim, op_name(Op::max));
}

Tensor min(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  return extremum<false>(x, std::move(axes), keepdim, op_name(Op::min));
}

Tensor argmax(const Tensor& x, int64_t axis, bool keepdim) {
  return arg_extremum<true>(x, {axis}, keepdim, op_name(Op::argmax));
}
Tensor argmin(const Tensor& x, int64_t axis, bool keepdim) {
  return arg_extremum<false>(x, {axis}, keepdim, op_name(Op::argmin));
}
Tensor argmax(const Tensor& x) { return arg_extremum<true>(x, {}, false, op_name(Op::argmax)); }
Tensor argmin(const Tensor& x) { return arg_extremum<false>(x, {}, false, op_name(Op::argmin)); }

Tensor var(const Tensor& x, std::vector<int64_t> axes, double correction, bool keepdim) {
  axes = reduction_axes(x, std::move(axes), op_name(Op::var));
  const RowBlock block = reduced_last(x, axes);
  Tensor out = empty(reduced_shape(x.shape(), axes, keepdim), x.dtype());
  const double divisor = static_cast<double>(block.cols) - correction;
  visit_floating(x.dtype(), op_name(Op::var), [&]<class T>(std::type_identity<T>) {
    const T* values = block.data.data_ptr<const T>();
    T* o = out.data_ptr<T>();
    const int64_t cols = block.cols;
    // Two passes (mean, then squared deviations) rather than sum(x²) - n·mean², which cancels badly.
    parallel_for(block.rows, block.rows * cols, kParallelGrain, [&](int64_t r) {
      const T* row = values + r * cols;
      T total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t i = 0; i < cols; ++i) total += row[i];
      const T mean = total / static_cast<T>(cols);
      T squares = 0;
#pragma omp simd reduction(+ : squares)
      for (int64_t i = 0; i < cols; ++i) squares += (row[i] - mean) * (row[i] - mean);
      o[r] = static_cast<T>(static_cast<double>(squares) / divisor);
    });
  });
  const Shape keep = reduced_shape(x.shape(), axes, true);
  return record(out, Op::var, {x}, [x = x.detach(), axes, keep, cols = block.cols, divisor](const Tensor& dout,
                                                                                         InputGrads& g) {
    // d var / dx_i = 2 (x_i - mean) / (N - correction)
    const Tensor centred = x - sum(x, axes, true) * (1.0 / static_cast<double>(cols));
    g[0] = centred * reshape(dout, keep) * (2.0 / divisor);
  });
}

Tensor logsumexp(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  axes = reduction_axes(x, std::move(axes), op_name(Op::logsumexp));
  const RowBlock block = reduced_last(x, axes);
  Tensor out = empty(reduced_shape(x.shape(), axes, keepdim), x.dtype());
  visit_floating(x.dtype(), op_name(Op::logsumexp), [&]<class T>(std::type_identity<T>) {
    const T* values = block.data.data_ptr<const T>();
    T* o = out.data_ptr<T>();
    const int64_t cols = block.cols;
    parallel_for(block.rows, block.rows * cols, kParallelGrain, [&](int64_t r) { o[r] = logsumexp_row(values + r * cols, cols); });
  });
  const Shape keep = reduced_shape(x.shape(), axes, true);
  return record(out, Op::logsumexp, {x}, [x = x.detach(), y = out.detach(), keep](const Tensor& dout, InputGrads& g) {
    // d logsumexp / dx_i = exp(x_i - logsumexp): the softmax
    g[0] = exp(x - reshape(y, keep)) * reshape(dout, keep);
  });
}

}  // namespace gradformer

// Selection ops, each forward with its backward below it. Index ops copy whole contiguous rows (memcpy) and
// scatter-add gradients row by row; repeated indices are why their backward never splits rows across threads.
#include "ops/selection.h"

#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace gradformer {
namespace {

using kernels::sum_to;

void check_mask_dtype(const Tensor& mask, std::string_view op) {
  if (mask.dtype() != DType::boolean)
    fail<DTypeError>(op, "mask must be bool, got {} {}", dtype_name(mask.dtype()), shape_str(mask.shape()));
}

void check_index_dtype(const Tensor& index, std::string_view op, std::string_view what) {
  if (index.dtype() != DType::i64)
    fail<DTypeError>(op, "{} must be i64, got {} {}", what, dtype_name(index.dtype()), shape_str(index.shape()));
}

// The first of n indices outside [0, size), or nullptr. The flag loop vectorises; the search runs only on failure.
const int64_t* find_out_of_range(const int64_t* index, int64_t n, int64_t size) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) bad |= (index[i] < 0) | (index[i] >= size);
  if (!bad) return nullptr;
  for (int64_t i = 0; i < n; ++i)
    if (index[i] < 0 || index[i] >= size) return index + i;
  return nullptr;
}

// Views x as (outer, x.size(axis), inner) blocks of a contiguous tensor.
struct AxisSplit {
  int64_t outer = 1;
  int64_t inner = 1;
};
AxisSplit split_at(const Shape& shape, int64_t axis) {
  AxisSplit s;
  for (int64_t d = 0; d < axis; ++d) s.outer *= shape[static_cast<size_t>(d)];
  for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) s.inner *= shape[d];
  return s;
}

// out[o, j, :] = src[o, index[j], :], rows of `inner` elements; src has src_rows rows per outer block.
template <class T>
void take_rows(const T* src, T* out, const int64_t* index, int64_t outer, int64_t src_rows, int64_t count,
               int64_t inner) {
  const size_t bytes = static_cast<size_t>(inner) * sizeof(T);
  const int64_t tasks = outer * count;
  parallel_for(tasks, tasks * inner, kMemoryBoundGrain, [&](int64_t t) {
    const int64_t o = t / count, j = t % count;
    std::memcpy(out + t * inner, src + (o * src_rows + index[j]) * inner, bytes);
  });
}

// dst[o, index[j], :] += grad[o, j, :], skipping rows whose index is `skip`. Repeated indices would make two
// threads add into the same row, so threads split the columns instead.
template <class T>
void add_rows(T* dst, const T* grad, const int64_t* index, int64_t outer, int64_t dst_rows, int64_t count,
              int64_t inner, int64_t skip) {
  const bool parallel = outer * count * inner >= kParallelGrain && inner >= 64;
#pragma omp parallel if (parallel)
  {
    const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t begin = inner * me / threads, end = inner * (me + 1) / threads;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < count; ++j) {
        if (index[j] == skip) continue;
        T* d = dst + (o * dst_rows + index[j]) * inner;
        const T* g = grad + (o * count + j) * inner;
        for (int64_t c = begin; c < end; ++c) d[c] += g[c];
      }
  }
}

}  // namespace

Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  check_mask_dtype(mask, op_name(Op::where));
  if (a.dtype() != b.dtype())
    fail<DTypeError>(Op::where, "a and b have different dtypes: {} {} and {} {}", dtype_name(a.dtype()),
                     shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
  Tensor out = visit_dtype(a.dtype(), op_name(Op::where), [&]<class T>(std::type_identity<T>) {
    return kernels::map3<T, uint8_t, T, T>(mask, a, b, op_name(Op::where),
                                           [](uint8_t m, T x, T y) { return m ? x : y; });
  });
  return record(out, Op::where, {a, b},
                [mask = mask.detach(), sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
                  const Tensor zero = zeros({}, dout.dtype());
                  if (g.needs(0)) g[0] = sum_to(where(mask, dout, zero), sa);
                  if (g.needs(1)) g[1] = sum_to(where(mask, zero, dout), sb);
                });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_mask_dtype(mask, op_name(Op::masked_fill));
  if (kernels::broadcast_shapes(x.shape(), mask.shape(), op_name(Op::masked_fill)) != x.shape())
    fail<ShapeError>(Op::masked_fill, "mask {} cannot be broadcast to x {}", shape_str(mask.shape()),
                     shape_str(x.shape()));
  Tensor out = visit_dtype(x.dtype(), op_name(Op::masked_fill), [&]<class T>(std::type_identity<T>) {
    const Tensor filler = full({}, value, x.dtype());
    return kernels::map3<T, uint8_t, T, T>(mask, x, filler, op_name(Op::masked_fill),
                                           [](uint8_t m, T a, T v) { return m ? v : a; });
  });
  return record(
      out, Op::masked_fill, {x},
      [mask = mask.detach()](const Tensor& dout, InputGrads& g) { g[0] = masked_fill(dout, mask, 0.0); },
      std::isinf(value) ? Infinities::intended : Infinities::unexpected);
}

Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index) {
  check_index_dtype(index, op_name(Op::index_select), "index");
  if (index.dim() != 1)
    fail<ShapeError>(Op::index_select, "index must be 1-D, got shape {}", shape_str(index.shape()));
  if (x.dim() == 0) fail<ShapeError>(Op::index_select, "x must have at least one dimension, got shape []");
  const int64_t ax = normalize_axis(axis, x.dim(), op_name(Op::index_select));
  const int64_t size = x.size(ax), count = index.numel();
  const Tensor idx = index.contiguous();
  if (const int64_t* bad = find_out_of_range(idx.data_ptr<int64_t>(), count, size))
    fail<IndexError>(Op::index_select, "index {} is out of range for axis {} of size {} (x shape {})", *bad, ax, size,
                     shape_str(x.shape()));
  const AxisSplit split = split_at(x.shape(), ax);
  Shape out_shape = x.shape();
  out_shape[static_cast<size_t>(ax)] = count;
  // Any dtype an op computes in: token ids (i64) and masks (bool) are selected as they are, never through a float.
  Tensor out = visit_dtype(x.dtype(), op_name(Op::index_select), [&]<class T>(std::type_identity<T>) {
    const Tensor src = x.detach().contiguous();
    Tensor result = empty(out_shape, x.dtype());
    take_rows(src.data_ptr<const T>(), result.data_ptr<T>(), idx.data_ptr<const int64_t>(), split.outer, size, count,
              split.inner);
    return result;
  });
  return record(out, Op::index_select, {x},
                [idx, shape = x.shape(), split, size, count](const Tensor& dout, InputGrads& g) {
                  g[0] = zeros(shape, dout.dtype());
                  const Tensor d = dout.contiguous();
                  visit_floating(dout.dtype(), op_name(Op::index_select), [&]<class T>(std::type_identity<T>) {
                    add_rows(g[0].data_ptr<T>(), d.data_ptr<const T>(), idx.data_ptr<const int64_t>(), split.outer, size,
                             count, split.inner, int64_t{-1});
                  });
                });
}

namespace {

// Calls visit(flat, x_offset) for every element of a contiguous index of x's rank, where x_offset is the
// element of contiguous x that gather reads: index's coordinates with the axis coordinate replaced. Rows of
// index go to several threads only when visits cannot collide (forward writes; backward scatter-adds).
template <class Visit>
void for_each_gathered(const Shape& x_shape, const Shape& index_shape, int64_t axis, const int64_t* index,
                       bool allow_parallel, Visit&& visit) {
  const Shape x_strides = contiguous_strides(x_shape);
  const size_t rank = index_shape.size(), ax = static_cast<size_t>(axis);
  const int64_t last = index_shape[rank - 1];
  const int64_t rows = numel_of(index_shape) / std::max<int64_t>(last, 1);
#pragma omp parallel for schedule(static) if (allow_parallel && rows * last >= kParallelGrain)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t base = 0;
    for (int64_t r = row, d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
      const auto du = static_cast<size_t>(d);
      if (du != ax) base += (r % index_shape[du]) * x_strides[du];
      r /= index_shape[du];
    }
    const int64_t* idx = index + row * last;
    if (ax == rank - 1) {
      for (int64_t k = 0; k < last; ++k) visit(row * last + k, base + idx[k]);
    } else {
      const int64_t axis_stride = x_strides[ax];
      for (int64_t k = 0; k < last; ++k) visit(row * last + k, base + k + idx[k] * axis_stride);
    }
  }
}

}  // namespace

Tensor gather(const Tensor& x, int64_t axis, const Tensor& index) {
  check_index_dtype(index, op_name(Op::gather), "index");
  if (index.dim() != x.dim())
    fail<ShapeError>(Op::gather, "index has rank {} but x has rank {} (index shape {}, x shape {})", index.dim(),
                     x.dim(), shape_str(index.shape()), shape_str(x.shape()));
  if (x.dim() == 0) fail<ShapeError>(Op::gather, "x must have at least one dimension, got shape []");
  const int64_t ax = normalize_axis(axis, x.dim(), op_name(Op::gather));
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != ax && index.size(d) > x.size(d))
      fail<ShapeError>(Op::gather, "index shape {} exceeds x shape {} in dimension {} ({} > {})",
                       shape_str(index.shape()), shape_str(x.shape()), d, index.size(d), x.size(d));
  const Tensor idx = index.contiguous();
  const int64_t size = x.size(ax);
  if (const int64_t* bad = find_out_of_range(idx.data_ptr<int64_t>(), idx.numel(), size))
    fail<IndexError>(Op::gather, "index {} is out of range for axis {} of size {} (x shape {})", *bad, ax, size,
                     shape_str(x.shape()));
  Tensor out = visit_floating(x.dtype(), op_name(Op::gather), [&]<class T>(std::type_identity<T>) {
    const Tensor src = x.detach().contiguous();
    Tensor result = empty(index.shape(), x.dtype());
    if (result.numel() == 0) return result;
    const T* s = src.data_ptr<const T>();
    T* o = result.data_ptr<T>();
    for_each_gathered(x.shape(), index.shape(), ax, idx.data_ptr<int64_t>(), true,
                      [s, o](int64_t flat, int64_t offset) { o[flat] = s[offset]; });
    return result;
  });
  return record(out, Op::gather, {x}, [idx, shape = x.shape(), ax](const Tensor& dout, InputGrads& g) {
    g[0] = zeros(shape, dout.dtype());
    if (idx.numel() == 0) return;
    const Tensor d = dout.contiguous();
    visit_floating(dout.dtype(), op_name(Op::gather), [&]<class T>(std::type_identity<T>) {
      T* dx = g[0].data_ptr<T>();
      const T* dy = d.data_ptr<const T>();
      for_each_gathered(shape, idx.shape(), ax, idx.data_ptr<int64_t>(), false,
                        [dx, dy](int64_t flat, int64_t offset) { dx[offset] += dy[flat]; });
    });
  });
}

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
  if (weight.dim() != 2)
    fail<ShapeError>(Op::embedding, "weight must be 2-D [V, D], got shape {}", shape_str(weight.shape()));
  check_index_dtype(ids, op_name(Op::embedding), "ids");
  const int64_t rows = weight.size(0), width = weight.size(1), count = ids.numel();
  if (padding_idx < -1 || padding_idx >= rows)
    fail<IndexError>(Op::embedding, "padding_idx {} is out of range for a table of {} rows (-1 for none)", padding_idx,
                     rows);
  const Tensor idx = ids.contiguous();
  if (const int64_t* bad = find_out_of_range(idx.data_ptr<int64_t>(), count, rows))
    fail<IndexError>(Op::embedding, "index {} is out of range for a table of {} rows (ids shape {})", *bad, rows,
                     shape_str(ids.shape()));
  Shape out_shape = ids.shape();
  out_shape.push_back(width);
  Tensor out = visit_floating(weight.dtype(), op_name(Op::embedding), [&]<class T>(std::type_identity<T>) {
    const Tensor table = weight.detach().contiguous();
    Tensor result = empty(out_shape, weight.dtype());
    take_rows(table.data_ptr<const T>(), result.data_ptr<T>(), idx.data_ptr<const int64_t>(), 1, rows, count, width);
    return result;
  });
  return record(out, Op::embedding, {weight},
                [idx, rows, width, count, padding_idx](const Tensor& dout, InputGrads& g) {
                  g[0] = zeros({rows, width}, dout.dtype());
                  const Tensor d = dout.contiguous();
                  visit_floating(dout.dtype(), op_name(Op::embedding), [&]<class T>(std::type_identity<T>) {
                    add_rows(g[0].data_ptr<T>(), d.data_ptr<const T>(), idx.data_ptr<const int64_t>(), 1, rows, count, width,
                             padding_idx);
                  });
                });
}

}  // namespace gradformer

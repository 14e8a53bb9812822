// softmax, log_softmax, layer_norm and dropout: fused forward kernels, each with its closed-form backward
// right below it. The kernels read contiguous copies of their inputs (no copy when already contiguous).
//
// softmax/log_softmax see the tensor as [outer, n, inner] around the axis. For the last axis inner == 1 and
// every row is a contiguous run that the compiler vectorises; for a middle axis each [n, inner] block is done
// at once, column-wise. Rows or blocks are spread over OpenMP threads once the tensor has kParallelGrain elements.
// oneDNN's softmax and layer_normalization were not tried. Measured 2026-11-24, [4096, 1024] f32 on one thread of
// a 2-core virtual machine shared with other programs (CPU model not recorded; rough): softmax 17-27 ms, log_softmax 11-20 ms, layer_norm forward 10-14 ms,
// forward + backward 38-45 ms; a middle-axis softmax went from 555 ms (strided rows) to 13-19 ms (blocks).
#include "ops/normalization.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/dropout_mask.h"
#include "ops/elementwise.h"
#include "ops/fast_exp.h"
#include "ops/on_node.h"
#include "ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

namespace gradformer {
namespace {

struct AxisLayout {
  int64_t outer = 1;  // product of the dimensions before the axis
  int64_t n = 1;      // the axis
  int64_t inner = 1;  // product of the dimensions after it: the stride between a row's elements
};

AxisLayout axis_layout(const Tensor& x, int64_t axis, std::string_view op) {
  AxisLayout layout;
  if (x.dim() == 0) {
    normalize_axis(axis, 0, op);
    return layout;
  }
  const auto a = static_cast<size_t>(normalize_axis(axis, x.dim(), op));
  for (size_t d = 0; d < a; ++d) layout.outer *= x.shape()[d];
  layout.n = x.shape()[a];
  for (size_t d = a + 1; d < x.shape().size(); ++d) layout.inner *= x.shape()[d];
  return layout;
}

// Calls row_fn(offset) for each contiguous row (inner == 1), or block_fn(offset) for each [n, inner] block
// otherwise, on OpenMP threads when the tensor is large.
template <class RowFn, class BlockFn>
void for_each_slice(const AxisLayout& layout, RowFn row_fn, BlockFn block_fn) {
  const int64_t block = layout.n * layout.inner;
  const int64_t work = layout.outer * block;
  if (layout.inner == 1)
    parallel_for(layout.outer, work, kParallelGrain, [&](int64_t r) { row_fn(r * layout.n); });
  else
    parallel_for(layout.outer, work, kParallelGrain, [&](int64_t b) { block_fn(b * block); });
}

// One contiguous row of softmax (Log = false) or log_softmax (Log = true). A row that is entirely -inf has
// max -inf: shifting by 0 instead makes every exp 0 and the total 0 (any other row has total >= 1), so
// softmax gives 0 · (reciprocal 0) = 0 and log_softmax keeps -inf.
template <class T, bool Log>
void softmax_row(const T* x, T* y, int64_t n) {
  constexpr T minus_inf = -std::numeric_limits<T>::infinity();
  T max = minus_inf;
#pragma omp simd reduction(max : max)
  for (int64_t j = 0; j < n; ++j) max = x[j] > max ? x[j] : max;
  const T shift = max == minus_inf ? T(0) : max;
  T total = 0;
  if constexpr (Log) {
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += kernels::exp_nonpositive(x[j] - shift);
    const T log_sum = total > 0 ? shift + std::log(total) : T(0);
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] - log_sum;
  } else {
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) {
      const T e = kernels::exp_nonpositive(x[j] - shift);
      y[j] = e;
      total += e;
    }
    const T reciprocal = total > 0 ? T(1) / total : T(0);
    for (int64_t j = 0; j < n; ++j) y[j] *= reciprocal;
  }
}

// The same for the `inner` rows of one [n, inner] block at once (a middle axis), walking the block in memory
// order so that every load is contiguous and the loops over columns vectorise.
template <class T, bool Log>
void softmax_block(const T* x, T* y, int64_t n, int64_t inner) {
  std::vector<T> shift(static_cast<size_t>(inner), -std::numeric_limits<T>::infinity());
  std::vector<T> total(static_cast<size_t>(inner), T(0));
  T* s = shift.data();
  T* t = total.data();
  for (int64_t j = 0; j < n; ++j) {
    const T* xj = x + j * inner;
    for (int64_t i = 0; i < inner; ++i) s[i] = xj[i] > s[i] ? xj[i] : s[i];
  }
  for (int64_t i = 0; i < inner; ++i) s[i] = s[i] == -std::numeric_limits<T>::infinity() ? T(0) : s[i];
  for (int64_t j = 0; j < n; ++j) {
    const T* xj = x + j * inner;
    T* yj = y + j * inner;
    for (int64_t i = 0; i < inner; ++i) {
      const T e = kernels::exp_nonpositive(xj[i] - s[i]);
      if constexpr (!Log) yj[i] = e;
      t[i] += e;
    }
  }
  if constexpr (Log) {
    for (int64_t i = 0; i < inner; ++i) s[i] = t[i] > 0 ? s[i] + std::log(t[i]) : T(0);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) y[j * inner + i] = x[j * inner + i] - s[i];
  } else {
    for (int64_t i = 0; i < inner; ++i) t[i] = t[i] > 0 ? T(1) / t[i] : T(0);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) y[j * inner + i] *= t[i];
  }
}

// Backward from the output y: softmax dx = y ⊙ (dy − Σ dy⊙y); log_softmax dx = dy − exp(y)·Σ dy.
template <class T, bool Log>
void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t n) {
  T total = 0;
  if constexpr (Log) {
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += dy[j];
    for (int64_t j = 0; j < n; ++j) dx[j] = dy[j] - kernels::exp_nonpositive(y[j]) * total;
  } else {
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += dy[j] * y[j];
    for (int64_t j = 0; j < n; ++j) dx[j] = y[j] * (dy[j] - total);
  }
}

template <class T, bool Log>
void softmax_backward_block(const T* y, const T* dy, T* dx, int64_t n, int64_t inner) {
  std::vector<T> total(static_cast<size_t>(inner), T(0));
  T* t = total.data();
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < inner; ++i) t[i] += Log ? dy[j * inner + i] : dy[j * inner + i] * y[j * inner + i];
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t k = j * inner + i;
      dx[k] = Log ? dy[k] - kernels::exp_nonpositive(y[k]) * t[i] : y[k] * (dy[k] - t[i]);
    }
}

template <bool Log>
Tensor softmax_backward(const Tensor& y, const Tensor& dout, const AxisLayout& layout, std::string_view op) {
  const Tensor dy = dout.contiguous();
  Tensor dx = empty(y.shape(), y.dtype());
  visit_floating(y.dtype(), op, [&]<class T>(std::type_identity<T>) {
    const T* py = y.data_ptr<const T>();
    const T* pdy = dy.data_ptr<const T>();
    T* pdx = dx.data_ptr<T>();
    for_each_slice(
        layout, [&](int64_t at) { softmax_backward_row<T, Log>(py + at, pdy + at, pdx + at, layout.n); },
        [&](int64_t at) { softmax_backward_block<T, Log>(py + at, pdy + at, pdx + at, layout.n, layout.inner); });
  });
  return dx;
}

// The same formulas in ops that record, for a backward that is itself differentiated; y carries its graph.
template <bool Log>
Tensor softmax_backward_recorded(const Tensor& y, const Tensor& dout, int64_t axis) {
  if constexpr (Log) return dout - exp(y) * sum(dout, {axis}, true);
  else return y * (dout - sum(dout * y, {axis}, true));
}

template <bool Log>
Tensor softmax_impl(const Tensor& x, int64_t axis, std::string_view op) {
  const AxisLayout layout = axis_layout(x, axis, op);
  const Tensor input = x.detach().contiguous();
  Tensor out = empty(x.shape(), x.dtype());
  visit_floating(x.dtype(), op, [&]<class T>(std::type_identity<T>) {
    const T* px = input.data_ptr<const T>();
    T* py = out.data_ptr<T>();
    for_each_slice(
        layout, [&](int64_t at) { softmax_row<T, Log>(px + at, py + at, layout.n); },
        [&](int64_t at) { softmax_block<T, Log>(px + at, py + at, layout.n, layout.inner); });
  });
  // The backward reads only the output y. Differentiated (grad mode on during backward), it is written in ops
  // that record, on y placed on this node: reached through a weak pointer, since the node owns the backward.
  auto self = std::make_shared<std::weak_ptr<Node>>();
  Tensor result = record(out, Log ? Op::log_softmax : Op::softmax, {x},
                         [y = out.detach(), layout, op, axis, self](const Tensor& dout, InputGrads& g) {
                           if (grad_mode_enabled()) {
                             g[0] = softmax_backward_recorded<Log>(on_node(y, self->lock()), dout, axis);
                             return;
                           }
                           g[0] = softmax_backward<Log>(y, dout, layout, op);
                         });
  *self = result.grad_fn();
  return result;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_impl<false>(x, axis, op_name(Op::softmax)); }

Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_impl<true>(x, axis, op_name(Op::log_softmax)); }

namespace {

void check_affine(const Tensor& param, std::string_view what, const Tensor& x, const Shape& normalized_shape) {
  if (!param.defined()) return;
  if (param.shape() != normalized_shape)
    fail<ShapeError>(Op::layer_norm, "{} has shape {} but normalized_shape is {}", what, shape_str(param.shape()),
                     shape_str(normalized_shape));
  if (param.dtype() != x.dtype())
    fail<DTypeError>(Op::layer_norm, "{} is {} but the input is {}", what, dtype_name(param.dtype()),
                     dtype_name(x.dtype()));
}

// What the backward of layer_norm reads: x and the parameters (contiguous, detached), and per row the mean and
// 1 / sqrt(var + eps) saved by the forward; for a backward that is itself differentiated, x and the weight as
// given (with their graph: the same storage when x is contiguous) and eps.
struct LayerNormSaved {
  Tensor x, weight, mean, rstd;
  Shape normalized_shape;
  int64_t rows = 0, width = 0;
  Tensor x_graph, weight_graph;
  double eps = 0;
};

// layer_norm's backward in ops that record, for a backward that is itself differentiated. The statistics are
// recomputed from x, as functions of x (the saved ones are constants to the graph):
// x̂ = (x − mean)·rstd, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·w, dw = Σ_rows dy·x̂, db = Σ_rows dy.
void layer_norm_backward_recorded(const LayerNormSaved& s, const Tensor& dout, InputGrads& g) {
  const Tensor& x = s.x_graph;
  const int64_t rank = x.dim(), normalized = static_cast<int64_t>(s.normalized_shape.size());
  std::vector<int64_t> normalized_axes, row_axes;
  for (int64_t d = 0; d < rank; ++d) (d < rank - normalized ? row_axes : normalized_axes).push_back(d);
  const Tensor centred = x - mean(x, normalized_axes, true);
  const Tensor rstd = rsqrt(mean(centred * centred, normalized_axes, true) + s.eps);
  const Tensor xhat = centred * rstd;
  // Σ over the rows; with no row dimension (x of normalized_shape) the one row is the sum.
  auto row_sum = [&](const Tensor& t) { return row_axes.empty() ? t : sum(t, row_axes); };
  if (g.needs(0)) {
    const Tensor scaled = s.weight_graph.defined() ? dout * s.weight_graph : dout;
    g[0] = rstd * (scaled - mean(scaled, normalized_axes, true) - xhat * mean(scaled * xhat, normalized_axes, true));
  }
  if (g.needs(1)) g[1] = row_sum(dout * xhat);
  if (g.needs(2)) g[2] = row_sum(dout);
}

// dx = rstd * (g − mean(g) − x̂·mean(g·x̂)) with g = dy·w and x̂ = (x − mean)·rstd; dweight = Σ_rows dy·x̂ and
// dbias = Σ_rows dy. One pass over the rows gives all three: each thread sums its rows' dweight/dbias into its
// own buffer, and the buffers are added in thread order afterwards, so the result does not depend on timing.
void layer_norm_backward(const LayerNormSaved& s, const Tensor& dout, InputGrads& g) {
  const Tensor dy = dout.contiguous();
  const bool need_dx = g.needs(0), need_dw = g.needs(1), need_db = g.needs(2);
  Tensor dx = need_dx ? empty(s.x.shape(), s.x.dtype()) : Tensor();
  visit_floating(s.x.dtype(), op_name(Op::layer_norm), [&]<class T>(std::type_identity<T>) {
    const int64_t rows = s.rows, width = s.width;
    const bool parallel = rows > 1 && rows * width >= kMemoryBoundGrain;
    const int threads = parallel ? omp_get_max_threads() : 1;
    // One row per thread, filled even when dweight/dbias are not needed: the loop stays branch-free.
    std::vector<T> partial_w(static_cast<size_t>(threads * width), T(0));
    std::vector<T> partial_b(partial_w.size(), T(0));
    // A missing weight is a weight of ones: one loop for both cases.
    const std::vector<T> unit_weight(s.weight.defined() ? 0 : static_cast<size_t>(width), T(1));
    const T* pw = s.weight.defined() ? s.weight.data_ptr<const T>() : unit_weight.data();
    const T* px = s.x.data_ptr<const T>();
    const T* pmean = s.mean.data_ptr<const T>();
    const T* prstd = s.rstd.data_ptr<const T>();
    const T* pdy = dy.data_ptr<const T>();
    T* pdx = need_dx ? dx.data_ptr<T>() : nullptr;
    const T inv_width = T(1) / static_cast<T>(width);
    // The rows of one thread; the `omp for` inside splits them when called from the team, and runs them all
    // when called outside it (a branch rather than an `if` clause, which still enters the OpenMP runtime).
    auto backward_rows = [&] {
      const auto thread = static_cast<size_t>(omp_get_thread_num());
      T* acc_w = partial_w.data() + thread * static_cast<size_t>(width);
      T* acc_b = partial_b.data() + thread * static_cast<size_t>(width);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = px + r * width;
        const T* dyr = pdy + r * width;
        const T mean = pmean[r], rstd = prstd[r];
        T sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
        for (int64_t j = 0; j < width; ++j) {
          const T xhat = (xr[j] - mean) * rstd;
          const T grad = dyr[j] * pw[j];
          sum_g += grad;
          sum_gx += grad * xhat;
          acc_w[j] += dyr[j] * xhat;
          acc_b[j] += dyr[j];
        }
        if (need_dx) {
          const T mean_g = sum_g * inv_width, mean_gx = sum_gx * inv_width;
          T* dxr = pdx + r * width;
          for (int64_t j = 0; j < width; ++j) {
            const T xhat = (xr[j] - mean) * rstd;
            dxr[j] = rstd * (dyr[j] * pw[j] - mean_g - xhat * mean_gx);
          }
        }
      }
    };
    if (parallel) {
#pragma omp parallel num_threads(threads)
      backward_rows();
    } else {
      backward_rows();
    }
    auto reduce = [&](const std::vector<T>& partial) {
      Tensor total = zeros(s.normalized_shape, s.x.dtype());
      T* pt = total.data_ptr<T>();
      for (int t = 0; t < threads; ++t)
        for (int64_t j = 0; j < width; ++j) pt[j] += partial[static_cast<size_t>(t * width + j)];
      return total;
    };
    if (need_dw) g[1] = reduce(partial_w);
    if (need_db) g[2] = reduce(partial_b);
  });
  if (need_dx) g[0] = dx;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const size_t k = normalized_shape.size();
  if (k == 0 || k > x.shape().size() ||
      !std::equal(normalized_shape.begin(), normalized_shape.end(), x.shape().end() - static_cast<ptrdiff_t>(k)))
    fail<ShapeError>(Op::layer_norm, "normalized_shape {} is not the trailing dimensions of the input {}",
                     shape_str(normalized_shape), shape_str(x.shape()));
  check_affine(weight, "weight", x, normalized_shape);
  check_affine(bias, "bias", x, normalized_shape);
  if (!(eps >= 0.0)) fail<ValueError>(Op::layer_norm, "eps must be >= 0, got {}", eps);
  const int64_t width = numel_of(normalized_shape);
  if (width == 0) fail<ShapeError>(Op::layer_norm, "normalized_shape {} has no elements", shape_str(normalized_shape));

  LayerNormSaved saved;
  saved.x = x.detach().contiguous();
  saved.weight = weight.defined() ? weight.detach().contiguous() : Tensor();
  saved.normalized_shape = normalized_shape;
  saved.x_graph = x;
  saved.weight_graph = weight;
  saved.eps = eps;
  saved.width = width;
  saved.rows = x.numel() / width;
  saved.mean = empty({saved.rows}, x.dtype());
  saved.rstd = empty({saved.rows}, x.dtype());
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty(x.shape(), x.dtype());
  visit_floating(x.dtype(), op_name(Op::layer_norm), [&]<class T>(std::type_identity<T>) {
    const T* px = saved.x.data_ptr<const T>();
    // Missing parameters are ones and zeros, so that one branch-free loop serves every case.
    const std::vector<T> unit_weight(saved.weight.defined() ? 0 : static_cast<size_t>(width), T(1));
    const std::vector<T> zero_bias(b.defined() ? 0 : static_cast<size_t>(width), T(0));
    const T* pw = saved.weight.defined() ? saved.weight.data_ptr<const T>() : unit_weight.data();
    const T* pb = b.defined() ? b.data_ptr<const T>() : zero_bias.data();
    T* py = out.data_ptr<T>();
    T* pmean = saved.mean.data_ptr<T>();
    T* prstd = saved.rstd.data_ptr<T>();
    const int64_t rows = saved.rows;
    const T inv_width = T(1) / static_cast<T>(width);
    const T epsilon = static_cast<T>(eps);
    // Two passes over the row (mean, then squared deviations): no cancellation for rows with a large mean.
    parallel_for(rows, x.numel(), kMemoryBoundGrain, [&](int64_t r) {
      const T* xr = px + r * width;
      T* yr = py + r * width;
      T total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < width; ++j) total += xr[j];
      const T mean = total * inv_width;
      T squares = 0;
#pragma omp simd reduction(+ : squares)
      for (int64_t j = 0; j < width; ++j) squares += (xr[j] - mean) * (xr[j] - mean);
      const T rstd = T(1) / std::sqrt(squares * inv_width + epsilon);
      pmean[r] = mean;
      prstd[r] = rstd;
      for (int64_t j = 0; j < width; ++j) {
        yr[j] = (xr[j] - mean) * rstd * pw[j] + pb[j];
      }
    });
  });
  return record(out, Op::layer_norm, {x, weight, bias},
                [saved](const Tensor& dout, InputGrads& g) {
                  if (grad_mode_enabled())
                    layer_norm_backward_recorded(saved, dout, g);
                  else
                    layer_norm_backward(saved, dout, g);
                });
}

namespace {

// x scaled by the mask: dropout's forward and, dropout being linear, its backward too, so the backward records
// (as dropout) when it is itself differentiated.
Tensor masked_by(const Tensor& x, const kernels::DropoutMask& mask) {
  const Tensor input = x.detach().contiguous();
  Tensor out = empty(x.shape(), x.dtype());
  visit_floating(x.dtype(), op_name(Op::dropout), [&]<class T>(std::type_identity<T>) {
    mask.apply(input.data_ptr<const T>(), out.data_ptr<T>(), input.numel());
  });
  // dx = dout · scale: the same mask, recomputed from its key.
  return record(out, Op::dropout, {x}, [mask](const Tensor& dout, InputGrads& g) { g[0] = masked_by(dout, mask); });
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  if (!(p >= 0.0 && p <= 1.0)) fail<ValueError>(Op::dropout, "p must be in [0, 1], got {}", p);
  if (!training || p == 0.0) return x;
  return masked_by(x, kernels::DropoutMask::draw(p, gen));
}

}  // namespace gradformer

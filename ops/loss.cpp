// cross_entropy, nll_loss and mse_loss, each forward with its backward below it. cross_entropy never builds
// log_softmax as a tensor: one pass per row finds the max, the logsumexp and the loss, and saves the
// logsumexp, from which the backward recomputes the probabilities.
#include "ops/loss.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/elementwise.h"
#include "ops/fast_exp.h"
#include "ops/normalization.h"
#include "ops/shape.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace gradformer {
namespace {

// Checks (N, C) scores against (N) i64 targets and every target against [0, C) or ignore_index; returns the
// targets contiguous and the number of rows not ignored.
Tensor checked_targets(const Tensor& scores, const Tensor& targets, int64_t ignore_index, std::string_view op,
                       int64_t& counted) {
  if (scores.dim() != 2)
    fail<ShapeError>(op, "expects scores of shape (N, C), got {}; reshape (..., C) to (-1, C) first",
                     shape_str(scores.shape()));
  if (targets.dtype() != DType::i64)
    fail<DTypeError>(op, "expects i64 class indices as targets, got {}", dtype_name(targets.dtype()));
  if (targets.dim() != 1 || targets.shape()[0] != scores.shape()[0])
    fail<ShapeError>(op, "targets {} do not match scores {}: expected [{}]", shape_str(targets.shape()),
                     shape_str(scores.shape()), scores.shape()[0]);
  const Tensor dense = targets.detach().contiguous();
  const int64_t* t = dense.data_ptr<const int64_t>();
  const int64_t classes = scores.shape()[1];
  counted = 0;
  for (int64_t i = 0; i < dense.numel(); ++i) {
    if (t[i] == ignore_index) continue;
    if (t[i] < 0 || t[i] >= classes)
      fail<IndexError>(op, "target {} at row {} is out of range for {} classes (expected 0..{} or ignore_index {})",
                       t[i], i, classes, classes - 1, ignore_index);
    ++counted;
  }
  return dense;
}

// The factor each counted row's gradient gets besides dout: 1 / count for mean (0 when nothing counts).
double reduction_scale(Reduction reduction, int64_t counted) {
  if (reduction != Reduction::mean) return 1.0;
  return counted > 0 ? 1.0 / static_cast<double>(counted) : 0.0;
}

// Per-row losses reduced as asked: (N) for none, a scalar otherwise. Sums run in row order (deterministic).
template <class T>
Tensor reduce_rows(const std::vector<T>& losses, Reduction reduction, int64_t counted) {
  const auto n = static_cast<int64_t>(losses.size());
  if (reduction == Reduction::none) {
    Tensor out = empty({n}, dtype_of<T>());
    std::copy(losses.begin(), losses.end(), out.data_ptr<T>());
    return out;
  }
  T total = 0;
  for (T v : losses) total += v;
  return scalar_tensor(static_cast<double>(total) * reduction_scale(reduction, counted), dtype_of<T>());
}

// The upstream gradient of row r: dout[r] for none, the scalar times the reduction's scale otherwise.
template <class T>
struct RowGradient {
  const T* per_row = nullptr;
  T scalar = 0;
  T operator()(int64_t r) const { return per_row ? per_row[r] : scalar; }
};

template <class T>
RowGradient<T> row_gradient(const Tensor& dense_dout, Reduction reduction, int64_t counted) {
  if (reduction == Reduction::none) return {dense_dout.data_ptr<T>(), T(0)};
  return {nullptr, static_cast<T>(dense_dout.item() * reduction_scale(reduction, counted))};
}

// For a backward that is itself differentiated (grad mode on during backward), cross_entropy's and nll_loss's
// gradients in ops that record: dx = (softmax(x) − target) ⊙ w for cross_entropy and −target ⊙ w for nll_loss,
// with the constants below. Each row's target distribution: (1 − ε)·onehot(t) + ε/C, zeros for ignored rows.
Tensor target_distribution(const Tensor& target, int64_t classes, double smoothing, int64_t ignore_index,
                           DType dtype) {
  const int64_t rows = target.numel();
  const int64_t* t = target.data_ptr<const int64_t>();
  std::vector<double> values(static_cast<size_t>(rows * classes), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    if (t[r] == ignore_index) continue;
    for (int64_t c = 0; c < classes; ++c) values[static_cast<size_t>(r * classes + c)] = smoothing / double(classes);
    values[static_cast<size_t>(r * classes + t[r])] += 1.0 - smoothing;
  }
  return from_vector(values, {rows, classes}).to(dtype);
}

// Each row's share w of dout, [N, 1]: dout[r] (none) or dout times the reduction's scale, 0 for ignored rows.
Tensor row_weights(const Tensor& dout, const Tensor& target, int64_t ignore_index, Reduction reduction,
                   int64_t counted) {
  const int64_t rows = target.numel();
  const int64_t* t = target.data_ptr<const int64_t>();
  const double scale = reduction_scale(reduction, counted);
  std::vector<double> counts(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) counts[static_cast<size_t>(r)] = t[r] == ignore_index ? 0.0 : scale;
  const Tensor counted_rows = from_vector(counts, {rows, 1}).to(dout.dtype());
  return (reduction == Reduction::none ? reshape(dout, {rows, 1}) : dout) * counted_rows;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options) {
  const double smoothing = options.label_smoothing;
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    fail<ValueError>(Op::cross_entropy, "label_smoothing must be in [0, 1], got {}", smoothing);
  int64_t counted = 0;
  const Tensor target = checked_targets(logits, targets, options.ignore_index, op_name(Op::cross_entropy), counted);
  const Tensor x = logits.detach().contiguous();
  const int64_t rows = x.shape()[0], classes = x.shape()[1];
  Tensor logsumexp = empty({rows}, x.dtype());
  Tensor out = visit_floating(x.dtype(), op_name(Op::cross_entropy), [&]<class T>(std::type_identity<T>) {
    const T* px = x.data_ptr<const T>();
    const int64_t* pt = target.data_ptr<const int64_t>();
    T* plse = logsumexp.data_ptr<T>();
    std::vector<T> losses(static_cast<size_t>(rows), T(0));
    const T eps = static_cast<T>(smoothing);
    parallel_for(rows, rows * classes, kParallelGrain, [&](int64_t r) {
      plse[r] = 0;
      if (pt[r] == options.ignore_index) return;
      const T* xr = px + r * classes;
      T max = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : max)
      for (int64_t c = 0; c < classes; ++c) max = xr[c] > max ? xr[c] : max;
      T total = 0, sum_x = 0;
#pragma omp simd reduction(+ : total, sum_x)
      for (int64_t c = 0; c < classes; ++c) {
        total += kernels::exp_nonpositive(xr[c] - max);
        sum_x += xr[c];
      }
      const T lse = max + std::log(total);
      plse[r] = lse;
      // −log p_t = lse − x_t and −Σ_c log p_c / C = lse − mean(x).
      const T nll = lse - xr[pt[r]];
      losses[static_cast<size_t>(r)] = eps == T(0) ? nll : (1 - eps) * nll + eps * (lse - sum_x / T(classes));
    });
    return reduce_rows(losses, options.reduction, counted);
  });
  // logits are saved with their graph (the storage x shares when contiguous), for a differentiated backward.
  return record(out, Op::cross_entropy, {logits},
                [x, target, logsumexp, options, counted, logits](const Tensor& dout, InputGrads& g) {
                  if (grad_mode_enabled()) {
                    const Tensor distribution = target_distribution(target, x.size(1), options.label_smoothing,
                                                                    options.ignore_index, x.dtype());
                    g[0] = (softmax(logits, -1) - distribution) *
                           row_weights(dout, target, options.ignore_index, options.reduction, counted);
                    return;
                  }
                  // dlogits = (softmax − (1 − ε)·onehot(t) − ε/C)·dout_r for counted rows, 0 for ignored rows.
                  const int64_t rows = x.shape()[0], classes = x.shape()[1];
                  const Tensor dense_dout = dout.contiguous();
                  Tensor dx = empty(x.shape(), x.dtype());
                  visit_floating(x.dtype(), op_name(Op::cross_entropy), [&]<class T>(std::type_identity<T>) {
                    const T* px = x.data_ptr<const T>();
                    const T* plse = logsumexp.data_ptr<const T>();
                    const int64_t* pt = target.data_ptr<const int64_t>();
                    T* pdx = dx.data_ptr<T>();
                    const RowGradient<T> upstream = row_gradient<T>(dense_dout, options.reduction, counted);
                    const T eps = static_cast<T>(options.label_smoothing);
                    const T uniform_part = eps / T(classes);
                    parallel_for(rows, rows * classes, kParallelGrain, [&](int64_t r) {
                      T* dxr = pdx + r * classes;
                      if (pt[r] == options.ignore_index) {
                        for (int64_t c = 0; c < classes; ++c) dxr[c] = 0;
                        return;
                      }
                      const T* xr = px + r * classes;
                      const T w = upstream(r), lse = plse[r];
                      for (int64_t c = 0; c < classes; ++c)
                        dxr[c] = (kernels::exp_nonpositive(xr[c] - lse) - uniform_part) * w;
                      dxr[pt[r]] -= (1 - eps) * w;
                    });
                  });
                  g[0] = dx;
                });
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, int64_t ignore_index, Reduction reduction) {
  int64_t counted = 0;
  const Tensor target = checked_targets(log_probs, targets, ignore_index, op_name(Op::nll_loss), counted);
  const Tensor x = log_probs.detach().contiguous();
  const int64_t rows = x.shape()[0], classes = x.shape()[1];
  Tensor out = visit_floating(x.dtype(), op_name(Op::nll_loss), [&]<class T>(std::type_identity<T>) {
    const T* px = x.data_ptr<const T>();
    const int64_t* pt = target.data_ptr<const int64_t>();
    std::vector<T> losses(static_cast<size_t>(rows), T(0));
    for (int64_t r = 0; r < rows; ++r)
      if (pt[r] != ignore_index) losses[static_cast<size_t>(r)] = -px[r * classes + pt[r]];
    return reduce_rows(losses, reduction, counted);
  });
  return record(out, Op::nll_loss, {log_probs},
                [shape = x.shape(), target, ignore_index, reduction, counted](const Tensor& dout, InputGrads& g) {
                  if (grad_mode_enabled()) {  // linear in dout, constant in log_probs
                    g[0] = -target_distribution(target, shape[1], 0.0, ignore_index, dout.dtype()) *
                           row_weights(dout, target, ignore_index, reduction, counted);
                    return;
                  }
                  Tensor dx = zeros(shape, dout.dtype());
                  const Tensor dense_dout = dout.contiguous();
                  visit_floating(dout.dtype(), op_name(Op::nll_loss), [&]<class T>(std::type_identity<T>) {
                    const RowGradient<T> upstream = row_gradient<T>(dense_dout, reduction, counted);
                    const int64_t* pt = target.data_ptr<const int64_t>();
                    T* pdx = dx.data_ptr<T>();
                    for (int64_t r = 0; r < shape[0]; ++r)
                      if (pt[r] != ignore_index) pdx[r * shape[1] + pt[r]] = -upstream(r);
                  });
                  g[0] = dx;
                });
}

Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction) {
  if (a.shape() != b.shape())
    fail<ShapeError>(Op::mse_loss, "input {} and target {} must have the same shape", shape_str(a.shape()),
                     shape_str(b.shape()));
  if (a.dtype() != b.dtype())
    fail<DTypeError>(Op::mse_loss, "input is {} but target is {}", dtype_name(a.dtype()), dtype_name(b.dtype()));
  const int64_t n = a.numel();
  if (reduction == Reduction::mean && n == 0)
    fail<ShapeError>(Op::mse_loss, "mean over an empty set of elements (shape {})", shape_str(a.shape()));
  const Tensor x = a.detach().contiguous(), y = b.detach().contiguous();
  Tensor out = visit_floating(a.dtype(), op_name(Op::mse_loss), [&]<class T>(std::type_identity<T>) {
    const T* px = x.data_ptr<const T>();
    const T* py = y.data_ptr<const T>();
    if (reduction == Reduction::none) {
      Tensor squares = empty(a.shape(), a.dtype());
      T* ps = squares.data_ptr<T>();
      for (int64_t i = 0; i < n; ++i) ps[i] = (px[i] - py[i]) * (px[i] - py[i]);
      return squares;
    }
    T total = 0;
    for (int64_t i = 0; i < n; ++i) total += (px[i] - py[i]) * (px[i] - py[i]);
    const double scale = reduction == Reduction::mean ? 1.0 / static_cast<double>(n) : 1.0;
    return scalar_tensor(static_cast<double>(total) * scale, a.dtype());
  });
  // a and b are saved with their graph: the backward is written in ops, which record when it is differentiated.
  return record(out, Op::mse_loss, {a, b}, [a, b, reduction, n](const Tensor& dout, InputGrads& g) {
    // d/da (a − b)² = 2(a − b); the mean divides by the element count.
    const double scale = reduction == Reduction::mean ? 2.0 / static_cast<double>(n) : 2.0;
    const Tensor grad = (a - b) * dout * scale;
    if (g.needs(0)) g[0] = grad;
    if (g.needs(1)) g[1] = -grad;
  });
}

}  // namespace gradformer

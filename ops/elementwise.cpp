// Elementwise ops: each forward kernel with its backward right below it. Backward formulas run with
// recording off, so they are written with the ops themselves; broadcasting is undone by kernels::sum_to.
#include "ops/elementwise.h"

#include "autograd/engine.h"
#include "ops/kernels.h"
#include "ops/onednn.h"
#include "ops/selection.h"

#include <cmath>
#include <functional>
#include <numbers>

namespace gradformer {
namespace {

using kernels::sum_to;

void check_same_dtype(const Tensor& a, const Tensor& b, std::string_view op) {
  if (a.dtype() != b.dtype())
    fail<DTypeError>(op, "operands have different dtypes: {} {} and {} {}", dtype_name(a.dtype()),
                     shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
}

// A floating binary op over the broadcast shape; f is the scalar formula.
template <class F>
Tensor binary(const Tensor& a, const Tensor& b, std::string_view op, F f) {
  check_same_dtype(a, b, op);
  return visit_floating(a.dtype(), op, [&]<class T>(std::type_identity<T>) {
    return kernels::map2<T, T, T>(a, b, op, [&f](T x, T y) { return f(x, y); });
  });
}

template <class F>
Tensor unary(const Tensor& x, std::string_view op, F f) {
  return visit_floating(x.dtype(), op, [&]<class T>(std::type_identity<T>) {
    return kernels::map<T, T>(x, [&f](T v) { return f(v); });
  });
}

// The local derivative f'(x) of a unary op as a plain kernel: backward multiplies it into dout with the ops.
template <class F>
Tensor slope(const Tensor& x, std::string_view op, F f) {
  return unary(x, op, f);
}

template <class Cmp>
Tensor compare(const Tensor& a, const Tensor& b, std::string_view op, Cmp cmp) {
  check_same_dtype(a, b, op);
  return visit_dtype(a.dtype(), op, [&]<class T>(std::type_identity<T>) {
    return kernels::map2<bool, T, T>(a, b, op, [&cmp](T x, T y) { return cmp(x, y); });
  });
}

template <class Cmp>
Tensor compare(const Tensor& a, double b, std::string_view op, Cmp cmp) {
  return visit_dtype(a.dtype(), op, [&]<class T>(std::type_identity<T>) {
    if constexpr (std::is_floating_point_v<T>) {
      const T s = static_cast<T>(b);
      return kernels::map<bool, T>(a, [&cmp, s](T x) { return cmp(x, s); });
    } else {
      return kernels::map<bool, T>(a, [&cmp, b](T x) { return cmp(static_cast<double>(x), b); });
    }
  });
}

void check_mask(const Tensor& t, std::string_view op) {
  if (t.dtype() != DType::boolean)
    fail<DTypeError>(op, "expects bool masks, got {} {}", dtype_name(t.dtype()), shape_str(t.shape()));
}

// max/min propagate NaN as PyTorch does (x != x only for NaN).
template <class T> T max_nan(T x, T y) { return (x != x || x > y) ? x : y; }
template <class T> T min_nan(T x, T y) { return (x != x || x < y) ? x : y; }

// The share of the gradient that goes to a: 1 where a wins, 0 where b wins, 1/2 on ties (PyTorch's
// maximum/minimum backward); b gets the rest.
template <bool kMax>
Tensor winner_share(const Tensor& a, const Tensor& b, std::string_view op) {
  return binary(a, b, op, [](auto x, auto y) {
    using T = decltype(x);
    if (x == y) return T(0.5);
    return (kMax ? x > y : x < y) ? T(1) : T(0);
  });
}

// gelu(x) = x Phi(x), Phi the standard normal CDF; the tanh form replaces Phi(x) by
// (1 + tanh(k (x + c x^3))) / 2 with k = sqrt(2 / pi), c = 0.044715 (Hendrycks & Gimpel).
template <class T> T gelu_erf(T x) { return x * T(0.5) * (1 + std::erf(x * T(std::numbers::sqrt2 / 2))); }
template <class T> T gelu_erf_slope(T x) {
  const T cdf = T(0.5) * (1 + std::erf(x * T(std::numbers::sqrt2 / 2)));
  const T pdf = std::exp(T(-0.5) * x * x) * T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
  return cdf + x * pdf;
}
constexpr double kGeluK = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;  // sqrt(2 / pi)
constexpr double kGeluC = 0.044715;
template <class T> T gelu_tanh(T x) {
  return T(0.5) * x * (1 + std::tanh(T(kGeluK) * (x + T(kGeluC) * x * x * x)));
}
template <class T> T gelu_tanh_slope(T x) {
  const T t = std::tanh(T(kGeluK) * (x + T(kGeluC) * x * x * x));
  return T(0.5) * (1 + t) + T(0.5) * x * (1 - t * t) * T(kGeluK) * (1 + T(3 * kGeluC) * x * x);
}

constexpr double kSoftplusThreshold = 20.0;

// oneDNN's JIT eltwise kernels for large f32 tensors: they vectorise erf, tanh and exp, which the loops above
// call from libm one element at a time. Measured forward on 4096 x 1024 f32, 2 cores shared with other builds,
// loop -> oneDNN: gelu 188 -> 26 ms, gelu-tanh 397 -> 57 ms, tanh 378 -> 40 ms, sigmoid 90 -> 19 ms.
// f64 (gradient checks) and small tensors keep the loops, whose results the tests compare with oneDNN's.
constexpr int64_t kDnnlMinElements = 1 << 14;  // below this, setting up the primitive outweighs the loop

bool use_dnnl(const Tensor& x) { return x.dtype() == DType::f32 && x.numel() >= kDnnlMinElements; }

dnnl::memory::desc flat_f32(int64_t n) {
  return dnnl::memory::desc({n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a);
}

dnnl::eltwise_forward::primitive_desc eltwise_forward_pd(dnnl::algorithm algorithm, int64_t n) {
  const dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_training, algorithm, flat_f32(n), 0.f, 0.f);
  return dnnl::eltwise_forward::primitive_desc(desc, onednn::engine());
}

// y = f(x) for f32 x; oneDNN's primitive cache makes the repeated primitive construction cheap.
Tensor dnnl_forward(const Tensor& x, dnnl::algorithm algorithm) {
  const Tensor src = x.detach().contiguous();
  Tensor out = empty(x.shape(), DType::f32);
  const int64_t n = x.numel();
  dnnl::stream& stream = onednn::stream();
  dnnl::eltwise_forward(eltwise_forward_pd(algorithm, n))
      .execute(stream, {{DNNL_ARG_SRC, dnnl::memory(flat_f32(n), onednn::engine(), src.raw_data())},
                        {DNNL_ARG_DST, dnnl::memory(flat_f32(n), onednn::engine(), out.raw_data())}});
  stream.wait();
  return out;
}

// dx = dout * f'(x) for f32 x and dout, fused.
Tensor dnnl_backward(const Tensor& x, const Tensor& dout, dnnl::algorithm algorithm) {
  const Tensor src = x.contiguous(), diff_dst = dout.contiguous();
  Tensor diff_src = empty(x.shape(), DType::f32);
  const int64_t n = x.numel();
  const dnnl::eltwise_backward::desc desc(algorithm, flat_f32(n), flat_f32(n), 0.f, 0.f);
  const dnnl::eltwise_backward::primitive_desc pd(desc, onednn::engine(), eltwise_forward_pd(algorithm, n));
  dnnl::stream& stream = onednn::stream();
  dnnl::eltwise_backward(pd).execute(
      stream, {{DNNL_ARG_SRC, dnnl::memory(flat_f32(n), onednn::engine(), src.raw_data())},
               {DNNL_ARG_DIFF_DST, dnnl::memory(flat_f32(n), onednn::engine(), diff_dst.raw_data())},
               {DNNL_ARG_DIFF_SRC, dnnl::memory(flat_f32(n), onednn::engine(), diff_src.raw_data())}});
  stream.wait();
  return diff_src;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::add), [](auto x, auto y) { return x + y; });
  return record(out, Op::add, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout, sa);
    if (g.needs(1)) g[1] = sum_to(dout, sb);
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::sub), [](auto x, auto y) { return x - y; });
  return record(out, Op::sub, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout, sa);
    if (g.needs(1)) g[1] = sum_to(neg(dout), sb);
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::mul), [](auto x, auto y) { return x * y; });
  return record(out, Op::mul, {a, b}, [a = a.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout * b, a.shape());
    if (g.needs(1)) g[1] = sum_to(dout * a, b.shape());
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::div), [](auto x, auto y) { return x / y; });
  return record(out, Op::div, {a, b}, [a = a.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    // d(a/b)/da = 1/b, d(a/b)/db = -a/b²
    if (g.needs(0)) g[0] = sum_to(dout / b, a.shape());
    if (g.needs(1)) g[1] = sum_to(neg(dout * a / (b * b)), b.shape());
  });
}

Tensor neg(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::neg), [](auto v) { return -v; });
  return record(out, Op::neg, {x}, [](const Tensor& dout, InputGrads& g) { g[0] = neg(dout); });
}

Tensor exp(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::exp), [](auto v) { return std::exp(v); });
  return record(out, Op::exp, {x}, [y = out.detach()](const Tensor& dout, InputGrads& g) { g[0] = dout * y; });
}

Tensor log(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::log), [](auto v) { return std::log(v); });
  return record(out, Op::log, {x}, [x = x.detach()](const Tensor& dout, InputGrads& g) { g[0] = dout / x; });
}

Tensor add(const Tensor& a, double b) {
  Tensor out = unary(a, op_name(Op::add), [b](auto v) { return v + static_cast<decltype(v)>(b); });
  return record(out, Op::add, {a}, [](const Tensor& dout, InputGrads& g) { g[0] = dout; });
}

Tensor mul(const Tensor& a, double b) {
  Tensor out = unary(a, op_name(Op::mul), [b](auto v) { return v * static_cast<decltype(v)>(b); });
  return record(out, Op::mul, {a}, [b](const Tensor& dout, InputGrads& g) { g[0] = mul(dout, b); });
}

Tensor rsub(double a, const Tensor& b) {
  Tensor out = unary(b, op_name(Op::rsub), [a](auto v) { return static_cast<decltype(v)>(a) - v; });
  return record(out, Op::rsub, {b}, [](const Tensor& dout, InputGrads& g) { g[0] = neg(dout); });
}

Tensor rdiv(double a, const Tensor& b) {
  Tensor out = unary(b, op_name(Op::rdiv), [a](auto v) { return static_cast<decltype(v)>(a) / v; });
  return record(out, Op::rdiv, {b}, [y = out.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = neg(dout * y / b);  // d(a/b)/db = -a/b² = -(a/b)/b
  });
}

Tensor abs(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::abs), [](auto v) { return std::abs(v); });
  return record(out, Op::abs, {x}, [x = x.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = dout * slope(x, op_name(Op::abs), [](auto v) { return static_cast<decltype(v)>((v > 0) - (v < 0)); });
  });
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::sqrt), [](auto v) { return std::sqrt(v); });
  return record(out, Op::sqrt, {x}, [y = out.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = dout / (y * 2.0);  // d sqrt(x) = 1 / (2 sqrt(x))
  });
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::rsqrt), [](auto v) { return 1 / std::sqrt(v); });
  return record(out, Op::rsqrt, {x}, [y = out.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = dout * (y * y * y) * -0.5;  // d x^(-1/2) = -x^(-3/2) / 2
  });
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor out =
      unary(x, op_name(Op::pow), [exponent](auto v) { return std::pow(v, static_cast<decltype(v)>(exponent)); });
  return record(out, Op::pow, {x}, [x = x.detach(), exponent](const Tensor& dout, InputGrads& g) {
    // x^0 is constant; the general formula would give 0 * x^-1, which is NaN at x = 0.
    g[0] = exponent == 0.0 ? zeros(x.shape(), x.dtype()) : dout * pow(x, exponent - 1.0) * exponent;
  });
}

Tensor tanh(const Tensor& x) {
  Tensor out = use_dnnl(x) ? dnnl_forward(x, dnnl::algorithm::eltwise_tanh)
                           : unary(x, op_name(Op::tanh), [](auto v) { return std::tanh(v); });
  return record(out, Op::tanh, {x}, [y = out.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = dout * slope(y, op_name(Op::tanh), [](auto v) { return 1 - v * v; });
  });
}

Tensor sigmoid(const Tensor& x) {
  // exp(-v) overflows to inf for v < -88 (f32), and 1 / inf = 0 is the right limit.
  Tensor out = use_dnnl(x) ? dnnl_forward(x, dnnl::algorithm::eltwise_logistic)
                           : unary(x, op_name(Op::sigmoid), [](auto v) { return 1 / (1 + std::exp(-v)); });
  return record(out, Op::sigmoid, {x}, [y = out.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = dout * slope(y, op_name(Op::sigmoid), [](auto v) { return v * (1 - v); });
  });
}

Tensor relu(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::relu), [](auto v) { return v > 0 ? v : decltype(v)(0); });
  // Backward needs only where x was positive: a bool mask, a quarter of an f32 x's bytes. Saving x itself would
  // keep a feed-forward block's widest activation alive until backward.
  const Tensor positive = grad_mode_enabled() && x.requires_grad() ? gt(x, 0.0) : Tensor{};
  return record(out, Op::relu, {x}, [positive](const Tensor& dout, InputGrads& g) {
    g[0] = where(positive, dout, zeros({}, dout.dtype()));
  });
}

Tensor gelu(const Tensor& x, GeluApproximation approximate) {
  const bool use_tanh = approximate == GeluApproximation::tanh;
  const dnnl::algorithm algorithm = use_tanh ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_gelu_erf;
  Tensor out = use_dnnl(x) ? dnnl_forward(x, algorithm)
               : use_tanh  ? unary(x, op_name(Op::gelu), [](auto v) { return gelu_tanh(v); })
                           : unary(x, op_name(Op::gelu), [](auto v) { return gelu_erf(v); });
  return record(out, Op::gelu, {x}, [x = x.detach(), use_tanh, algorithm](const Tensor& dout, InputGrads& g) {
    if (use_dnnl(x) && dout.dtype() == DType::f32) {
      g[0] = dnnl_backward(x, dout, algorithm);
      return;
    }
    g[0] = dout * (use_tanh ? slope(x, op_name(Op::gelu), [](auto v) { return gelu_tanh_slope(v); })
                            : slope(x, op_name(Op::gelu), [](auto v) { return gelu_erf_slope(v); }));
  });
}

Tensor softplus(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::softplus), [](auto v) {
    return v > decltype(v)(kSoftplusThreshold) ? v : std::log1p(std::exp(v));
  });
  return record(out, Op::softplus, {x}, [x = x.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = dout * slope(x, op_name(Op::softplus), [](auto v) {
      using T = decltype(v);
      return v > T(kSoftplusThreshold) ? T(1) : 1 / (1 + std::exp(-v));  // the sigmoid
    });
  });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::maximum), [](auto x, auto y) { return max_nan(x, y); });
  return record(out, Op::maximum, {a, b}, [a = a.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    const Tensor share = winner_share<true>(a, b, op_name(Op::maximum));
    if (g.needs(0)) g[0] = sum_to(dout * share, a.shape());
    if (g.needs(1)) g[1] = sum_to(dout * (1.0 - share), b.shape());
  });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::minimum), [](auto x, auto y) { return min_nan(x, y); });
  return record(out, Op::minimum, {a, b}, [a = a.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    const Tensor share = winner_share<false>(a, b, op_name(Op::minimum));
    if (g.needs(0)) g[0] = sum_to(dout * share, a.shape());
    if (g.needs(1)) g[1] = sum_to(dout * (1.0 - share), b.shape());
  });
}

Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, op_name(Op::eq), std::equal_to<>{}); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, op_name(Op::ne), std::not_equal_to<>{}); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, op_name(Op::lt), std::less<>{}); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, op_name(Op::le), std::less_equal<>{}); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, op_name(Op::gt), std::greater<>{}); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, op_name(Op::ge), std::greater_equal<>{}); }
Tensor eq(const Tensor& a, double b) { return compare(a, b, op_name(Op::eq), std::equal_to<>{}); }
Tensor ne(const Tensor& a, double b) { return compare(a, b, op_name(Op::ne), std::not_equal_to<>{}); }
Tensor lt(const Tensor& a, double b) { return compare(a, b, op_name(Op::lt), std::less<>{}); }
Tensor le(const Tensor& a, double b) { return compare(a, b, op_name(Op::le), std::less_equal<>{}); }
Tensor gt(const Tensor& a, double b) { return compare(a, b, op_name(Op::gt), std::greater<>{}); }
Tensor ge(const Tensor& a, double b) { return compare(a, b, op_name(Op::ge), std::greater_equal<>{}); }

Tensor logical_and(const Tensor& a, const Tensor& b) {
  check_mask(a, op_name(Op::logical_and));
  check_mask(b, op_name(Op::logical_and));
  return kernels::map2<bool, bool, bool>(a, b, op_name(Op::logical_and), [](bool x, bool y) { return x && y; });
}

Tensor logical_or(const Tensor& a, const Tensor& b) {
  check_mask(a, op_name(Op::logical_or));
  check_mask(b, op_name(Op::logical_or));
  return kernels::map2<bool, bool, bool>(a, b, op_name(Op::logical_or), [](bool x, bool y) { return x || y; });
}

Tensor logical_not(const Tensor& x) {
  check_mask(x, op_name(Op::logical_not));
  return kernels::map<bool, bool>(x, [](bool v) { return !v; });
}

}  // namespace gradformer

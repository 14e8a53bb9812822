// Elementwise ops: each forward kernel with its backward right below it. Backward formulas are written with the
// ops themselves, so that a backward run with recording on (create_graph) records them and can be differentiated
// again; where a formula uses a fast kernel (a local slope f'(x)), the kernel runs only with recording off, and
// the recorded path spells the slope out with ops. Broadcasting is undone by sum_to_size.
#include "ops/elementwise.h"

#include "autograd/engine.h"
#include "ops/kernels.h"
#include "ops/onednn.h"
#include "ops/reduce.h"
#include "ops/selection.h"

#include <cmath>
#include <functional>
#include <numbers>

namespace gradformer {
namespace {

Tensor sum_to(const Tensor& t, const Shape& shape) { return sum_to_size(t, shape); }

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

// The slopes of gelu written with ops, for a backward that records (create_graph). The erf form's slope is
// Phi(x) + x phi(x); Phi is a node of its own whose derivative is phi(x) = exp(-x²/2) / sqrt(2 pi), so every
// further derivative is ops again.
Tensor normal_pdf(const Tensor& x) { return exp(x * x * -0.5) * (std::numbers::inv_sqrtpi / std::numbers::sqrt2); }

Tensor normal_cdf(const Tensor& x) {
  Tensor cdf = unary(x, op_name(Op::gelu), [](auto v) {
    using T = decltype(v);
    return T(0.5) * (1 + std::erf(v * T(std::numbers::sqrt2 / 2)));
  });
  return record(cdf, Op::gelu, {saved(x)}, [](const Tensor& dout, InputGrads& g) { g[0] = dout * normal_pdf(g.saved(0)); });
}

Tensor gelu_erf_slope_recorded(const Tensor& x) { return normal_cdf(x) + x * normal_pdf(x); }

// d/dx [x (1 + t) / 2] with t = tanh(k (x + c x³)): (1 + t) / 2 + x (1 - t²) k (1 + 3 c x²) / 2.
Tensor gelu_tanh_slope_recorded(const Tensor& x) {
  const Tensor t = tanh((x + x * x * x * kGeluC) * kGeluK);
  return (t + 1.0) * 0.5 + x * (1.0 - t * t) * (x * x * (3 * kGeluC) + 1.0) * (0.5 * kGeluK);
}

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
      .execute(stream, {{DNNL_ARG_SRC, dnnl::memory(flat_f32(n), onednn::engine(), const_cast<std::byte*>(src.read_only_raw_data()))},
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
      stream, {{DNNL_ARG_SRC, dnnl::memory(flat_f32(n), onednn::engine(), const_cast<std::byte*>(src.read_only_raw_data()))},
               {DNNL_ARG_DIFF_DST, dnnl::memory(flat_f32(n), onednn::engine(), const_cast<std::byte*>(diff_dst.read_only_raw_data()))},
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
  return record(out, Op::mul, {saved(a), saved(b)}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout * g.saved(1), sa);
    if (g.needs(1)) g[1] = sum_to(dout * g.saved(0), sb);
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::div), [](auto x, auto y) { return x / y; });
  return record(out, Op::div, {saved(a), saved(b)}, [](const Tensor& dout, InputGrads& g) {
    // d(a/b)/da = 1/b, d(a/b)/db = -a/b²
    const Tensor a = g.saved(0), b = g.saved(1);
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
  return record(saved(out), Op::exp, {x}, [](const Tensor& dout, InputGrads& g) { g[0] = dout * g.saved_output(); });
}

Tensor log(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::log), [](auto v) { return std::log(v); });
  return record(out, Op::log, {saved(x)}, [](const Tensor& dout, InputGrads& g) { g[0] = dout / g.saved(0); });
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
  return record(saved(out), Op::rdiv, {saved(b)}, [](const Tensor& dout, InputGrads& g) {
    g[0] = neg(dout * g.saved_output() / g.saved(0));  // d(a/b)/db = -a/b² = -(a/b)/b
  });
}

Tensor abs(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::abs), [](auto v) { return std::abs(v); });
  return record(out, Op::abs, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    // sign(x) is constant wherever it is differentiable: a kernel serves the recorded path too.
    g[0] = dout * slope(g.saved(0), op_name(Op::abs), [](auto v) { return static_cast<decltype(v)>((v > 0) - (v < 0)); });
  });
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::sqrt), [](auto v) { return std::sqrt(v); });
  return record(saved(out), Op::sqrt, {x}, [](const Tensor& dout, InputGrads& g) {
    g[0] = dout / (g.saved_output() * 2.0);  // d sqrt(x) = 1 / (2 sqrt(x))
  });
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::rsqrt), [](auto v) { return 1 / std::sqrt(v); });
  return record(saved(out), Op::rsqrt, {x}, [](const Tensor& dout, InputGrads& g) {
    const Tensor y = g.saved_output();
    g[0] = dout * (y * y * y) * -0.5;  // d x^(-1/2) = -x^(-3/2) / 2
  });
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor out = unary(x, op_name(Op::pow), [exponent](auto v) { return std::pow(v, static_cast<decltype(v)>(exponent)); });
  return record(out, Op::pow, {saved(x)}, [exponent](const Tensor& dout, InputGrads& g) {
    // x^0 is constant; the general formula would give 0 * x^-1, which is NaN at x = 0.
    if (exponent == 0.0) {
      g.declare_zero(0);
      return;
    }
    g[0] = dout * pow(g.saved(0), exponent - 1.0) * exponent;
  });
}

Tensor tanh(const Tensor& x) {
  Tensor out = use_dnnl(x) ? dnnl_forward(x, dnnl::algorithm::eltwise_tanh)
                           : unary(x, op_name(Op::tanh), [](auto v) { return std::tanh(v); });
  return record(saved(out), Op::tanh, {x}, [](const Tensor& dout, InputGrads& g) {
    const Tensor y = g.saved_output();
    g[0] = grad_mode_enabled() ? dout * (1.0 - y * y) : dout * slope(y, op_name(Op::tanh), [](auto v) { return 1 - v * v; });
  });
}

Tensor sigmoid(const Tensor& x) {
  // exp(-v) overflows to inf for v < -88 (f32), and 1 / inf = 0 is the right limit.
  Tensor out = use_dnnl(x) ? dnnl_forward(x, dnnl::algorithm::eltwise_logistic)
                           : unary(x, op_name(Op::sigmoid), [](auto v) { return 1 / (1 + std::exp(-v)); });
  return record(saved(out), Op::sigmoid, {x}, [](const Tensor& dout, InputGrads& g) {
    const Tensor y = g.saved_output();
    g[0] = grad_mode_enabled() ? dout * (y * (1.0 - y)) : dout * slope(y, op_name(Op::sigmoid), [](auto v) { return v * (1 - v); });
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
  return record(out, Op::gelu, {saved(x)}, [use_tanh, algorithm](const Tensor& dout, InputGrads& g) {
    const Tensor x = g.saved(0);
    if (grad_mode_enabled()) {
      g[0] = dout * (use_tanh ? gelu_tanh_slope_recorded(x) : gelu_erf_slope_recorded(x));
      return;
    }
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
  return record(out, Op::softplus, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    const Tensor x = g.saved(0);
    if (grad_mode_enabled()) {  // beyond the threshold sigmoid(x) is 1 to within 2e-9
      g[0] = dout * sigmoid(x);
      return;
    }
    g[0] = dout * slope(x, op_name(Op::softplus), [](auto v) {
      using T = decltype(v);
      return v > T(kSoftplusThreshold) ? T(1) : 1 / (1 + std::exp(-v));  // the sigmoid
    });
  });
}

Tensor silu(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::silu), [](auto v) { return v / (1 + std::exp(-v)); });
  return record(out, Op::silu, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    const Tensor x = g.saved(0);
    if (grad_mode_enabled()) {  // d(x s(x)) = s + x s (1 - s), with s = sigmoid(x) a node of its own
      const Tensor s = sigmoid(x);
      g[0] = dout * (s * (x * (1.0 - s) + 1.0));
      return;
    }
    g[0] = dout * slope(x, op_name(Op::silu), [](auto v) {
      const auto s = 1 / (1 + std::exp(-v));
      return s * (1 + v * (1 - s));
    });
  });
}

Tensor sin(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::sin), [](auto v) { return std::sin(v); });
  return record(out, Op::sin, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    const Tensor x = g.saved(0);
    g[0] = grad_mode_enabled() ? dout * cos(x) : dout * slope(x, op_name(Op::sin), [](auto v) { return std::cos(v); });
  });
}

Tensor cos(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::cos), [](auto v) { return std::cos(v); });
  return record(out, Op::cos, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    const Tensor x = g.saved(0);
    g[0] = grad_mode_enabled() ? neg(dout * sin(x))
                               : dout * slope(x, op_name(Op::cos), [](auto v) { return -std::sin(v); });
  });
}

Tensor erf(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::erf), [](auto v) { return std::erf(v); });
  return record(out, Op::erf, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    const Tensor x = g.saved(0);  // d erf(x) = 2 / sqrt(pi) e^(-x²)
    if (grad_mode_enabled()) {
      g[0] = dout * (exp(x * x * -1.0) * (2 * std::numbers::inv_sqrtpi));
      return;
    }
    g[0] = dout * slope(x, op_name(Op::erf), [](auto v) {
      using T = decltype(v);
      return T(2 * std::numbers::inv_sqrtpi) * std::exp(-v * v);
    });
  });
}

Tensor log1p(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::log1p), [](auto v) { return std::log1p(v); });
  return record(out, Op::log1p, {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    g[0] = dout / (g.saved(0) + 1.0);  // ops either way, so recorded under create_graph
  });
}

Tensor expm1(const Tensor& x) {
  Tensor out = unary(x, op_name(Op::expm1), [](auto v) { return std::expm1(v); });
  return record(saved(out), Op::expm1, {x}, [](const Tensor& dout, InputGrads& g) {
    g[0] = dout * (g.saved_output() + 1.0);  // d(e^x - 1) = e^x; ops either way
  });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::maximum), [](auto x, auto y) { return max_nan(x, y); });
  return record(out, Op::maximum, {saved(a), saved(b)}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    const Tensor share = winner_share<true>(g.saved(0), g.saved(1), op_name(Op::maximum));  // constant where differentiable
    if (g.needs(0)) g[0] = sum_to(dout * share, sa);
    if (g.needs(1)) g[1] = sum_to(dout * (1.0 - share), sb);
  });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, op_name(Op::minimum), [](auto x, auto y) { return min_nan(x, y); });
  return record(out, Op::minimum, {saved(a), saved(b)}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    const Tensor share = winner_share<false>(g.saved(0), g.saved(1), op_name(Op::minimum));  // constant where differentiable
    if (g.needs(0)) g[0] = sum_to(dout * share, sa);
    if (g.needs(1)) g[1] = sum_to(dout * (1.0 - share), sb);
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

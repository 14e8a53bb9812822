// Elementwise ops: each forward kernel with its backward right below it. Backward formulas run with
// recording off, so they are written with the ops themselves; broadcasting is undone by kernels::sum_to.
#include "ops/elementwise.h"

#include "autograd/engine.h"
#include "ops/kernels.h"

#include <cmath>

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

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "add", [](auto x, auto y) { return x + y; });
  return record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout, sa);
    if (g.needs(1)) g[1] = sum_to(dout, sb);
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "sub", [](auto x, auto y) { return x - y; });
  return record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout, sa);
    if (g.needs(1)) g[1] = sum_to(neg(dout), sb);
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "mul", [](auto x, auto y) { return x * y; });
  return record(out, "mul", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    if (g.needs(0)) g[0] = sum_to(dout * b, a.shape());
    if (g.needs(1)) g[1] = sum_to(dout * a, b.shape());
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "div", [](auto x, auto y) { return x / y; });
  return record(out, "div", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    // d(a/b)/da = 1/b, d(a/b)/db = -a/b²
    if (g.needs(0)) g[0] = sum_to(dout / b, a.shape());
    if (g.needs(1)) g[1] = sum_to(neg(dout * a / (b * b)), b.shape());
  });
}

Tensor neg(const Tensor& x) {
  Tensor out = unary(x, "neg", [](auto v) { return -v; });
  return record(out, "neg", {x}, [](const Tensor& dout, InputGrads& g) { g[0] = neg(dout); });
}

Tensor exp(const Tensor& x) {
  Tensor out = unary(x, "exp", [](auto v) { return std::exp(v); });
  return record(out, "exp", {x}, [y = out.detach()](const Tensor& dout, InputGrads& g) { g[0] = dout * y; });
}

Tensor log(const Tensor& x) {
  Tensor out = unary(x, "log", [](auto v) { return std::log(v); });
  return record(out, "log", {x}, [x = x.detach()](const Tensor& dout, InputGrads& g) { g[0] = dout / x; });
}

Tensor add(const Tensor& a, double b) {
  Tensor out = unary(a, "add", [b](auto v) { return v + static_cast<decltype(v)>(b); });
  return record(out, "add", {a}, [](const Tensor& dout, InputGrads& g) { g[0] = dout; });
}

Tensor mul(const Tensor& a, double b) {
  Tensor out = unary(a, "mul", [b](auto v) { return v * static_cast<decltype(v)>(b); });
  return record(out, "mul", {a}, [b](const Tensor& dout, InputGrads& g) { g[0] = mul(dout, b); });
}

Tensor rsub(double a, const Tensor& b) {
  Tensor out = unary(b, "rsub", [a](auto v) { return static_cast<decltype(v)>(a) - v; });
  return record(out, "rsub", {b}, [](const Tensor& dout, InputGrads& g) { g[0] = neg(dout); });
}

Tensor rdiv(double a, const Tensor& b) {
  Tensor out = unary(b, "rdiv", [a](auto v) { return static_cast<decltype(v)>(a) / v; });
  return record(out, "rdiv", {b}, [y = out.detach(), b = b.detach()](const Tensor& dout, InputGrads& g) {
    g[0] = neg(dout * y / b);  // d(a/b)/db = -a/b² = -(a/b)/b
  });
}

}  // namespace gradformer

// Unary math, activations, maximum/minimum, comparisons and logical ops: values against hand-computed or
// PyTorch-printed numbers, the gradients the op table cannot reach (kinks, ties, thresholds), and errors.
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numbers>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

Tensor leaf(std::vector<double> values) {
  const auto n = static_cast<int64_t>(values.size());
  Tensor t = from_vector(values, {n});
  t.requires_grad_();
  return t;
}

std::vector<double> grad_of(const Tensor& out, const Tensor& x) {
  sum(out).backward();
  return x.grad().to_vector<double>();
}

}  // namespace

TEST_CASE("elementwise: gelu at known points, erf and tanh forms") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor x = tensor<double>({1.0, 0.0, -1.0}).to(dtype);
    const double tol = dtype == DType::f64 ? 1e-15 : 1e-6;
    const auto erf_form = gelu(x).to_vector<double>();
    CHECK(erf_form[0] == doctest::Approx(0.8413447460685429).epsilon(tol));
    CHECK(erf_form[1] == 0.0);
    CHECK(erf_form[2] == doctest::Approx(-0.15865525393145707).epsilon(tol));
    const auto tanh_form = gelu(x, GeluApproximation::tanh).to_vector<double>();
    CHECK(tanh_form[0] == doctest::Approx(0.8411919906082768).epsilon(tol));
    CHECK(tanh_form[2] == doctest::Approx(-0.15880800939172324).epsilon(tol));
  }
  // d gelu / dx at 0 is Phi(0) = 1/2 in both forms.
  const Tensor x = leaf({0.0});
  CHECK(grad_of(gelu(x), x)[0] == doctest::Approx(0.5));
}

TEST_CASE("elementwise: the oneDNN f32 path of gelu, tanh and sigmoid agrees with the f64 loops") {
  // Large enough for oneDNN (at least 2^14 elements); values up to +-10 reach the saturated tails.
  Generator gen(7);
  const Tensor x64 = uniform({128, 160}, -10.0, 10.0, gen, DType::f64);
  const Tensor dout64 = randn({128, 160}, gen, DType::f64);
  const Tensor x32 = x64.to(DType::f32), dout32 = dout64.to(DType::f32);
  const Tensor rounded = x32.to(DType::f64);
  CHECK(testing::max_abs_difference(tanh(x32), tanh(rounded)) < 1e-6);
  CHECK(testing::max_abs_difference(sigmoid(x32), sigmoid(rounded)) < 1e-6);
  for (GeluApproximation mode : {GeluApproximation::none, GeluApproximation::tanh}) {
    CAPTURE(static_cast<int>(mode));
    CHECK(testing::max_abs_difference(gelu(x32, mode), gelu(rounded, mode)) < 1e-5);
    Tensor a = x32.detach(), b = rounded.detach();
    a.requires_grad_();
    b.requires_grad_();
    gelu(a, mode).backward(dout32);
    gelu(b, mode).backward(dout32.to(DType::f64));
    CHECK(testing::max_abs_difference(a.grad(), b.grad()) < 1e-5 * (1.0 + testing::max_abs(b.grad())));
  }
}

TEST_CASE("elementwise: sigmoid and tanh values and gradients") {
  const Tensor x = leaf({0.0, 2.0, -800.0});
  const Tensor y = sigmoid(x);
  const auto v = y.to_vector<double>();
  CHECK(v[0] == 0.5);
  CHECK(v[1] == doctest::Approx(0.8807970779778823).epsilon(1e-15));
  CHECK(v[2] == 0.0);  // exp(800) overflows; the limit is still right
  const auto dx = grad_of(y, x);
  CHECK(dx[0] == doctest::Approx(0.25));
  CHECK(dx[2] == 0.0);

  const Tensor t = leaf({0.5, 0.0});
  const Tensor z = tanh(t);
  CHECK(z.at({0}) == doctest::Approx(0.46211715726000974).epsilon(1e-15));
  const auto dt = grad_of(z, t);
  CHECK(dt[0] == doctest::Approx(1.0 - 0.46211715726000974 * 0.46211715726000974).epsilon(1e-15));
  CHECK(dt[1] == 1.0);
}

TEST_CASE("elementwise: softplus stays finite and equals x above the threshold") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor x = tensor<double>({100.0, 1000.0, 0.0, -100.0}).to(dtype);
    const auto v = softplus(x).to_vector<double>();
    CHECK(v[0] == 100.0);
    CHECK(v[1] == 1000.0);
    CHECK(v[2] == doctest::Approx(std::log(2.0)).epsilon(1e-6));
    CHECK(std::isfinite(v[3]));
    CHECK(v[3] >= 0.0);
  }
  const Tensor x = leaf({1000.0, 0.0});
  const auto dx = grad_of(softplus(x), x);
  CHECK(dx[0] == 1.0);
  CHECK(dx[1] == doctest::Approx(0.5));
}

TEST_CASE("elementwise: silu, sin, cos, erf, log1p and expm1 at known points, with their slopes") {
  // silu, sin and cos against their formulas through libm; erf(1) and erf(2) as tabulated.
  const Tensor points = tensor<double>({-1.0, 0.0, 2.0});
  CHECK(silu(points).to_vector<double>() ==
        std::vector<double>{-1.0 / (1.0 + std::exp(1.0)), 0.0, 2.0 / (1.0 + std::exp(-2.0))});
  CHECK(sin(points).to_vector<double>() == std::vector<double>{std::sin(-1.0), 0.0, std::sin(2.0)});
  CHECK(cos(points).to_vector<double>() == std::vector<double>{std::cos(-1.0), 1.0, std::cos(2.0)});
  CHECK(erf(points).to_vector<double>()[0] == doctest::Approx(-0.8427007929497149));
  CHECK(erf(points).to_vector<double>()[2] == doctest::Approx(0.9953222650189527));
  // Near zero, log1p and expm1 keep the digits that log(1 + x) and exp(x) - 1 lose.
  CHECK(log1p(tensor<double>({1e-12})).item() == doctest::Approx(1e-12).epsilon(1e-12));
  CHECK(expm1(tensor<double>({1e-12})).item() == doctest::Approx(1e-12).epsilon(1e-12));

  const Tensor x = leaf({0.0});
  CHECK(grad_of(silu(x), x)[0] == doctest::Approx(0.5));  // s(0) (1 + 0) = 1/2
  const Tensor y = leaf({0.0});
  CHECK(grad_of(erf(y), y)[0] == doctest::Approx(2.0 * std::numbers::inv_sqrtpi));
  const Tensor z = leaf({0.0});
  CHECK(grad_of(cos(z), z)[0] == 0.0);
}

TEST_CASE("elementwise: relu and abs at negatives, zero and positives") {
  const Tensor x = leaf({-2.0, -0.5, 0.0, 3.0});
  const Tensor y = relu(x);
  CHECK(y.to_vector<double>() == std::vector<double>{0.0, 0.0, 0.0, 3.0});
  CHECK(grad_of(y, x) == std::vector<double>{0.0, 0.0, 0.0, 1.0});  // 0 at the kink, as PyTorch

  const Tensor a = leaf({-2.0, 0.0, 3.0});
  const Tensor b = abs(a);
  CHECK(b.to_vector<double>() == std::vector<double>{2.0, 0.0, 3.0});
  CHECK(grad_of(b, a) == std::vector<double>{-1.0, 0.0, 1.0});
}

TEST_CASE("elementwise: relu's backward keeps a bool mask, not its input") {
  // A feed-forward block's widest activation is relu's input; backward needs only where it was positive.
  const Tensor w = leaf({-2.0, 1.0, 0.5, -0.25});
  Tensor hidden = w * 3.0;
  const std::weak_ptr<Storage> hidden_storage = hidden.storage();
  const Tensor y = relu(hidden);
  hidden = Tensor{};
  CHECK(hidden_storage.expired());
  CHECK(grad_of(y, w) == std::vector<double>{0.0, 3.0, 3.0, 0.0});
  NoGradGuard no_grad;
  CHECK(relu(w).to_vector<double>() == std::vector<double>{0.0, 1.0, 0.5, 0.0});
}

TEST_CASE("elementwise: where and masked_fill over masks, broadcast masks and every dtype they take") {
  const Tensor mask = from_vector<bool>({1, 0, 0, 1, 1, 0}, {2, 3});
  const Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}), b = from_vector<double>({-1, -2, -3, -4, -5, -6}, {2, 3});
  CHECK(where(mask, a, b).to_vector<double>() == std::vector<double>{1, -2, -3, 4, 5, -6});
  CHECK(where(mask, a, zeros({}, DType::f64)).to_vector<double>() == std::vector<double>{1, 0, 0, 4, 5, 0});
  CHECK(masked_fill(a, mask, -1.5).to_vector<double>() == std::vector<double>{-1.5, 2, 3, -1.5, -1.5, 6});
  const Tensor row_mask = from_vector<bool>({0, 1, 0}, {3});  // broadcast over rows
  CHECK(masked_fill(a, row_mask, 0.0).to_vector<double>() == std::vector<double>{1, 0, 3, 4, 0, 6});
  CHECK(masked_fill(a.to(DType::f32), mask, -INFINITY).to_vector<float>() ==
        std::vector<float>{-INFINITY, 2, 3, -INFINITY, -INFINITY, 6});
  CHECK(masked_fill(from_vector<int64_t>({7, 8, 9, 10, 11, 12}, {2, 3}), mask, 0.0).to_vector<int64_t>() ==
        std::vector<int64_t>{0, 8, 9, 0, 0, 12});
  CHECK(masked_fill(transpose(a, 0, 1), transpose(mask, 0, 1), 0.0).to_vector<double>() ==
        std::vector<double>{0, 0, 2, 0, 3, 6});  // strided operands
}

TEST_CASE("elementwise: pow with negative and zero exponents, sqrt and rsqrt") {
  const Tensor x = leaf({2.0, 4.0});
  const Tensor y = pow(x, -2.0);
  CHECK(y.to_vector<double>() == std::vector<double>{0.25, 0.0625});
  const auto dx = grad_of(y, x);  // -2 x^-3
  CHECK(dx[0] == doctest::Approx(-0.25));
  CHECK(dx[1] == doctest::Approx(-2.0 / 64.0));

  const Tensor z = leaf({0.0, 3.0});
  const Tensor one = pow(z, 0.0);
  CHECK(one.to_vector<double>() == std::vector<double>{1.0, 1.0});
  CHECK(grad_of(one, z) == std::vector<double>{0.0, 0.0});  // not 0 * 0^-1 = NaN

  CHECK(pow(tensor<double>({4.0}), -0.5).item() == 0.5);
  CHECK(sqrt(tensor<double>({9.0})).item() == 3.0);
  CHECK(rsqrt(tensor<double>({4.0})).item() == 0.5);
  const Tensor r = leaf({4.0});
  CHECK(grad_of(rsqrt(r), r)[0] == doctest::Approx(-0.5 / 8.0));  // -x^(-3/2) / 2
}

TEST_CASE("elementwise: maximum and minimum broadcast and split ties half and half") {
  const Tensor a = leaf({1.0, 2.0, 3.0});
  const Tensor b = leaf({1.0, 5.0, 0.0});
  const Tensor m = maximum(a, b);
  CHECK(m.to_vector<double>() == std::vector<double>{1.0, 5.0, 3.0});
  sum(m).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0.5, 0.0, 1.0});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{0.5, 1.0, 0.0});

  const Tensor c = leaf({1.0, 2.0, 3.0});
  const Tensor d = leaf({2.0});
  const Tensor n = minimum(c, d);
  CHECK(n.to_vector<double>() == std::vector<double>{1.0, 2.0, 2.0});
  sum(n).backward();
  CHECK(c.grad().to_vector<double>() == std::vector<double>{1.0, 0.5, 0.0});
  CHECK(d.grad().to_vector<double>() == std::vector<double>{1.5});

  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::isnan(maximum(tensor<double>({nan}), tensor<double>({1.0})).item()));
  CHECK(std::isnan(minimum(tensor<double>({1.0}), tensor<double>({nan})).item()));
}

TEST_CASE("elementwise: comparisons give bool masks with broadcasting and no gradient") {
  Tensor column = from_vector<double>({1, 2, 3}, {3, 1});
  column.requires_grad_();
  const Tensor row = tensor<double>({2, 3});
  const Tensor less = lt(column, row);  // (3, 2)
  CHECK(less.dtype() == DType::boolean);
  CHECK(less.shape() == Shape{3, 2});
  CHECK_FALSE(less.requires_grad());
  CHECK(less.to_vector<bool>() == std::vector<bool>{true, true, false, true, false, false});
  CHECK(le(column, row).to_vector<bool>() == std::vector<bool>{true, true, true, true, false, true});
  CHECK(gt(column, row).to_vector<bool>() == std::vector<bool>{false, false, false, false, true, false});
  CHECK(ge(column, row).to_vector<bool>() == std::vector<bool>{false, false, true, false, true, true});
  CHECK(eq(column, row).to_vector<bool>() == std::vector<bool>{false, false, true, false, false, true});
  CHECK(ne(column, row).to_vector<bool>() == std::vector<bool>{true, true, false, true, true, false});

  const Tensor ids = tensor<int64_t>({0, 5, 1, 0});
  CHECK(eq(ids, 0.0).to_vector<bool>() == std::vector<bool>{true, false, false, true});
  CHECK(ne(ids, 0.0).to_vector<bool>() == std::vector<bool>{false, true, true, false});
  CHECK(lt(ids, 0.5).to_vector<bool>() == std::vector<bool>{true, false, false, true});
  CHECK(ge(ids, 1.0).to_vector<bool>() == std::vector<bool>{false, true, true, false});
  CHECK(gt(ids, 1.0).to_vector<bool>() == std::vector<bool>{false, true, false, false});
  CHECK(le(ids, 1.0).to_vector<bool>() == std::vector<bool>{true, false, true, true});
  // The scalar is taken in the tensor's dtype: 0.1 in f32 equals f32(0.1), as in PyTorch.
  CHECK(eq(tensor<float>({0.1f}), 0.1).item() == 1.0);
}

TEST_CASE("elementwise: logical ops on masks") {
  const Tensor a = tensor<bool>({true, true, false, false});
  const Tensor b = tensor<bool>({true, false, true, false});
  CHECK(logical_and(a, b).to_vector<bool>() == std::vector<bool>{true, false, false, false});
  CHECK(logical_or(a, b).to_vector<bool>() == std::vector<bool>{true, true, true, false});
  CHECK(logical_not(a).to_vector<bool>() == std::vector<bool>{false, false, true, true});
  const Tensor column = from_vector<bool>({true, false}, {2, 1});
  CHECK(logical_and(column, b).to_vector<bool>() ==
        std::vector<bool>{true, false, true, false, false, false, false, false});
}

TEST_CASE("elementwise: errors name the op, dtypes and shapes") {
  CHECK(message_of<DTypeError>([] { logical_and(zeros({2, 3}), tensor<bool>({true})); }) ==
        "logical_and: expects bool masks, got f32 [2, 3]");
  CHECK(message_of<DTypeError>([] { logical_not(arange(3)); }) == "logical_not: expects bool masks, got i64 [3]");
  CHECK(message_of<DTypeError>([] { lt(zeros({2}), arange(2)); }) ==
        "lt: operands have different dtypes: f32 [2] and i64 [2]");
  CHECK(message_of<ShapeError>([] { eq(zeros({2, 3}), zeros({4})); }) ==
        "eq: shapes [2, 3] and [4] cannot be broadcast: dimension -1 is 3 in one and 4 in the other");
  CHECK(message_of<DTypeError>([] { gelu(arange(3)); }) == "gelu: expects f32 or f64, got i64");
  CHECK(message_of<DTypeError>([] { maximum(zeros({2}), zeros({2}, DType::f64)); }) ==
        "maximum: operands have different dtypes: f32 [2] and f64 [2]");
}

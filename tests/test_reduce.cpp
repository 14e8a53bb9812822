// Reductions: max/min values and their one-element gradient among ties, var with both corrections against
// hand-computed values, logsumexp at the edges of the float range, argmax/argmin indices, and errors.
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

Tensor iota(Shape shape) { return reshape(arange(0, static_cast<double>(numel_of(shape)), 1, DType::f64), shape); }

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("reduce: max and min over any axes, with and without keepdim") {
  const Tensor x = iota({2, 3, 4});
  CHECK(max(x).item() == 23.0);
  CHECK(max(x).dim() == 0);
  CHECK(min(x).item() == 0.0);
  CHECK(values(max(x, {0, 2})) == std::vector<double>{15, 19, 23});
  CHECK(max(x, {0, 2}, true).shape() == Shape{1, 3, 1});
  const Tensor m = min(x, {1});
  CHECK(m.shape() == Shape{2, 4});
  CHECK(values(m) == std::vector<double>{0, 1, 2, 3, 12, 13, 14, 15});
  // A non-contiguous input (the transpose) reduced over its last axis.
  CHECK(values(max(transpose(iota({3, 2}), 0, 1), {-1})) == std::vector<double>{4, 5});
  CHECK(max(scalar_tensor(3.0, DType::f64)).item() == 3.0);
  CHECK(max(scalar_tensor(3.0), {0}).dim() == 0);
  CHECK(logsumexp(scalar_tensor(-2.0, DType::f64)).item() == -2.0);
  CHECK(var(scalar_tensor(1.0), {}, 0).item() == 0.0);
  CHECK(std::isnan(max(tensor<double>({1, NAN, 3})).item()));
  CHECK(std::isnan(min(tensor<float>({NAN, 1, 3})).item()));
}

TEST_CASE("reduce: the gradient of max and min goes to exactly one element, the first among ties") {
  Tensor x = tensor<double>({1, 5, 5, 2});
  x.requires_grad_();
  max(x).backward();
  CHECK(values(x.grad()) == std::vector<double>{0, 1, 0, 0});

  Tensor y = from_vector<double>({5, 1, 5, 5}, {2, 2});
  y.requires_grad_();
  sum(max(y, {0}) * tensor<double>({10, 20})).backward();
  CHECK(values(y.grad()) == std::vector<double>{10, 0, 0, 20});
  y.zero_grad();
  max(y).backward();
  CHECK(values(y.grad()) == std::vector<double>{1, 0, 0, 0});
  y.zero_grad();
  sum(min(y, {1}, true) * from_vector<double>({3, 4}, {2, 1})).backward();
  CHECK(values(y.grad()) == std::vector<double>{0, 3, 4, 0});
}

TEST_CASE("reduce: var against hand-computed values with both corrections") {
  const Tensor x = tensor<double>({1, 2, 3, 4});  // mean 2.5, squared deviations sum to 5
  CHECK(var(x).item() == doctest::Approx(5.0 / 3.0).epsilon(1e-12));
  CHECK(var(x, {}, 0).item() == doctest::Approx(1.25).epsilon(1e-12));
  const Tensor y = from_vector<float>({1, 3, 2, 6}, {2, 2});
  const Tensor columns = var(y, {0});  // [1, 2] and [3, 6]
  CHECK(columns.dtype() == DType::f32);
  CHECK(values(columns) == std::vector<double>{0.5, 4.5});
  CHECK(var(y, {-1}, 0, true).shape() == Shape{2, 1});
  CHECK(values(var(y, {-1}, 0, true)) == std::vector<double>{1.0, 4.0});
  CHECK(std::isnan(var(tensor<double>({3})).item()));  // N - correction = 0, as PyTorch

  // d var / dx = 2 (x - mean) / (N - correction)
  Tensor z = tensor<double>({1, 2, 3, 4});
  z.requires_grad_();
  var(z, {0}, 0).backward();
  const std::vector<double> grad = values(z.grad());
  const std::vector<double> expected{-0.75, -0.25, 0.25, 0.75};
  for (size_t i = 0; i < grad.size(); ++i) CHECK(grad[i] == doctest::Approx(expected[i]).epsilon(1e-12));
}

TEST_CASE("reduce: logsumexp is stable for large values and gives -inf for -inf rows") {
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    const double big = logsumexp(full({2}, 1e4, dtype)).item();
    CHECK(std::isfinite(big));
    CHECK(big == doctest::Approx(1e4 + std::log(2.0)).epsilon(1e-7));
    const double small = logsumexp(full({2}, -1e4, dtype)).item();
    CHECK(small == doctest::Approx(-1e4 + std::log(2.0)).epsilon(1e-7));
    const double none = logsumexp(full({2}, -kInf, dtype)).item();
    CHECK(std::isinf(none));
    CHECK(none < 0);
  }
  CHECK(logsumexp(zeros({3}, DType::f64)).item() == doctest::Approx(std::log(3.0)).epsilon(1e-12));
  const Tensor rows = logsumexp(from_vector<double>({0, 0, -kInf, -kInf}, {2, 2}), {1});
  CHECK(rows.at({0}) == doctest::Approx(std::log(2.0)).epsilon(1e-12));
  CHECK(rows.at({1}) == -kInf);

  // The gradient is the softmax: finite for large inputs.
  Tensor x = full({2}, 1e4, DType::f64);
  x.requires_grad_();
  logsumexp(x).backward();
  for (double g : values(x.grad())) CHECK(g == doctest::Approx(0.5).epsilon(1e-9));
}

TEST_CASE("reduce: large rows take the threaded path and agree with the composed formulas") {
  Generator gen(7);
  const Tensor x = randn({64, 1024}, gen, DType::f64);
  const Tensor composed = log(sum(exp(x), {1}));
  const Tensor fused = logsumexp(x, {1});
  double worst = 0;
  for (int64_t r = 0; r < 64; ++r) worst = std::max(worst, std::abs(fused.at({r}) - composed.at({r})));
  CHECK(worst < 1e-10);
  // The f32 path has its own vectorised exp: it must agree with the f64 result to f32 precision, also for
  // elements far below the maximum.
  const Tensor spread = x * 30.0;
  const Tensor single = logsumexp(spread.to(DType::f32), {1});
  const Tensor reference = logsumexp(spread.to(DType::f32).to(DType::f64), {1});
  for (int64_t r = 0; r < 64; ++r)
    CHECK(single.at({r}) == doctest::Approx(reference.at({r})).epsilon(1e-6));
  const Tensor maxima = max(x, {1});
  const Tensor index = argmax(x, 1);
  for (int64_t r = 0; r < 64; ++r) CHECK(x.at({r, static_cast<int64_t>(index.at({r}))}) == maxima.at({r}));
  const Tensor centred = x - mean(x, {1}, true);
  const Tensor by_ops = sum(centred * centred, {1}) * (1.0 / 1023.0);
  const Tensor by_kernel = var(x, {1});
  for (int64_t r = 0; r < 64; ++r) CHECK(by_kernel.at({r}) == doctest::Approx(by_ops.at({r})).epsilon(1e-12));
}

TEST_CASE("reduce: argmax and argmin give the first extremum as i64 without gradient") {
  Tensor x = from_vector<double>({1, 9, 9, 7, 2, 7}, {2, 3});
  x.requires_grad_();
  const Tensor a = argmax(x, 1);
  CHECK(a.dtype() == DType::i64);
  CHECK_FALSE(a.requires_grad());
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  CHECK(argmin(x, -1).to_vector<int64_t>() == std::vector<int64_t>{0, 1});
  CHECK(argmax(x, 0, true).shape() == Shape{1, 3});
  CHECK(argmax(x, 0, true).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
  CHECK(argmax(x).item() == 1.0);  // into the flattened tensor
  CHECK(argmin(x).item() == 0.0);
  CHECK(argmax(x).dim() == 0);
  CHECK(argmax(tensor<float>({1, NAN, 3}), 0).item() == 1.0);
}

TEST_CASE("reduce: errors name the op, the shape and the axes") {
  CHECK(message_of<ShapeError>([] { max(zeros({2, 0}), {1}); }) ==
        "max: cannot reduce over zero elements (shape [2, 0], axes [1])");
  CHECK(message_of<ShapeError>([] { argmin(zeros({0})); }) ==
        "argmin: cannot reduce over zero elements (shape [0], axes [0])");
  CHECK(message_of<IndexError>([] { argmax(zeros({2, 3}), 2); }) ==
        "argmax: axis 2 is out of range for a tensor of rank 2 (expected -2..1)");
  CHECK(message_of<IndexError>([] { var(zeros({2, 3}), {1, 1}); }).find("var: axis 1 appears twice") == 0);
  CHECK(message_of<DTypeError>([] { logsumexp(arange(3)); }) == "logsumexp: expects f32 or f64, got i64");
  CHECK(message_of<DTypeError>([] { min(arange(3)); }) == "min: expects f32 or f64, got i64");
  CHECK(logsumexp(zeros({2, 0}), {1}).at({0}) == -kInf);
}

#include "autograd/engine.h"
#include "ops/ops.h"
#include "tests/op_helpers.h"

#include <doctest/doctest.h>

#include <cmath>

using namespace gradformer;

TEST_CASE("engine: gradients accumulate when a tensor is used twice, and across backward calls") {
  Tensor x = tensor<double>({1.0, 2.0, 3.0}).requires_grad_();
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 5, 7});
  sum(x * 2.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("engine: a non-scalar output needs an explicit gradient") {
  Tensor x = tensor<double>({1.0, 2.0}).requires_grad_();
  Tensor y = x * 3.0;
  CHECK_THROWS_AS(y.backward(), AutogradError);
  try {
    y.backward();
  } catch (const AutogradError& e) {
    CHECK(std::string(e.what()).find("[2]") != std::string::npos);
  }
  y.backward(tensor<double>({1.0, 10.0}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 30});
  CHECK_THROWS_AS(y.backward(tensor<double>({1.0, 2.0, 3.0})), ShapeError);
}

TEST_CASE("engine: backward through a freed graph throws; retain_graph keeps it") {
  Tensor x = tensor<double>({1.0, 2.0}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward({}, true);
  y.backward();
  CHECK(x.grad().at({0}) == doctest::Approx(2 * std::exp(1.0)));
  try {
    y.backward();
    FAIL("expected an AutogradError");
  } catch (const AutogradError& e) {
    CHECK(std::string(e.what()).find("retain_graph") != std::string::npos);
  }
}

TEST_CASE("engine: no_grad records nothing; detach leaves the graph") {
  Tensor x = tensor<double>({1.0}).requires_grad_();
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(grad_mode_enabled());
  }
  CHECK(grad_mode_enabled());
  Tensor d = (x * 2.0).detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
}

TEST_CASE("engine: requires_grad_ only on floating leaves") {
  Tensor i = arange(3);
  CHECK_THROWS_AS(i.requires_grad_(), DTypeError);
  Tensor x = tensor<float>({1.0f}).requires_grad_();
  Tensor y = x * 2.0;
  CHECK_THROWS_AS(y.requires_grad_(), AutogradError);
}

TEST_CASE("engine: a 5,000-step chain runs backward and is freed without deep recursion") {
  const int64_t before = live_node_count();
  {
    Tensor h0 = tensor<double>({0.5}).requires_grad_();
    Tensor h = h0;
    for (int step = 0; step < 5000; ++step) h = h * 1.0001 + 0.0;
    sum(h).backward();
    CHECK(h0.grad().at({0}) == doctest::Approx(std::pow(1.0001, 5000)));
    CHECK(live_node_count() - before >= 5000);
  }
  CHECK(live_node_count() == before);  // no cycle kept any node alive
}

TEST_CASE("engine: a deep chain of 200,000 nodes is destroyed iteratively") {
  const int64_t before = live_node_count();
  {
    Tensor x = tensor<double>({1.0}).requires_grad_();
    Tensor h = x;
    for (int step = 0; step < 200000; ++step) h = h + 1.0;
  }
  CHECK(live_node_count() == before);
}

TEST_CASE("engine: an input that needs no gradient gets none; branches that do not reach a leaf are skipped") {
  Tensor a = tensor<double>({2.0}).requires_grad_();
  Tensor b = tensor<double>({3.0});
  Tensor y = sum(a * b);
  y.backward();
  CHECK(a.grad().at({0}) == 3.0);
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("engine: anomaly mode names the first op whose forward output holds NaN, and its inputs' shapes") {
  const Tensor x = from_vector<double>({1, -2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  CHECK_FALSE(anomaly_mode_enabled());
  {
    DetectAnomalyGuard anomaly;
    CHECK(anomaly_mode_enabled());
    CHECK(testing::message_of<NumericalError>([&] { sum(log(x) * 2.0); }) ==
          "log: anomaly detected in forward: the output of shape [2, 3] holds NaN (inputs of shapes [2, 3])");
    // exp overflows f32 to Inf from finite inputs.
    const Tensor big = tensor<float>({1.0f, 100.0f}).requires_grad_();
    CHECK(testing::message_of<NumericalError>([&] { exp(big); }) ==
          "exp: anomaly detected in forward: the output of shape [2] holds Inf (inputs of shapes [2])");
  }
  CHECK_FALSE(anomaly_mode_enabled());
}

TEST_CASE("engine: anomaly mode names the op and the input whose backward gradient holds Inf or NaN") {
  DetectAnomalyGuard anomaly;
  // sqrt is finite at 0, its derivative 1 / (2 sqrt(x)) is not.
  const Tensor x = tensor<double>({0.0, 1.0, 4.0}).requires_grad_();
  const Tensor y = sum(sqrt(x));
  CHECK(testing::message_of<NumericalError>([&] { y.backward(); }) ==
        "sqrt: anomaly detected in backward: the gradient for input 0 (shape [3]) holds Inf (inputs of shapes [3])");

  // An op of the user's own whose backward writes NaN into its second input's gradient only.
  const Tensor a = tensor<double>({1.0, 2.0}).requires_grad_(), b = from_vector<double>({1, 2, 3, 4}, {2, 2});
  const Tensor w = from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}).requires_grad_();
  const Tensor out = record(a.detach() * 2.0, "faulty", {a, b, w}, [](const Tensor& dout, InputGrads& g) {
    g[0] = dout * 2.0;
    g[2] = full({3, 2}, std::nan(""), DType::f64);
  });
  CHECK(testing::message_of<NumericalError>([&] { sum(out).backward(); }) ==
        "faulty: anomaly detected in backward: the gradient for input 2 (shape [3, 2]) holds NaN (inputs of shapes "
        "[2], [2, 2], [3, 2])");
}

TEST_CASE("engine: anomaly mode names the parameter whose gradient holds Inf or NaN") {
  const Tensor weight = testing::nested_parameter();
  for (int64_t i = 0; i < 6; ++i) weight.set_at({i / 3, i % 3}, static_cast<double>(i * i));  // sqrt'(0) is Inf
  DetectAnomalyGuard anomaly;
  const Tensor y = sum(sqrt(weight));
  CHECK(testing::message_of<NumericalError>([&] { y.backward(); }) ==
        "sqrt: anomaly detected in backward: the gradient for input 0 (parameter 0.0.weight, shape [2, 3]) holds Inf "
        "(inputs of shapes [2, 3])");
}

TEST_CASE("engine: anomaly mode lets through infinities an op receives or a mask asks for") {
  DetectAnomalyGuard anomaly;
  const Tensor scores = tensor<double>({0.5, 1.0, 2.0}).requires_grad_();
  const Tensor masked = masked_fill(scores, tensor<bool>({false, true, false}), -INFINITY);
  const Tensor shifted = masked + 1.0;  // passes the -inf on
  const Tensor weights = softmax(shifted, 0);
  sum(weights * tensor<double>({1.0, 2.0, 3.0})).backward();
  CHECK(std::isinf(shifted.at({1})));
  CHECK(weights.at({1}) == 0.0);
  CHECK(scores.grad().at({1}) == 0.0);
}

TEST_CASE("engine: anomaly mode is off by default, and NaN then flows through silently as in PyTorch") {
  CHECK_FALSE(anomaly_mode_enabled());
  const Tensor x = tensor<double>({-1.0, 1.0}).requires_grad_();
  const Tensor y = sum(log(x));
  y.backward();
  CHECK(std::isnan(y.item()));
  CHECK(x.grad().at({0}) == -1.0);  // d log(x) / dx = 1 / x holds even where log is NaN
  set_detect_anomaly(true);
  CHECK(anomaly_mode_enabled());
  set_detect_anomaly(false);
  CHECK_NOTHROW(sum(log(x)).backward());
}

TEST_CASE("engine: a gradient kept without a copy is never shared between two leaves or with the graph") {
  // add's backward hands the same tensor to both inputs: one leaf may keep it, the other must get its own copy.
  Tensor a = from_vector<float>({1, 2, 3}, {3}).requires_grad_();
  Tensor b = from_vector<float>({4, 5, 6}, {3}).requires_grad_();
  sum((a + b) * 3.0).backward();
  CHECK(a.grad().storage() != b.grad().storage());
  a.grad().fill_(0.0);
  CHECK(b.grad().to_vector<float>() == std::vector<float>{3, 3, 3});
  // Two contributions to one node: the sum goes into a tensor the engine owns, not into a consumer's gradient.
  Tensor x = from_vector<float>({1, -2}, {2}).requires_grad_();
  const Tensor h = x * 2.0;
  sum(h * h + h).backward();  // d/dh = 2h + 1, dh/dx = 2
  CHECK(x.grad().to_vector<float>() == std::vector<float>{10, -14});
}

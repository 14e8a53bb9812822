#include "autograd/engine.h"
#include "ops/ops.h"

#include <doctest/doctest.h>

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

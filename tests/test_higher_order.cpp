// Higher-order gradients (autograd/engine.h: grad, BackwardOptions::create_graph; autograd/gradcheck.h:
// gradgradcheck): the API's contract, the worked uses (a Hessian-vector product, a gradient penalty that trains
// down, the third derivative of tanh), the op table's second-order checks, and that create_graph leaves no
// ownership cycle behind.
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "nn/layer_table.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "ops/op_table.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>

using namespace gradformer;

namespace {

// x (N, K) times w (K, M) spelled with elementwise ops and a sum, whose backwards are all recorded.
Tensor product(const Tensor& x, const Tensor& w) { return sum(unsqueeze(x, 2) * unsqueeze(w, 0), {1}); }

}  // namespace

TEST_CASE("grad: returns gradients without touching grad(), and without create_graph they have no graph") {
  const Tensor x = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  const Tensor y = sum(x * x * x);
  const std::vector<Tensor> g = grad({y}, {x});
  REQUIRE(g.size() == 1);
  CHECK(g[0].to_vector<double>() == std::vector<double>{3, 12, 27});
  CHECK_FALSE(g[0].requires_grad());
  CHECK_FALSE(x.grad().defined());
  // the graph is freed by default: a second pass needs retain_graph
  CHECK_THROWS_AS(grad({y}, {x}), AutogradError);
}

TEST_CASE("grad: create_graph gives gradients with a graph, differentiable again; retain_graph follows it") {
  const Tensor x = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  const Tensor y = sum(x * x * x);
  const Tensor dx = grad({y}, {x}, {}, {.create_graph = true})[0];
  CHECK(dx.requires_grad());
  const Tensor d2x = grad({sum(dx)}, {x}, {}, {.create_graph = true})[0];  // 6x
  CHECK(d2x.to_vector<double>() == std::vector<double>{6, 12, 18});
  const Tensor d3x = grad({sum(d2x)}, {x})[0];  // 6
  CHECK(d3x.to_vector<double>() == std::vector<double>{6, 6, 6});
  CHECK(grad({y}, {x})[0].to_vector<double>() == std::vector<double>{3, 12, 27});  // retained by create_graph
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("grad: grad_outputs, several outputs and inputs, non-leaf inputs, allow_unused") {
  const Tensor a = from_vector<double>({1, 2}, {2}).requires_grad_();
  const Tensor b = from_vector<double>({3, 4}, {2}).requires_grad_();
  const Tensor unused = zeros({2}, DType::f64).requires_grad_();
  const Tensor h = a * b;
  const Tensor out1 = h * 2.0, out2 = sum(a);
  const std::vector<Tensor> g =
      grad({out1, out2}, {a, h, unused}, {from_vector<double>({1, 10}, {2}), Tensor()},
           {.retain_graph = true, .allow_unused = true});
  CHECK(g[0].to_vector<double>() == std::vector<double>{2 * 3 + 1, 20 * 4 + 1});
  CHECK(g[1].to_vector<double>() == std::vector<double>{2, 20});
  CHECK_FALSE(g[2].defined());
  CHECK_THROWS_AS(grad({out1, out2}, {unused}, {ones({2}, DType::f64), Tensor()}), AutogradError);
  CHECK_THROWS_AS(grad({out1}, {a}, {ones({2}, DType::f64), ones({2}, DType::f64)}), ValueError);
}

TEST_CASE("backward(create_graph): the leaf's grad carries a graph; without it the grad is a plain tensor") {
  const Tensor x = from_vector<double>({0.5, -1.0}, {2}).requires_grad_();
  sum(exp(x) * x).backward({}, {.create_graph = true});
  CHECK(x.grad().requires_grad());
  const Tensor first = x.grad();
  // d/dx [(1 + x) e^x] = (2 + x) e^x
  const Tensor second = grad({sum(first)}, {x})[0];
  CHECK(second.at({0}) == doctest::Approx(2.5 * std::exp(0.5)));
  CHECK(second.at({1}) == doctest::Approx(1.0 * std::exp(-1.0)));
  x.zero_grad();
  sum(exp(x) * x).backward();
  CHECK_FALSE(x.grad().requires_grad());
}

TEST_CASE("worked use: a Hessian-vector product agrees with finite differences of gradients") {
  Generator gen(11);
  const Tensor w = randn({4, 3}, gen, DType::f64).requires_grad_();
  const Tensor x = randn({5, 4}, gen, DType::f64);
  const Tensor v = randn({4, 3}, gen, DType::f64);
  auto loss_of = [&x](const Tensor& weights) { return sum(tanh(product(x, weights)) * tanh(product(x, weights))); };
  // Hv = d/dw <dL/dw, v>
  const Tensor g = grad({loss_of(w)}, {w}, {}, {.create_graph = true})[0];
  const Tensor hv = grad({sum(g * v)}, {w})[0];
  const double eps = 1e-6;
  auto gradient_at = [&](double shift) {
    const Tensor moved = (w.detach() + v * shift).requires_grad_();
    return grad({loss_of(moved)}, {moved})[0];
  };
  const Tensor numeric = (gradient_at(eps) - gradient_at(-eps)) * (1.0 / (2 * eps));
  CHECK(testing::max_abs_difference(hv, numeric) < 1e-6 * (1.0 + testing::max_abs(numeric)));
}

TEST_CASE("worked use: a gradient penalty trains down (the penalty term falls)") {
  Generator gen(12);
  const Tensor weight = randn({3, 1}, gen).requires_grad_(), bias = zeros({1}).requires_grad_();
  optim::SGD optimizer({weight, bias}, {.lr = 0.05});
  const Tensor inputs = randn({16, 3}, gen);
  auto penalty_now = [&] {
    const Tensor x = inputs.detach().requires_grad_();
    const Tensor dx = grad({sum(tanh(product(x, weight) + bias))}, {x}, {}, {.create_graph = true})[0];
    return mean(sum(dx * dx, {1}));  // ‖∂f/∂x‖², WGAN-GP's term without the target norm
  };
  const double first = penalty_now().item();
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    penalty_now().backward();
    optimizer.step();
  }
  const double last = penalty_now().item();
  CAPTURE(first);
  CAPTURE(last);
  CHECK(last < 0.7 * first);  // 30 steps of SGD at lr 0.05 take it from 1.05 to 0.62
}

TEST_CASE("worked use: the third derivative of tanh against its closed form") {
  const Tensor x = from_vector<double>({-1.5, -0.3, 0.0, 0.7, 2.0}, {5}).requires_grad_();
  const Tensor t = tanh(x);
  const Tensor d1 = grad({sum(t)}, {x}, {}, {.create_graph = true})[0];
  const Tensor d2 = grad({sum(d1)}, {x}, {}, {.create_graph = true})[0];
  const Tensor d3 = grad({sum(d2)}, {x})[0];
  for (int64_t i = 0; i < 5; ++i) {
    const double y = std::tanh(x.at({i}));
    CHECK(d1.at({i}) == doctest::Approx(1 - y * y).epsilon(1e-12));
    CHECK(d2.at({i}) == doctest::Approx(-2 * y * (1 - y * y)).epsilon(1e-12));
    CHECK(d3.at({i}) == doctest::Approx(-2 * (1 - y * y) * (1 - 3 * y * y)).epsilon(1e-12));
  }
}

TEST_CASE("gradgradcheck: passes for a composed function and names the input of a wrong second derivative") {
  Generator gen(13);
  const Tensor a = randn({3, 2}, gen, DType::f64), b = randn({2}, gen, DType::f64);
  const GradcheckReport good =
      gradgradcheck([](const std::vector<Tensor>& x) { return exp(x[0] * x[1]) / (x[1] * x[1] + 1.0); }, {a, b});
  INFO(good.failure);
  CHECK(good.passed);
  // A custom op whose backward is right but whose second derivative is not: its backward is recorded as x·dout,
  // which claims d²/dx² (x³/3)... = x instead of 2x.
  auto cube_third = [](const std::vector<Tensor>& x) {
    const Tensor out = x[0] * x[0] * x[0] * (1.0 / 3.0);
    return record(out.detach(), "wrong_second_order", {saved(x[0])}, [](const Tensor& dout, InputGrads& g) {
      const Tensor v = g.saved(0);
      g[0] = dout * record((v * v).detach(), "square_without_its_derivative", {v},
                           [](const Tensor& d, InputGrads& gg) { gg[0] = d; });
    });
  };
  CHECK(gradcheck(cube_third, {a}).passed);
  const GradcheckReport bad = gradgradcheck(cube_third, {a});
  CHECK_FALSE(bad.passed);
  CHECK(bad.failure.find("input 0 [3, 2] at index") != std::string::npos);
}

TEST_CASE("create_graph refuses a backward that is not recorded rather than giving a silently wrong result") {
  const Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  const Tensor y = record((x * x).detach(), "kernel_backward", {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    g[0] = (dout * 2.0).detach();  // computed outside the graph
  });
  CHECK_THROWS_WITH_AS(grad({sum(y)}, {x}, {}, {.create_graph = true}),
                       doctest::Contains("kernel_backward: its backward is not recorded"), AutogradError);
  CHECK(grad({sum(y)}, {x})[0].to_vector<double>() == std::vector<double>{2, 2});  // first order is fine
}

TEST_CASE("op table: every row is twice differentiable by gradgradcheck, or says why not") {
  for (const OpRow& row : op_table()) {
    if (!row.differentiable) continue;
    CAPTURE(row_name(row));
    if (const std::string_view reason = first_order_only(row); !reason.empty()) {
      // A row marked first-order only must really be refused at second order, so the mark cannot go stale.
      Generator gen(9000);
      bool refused = false;
      try {
        refused = !gradgradcheck(row.apply, row.make_inputs(0, gen), {.atol = row.atol, .rtol = row.rtol, .seed = 1}).passed;
      } catch (const AutogradError&) {
        refused = true;
      }
      CHECK_MESSAGE(refused, "marked first-order only (", reason, ") but passes gradgradcheck");
      continue;
    }
    for (const OpCheck& check : gradgradcheck_row(row, 1)) {
      CAPTURE(check.which);
      CAPTURE(check.strided);
      INFO(check.report.failure);
      CHECK(check.report.passed);
    }
  }
}

TEST_CASE("create_graph leaves no ownership cycle: graphs and gradients are freed with their tensors") {
  const int64_t nodes_before = live_node_count();
  std::weak_ptr<TensorImpl> leaf_alive, grad_alive;
  {
    const Tensor x = randn({3, 3}, current_generator(), DType::f64).requires_grad_();
    const Tensor w = randn({3, 3}, current_generator(), DType::f64).requires_grad_();
    sum(tanh(product(x, w)) * exp(x)).backward({}, {.create_graph = true});
    REQUIRE(x.grad().requires_grad());  // x.grad's graph refers to x and w
    sum(x.grad() * w.grad()).backward({}, {.create_graph = true});  // and again, accumulating with a graph
    leaf_alive = x.impl_ptr();
    grad_alive = x.grad().impl_ptr();
  }
  CHECK(leaf_alive.expired());
  CHECK(grad_alive.expired());
  CHECK(live_node_count() == nodes_before);
}

TEST_CASE("create_graph leaves no cycle for any op-table row") {
  for (const OpRow& row : op_table()) {
    if (!row.differentiable || !first_order_only(row).empty()) continue;
    CAPTURE(row_name(row));
    const int64_t nodes_before = live_node_count();
    {
      Generator gen(9100);
      std::vector<Tensor> inputs = row.make_inputs(0, gen);
      for (Tensor& t : inputs)
        if (is_floating(t.dtype())) t = t.detach().requires_grad_();
      const Tensor out = row.apply(inputs);
      if (out.requires_grad()) out.backward(ones_like(out), {.create_graph = true});
    }
    CHECK(live_node_count() == nodes_before);
  }
}

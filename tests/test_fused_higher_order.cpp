// Second order through the fused and GEMM-shaped ops (ops/matmul.cpp, attention.cpp, normalization.cpp,
// loss.cpp): a backward that is not differentiated records nothing, one that is gives gradients with a graph,
// and under bf16 autocast the differentiated products stay in bf16, linear's reading x's bf16 rounding in x's
// place. The values themselves are checked by the op table's gradgradcheck and against PyTorch by
// test_torch_hvp.cpp.
#include "autograd/engine.h"
#include "ops/autocast.h"
#include "ops/gemm.h"
#include "ops/ops.h"

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

using namespace gradformer;

namespace {

int64_t bf16_products() { return gemm::products_run_on(gemm::Backend::onednn_bf16); }

// ‖got − expected‖ / ‖expected‖.
double relative_error(const Tensor& got, const Tensor& expected) {
  const Tensor error = got - expected;
  return std::sqrt(sum(error * error).item() / sum(expected * expected).item());
}

// One small use of each fused op, as a scalar of x [2, 3, 4] (f64).
struct FusedUse {
  std::string name;
  std::function<Tensor(const Tensor&)> loss;
};

std::vector<FusedUse> fused_uses() {
  Generator gen(3);
  const Tensor w = randn({5, 4}, gen, DType::f64), m = randn({4, 3}, gen, DType::f64);
  const Tensor gamma = randn({4}, gen, DType::f64), beta = randn({4}, gen, DType::f64);
  const Tensor targets = from_vector<int64_t>({0, 2, 1, -100, 4, 3}, {6});
  const Tensor target_values = randn({2, 3, 4}, gen, DType::f64);
  auto heads = [](const Tensor& x) { return reshape(x, {2, 2, 3, 2}); };  // (B, H, T, D)
  return {
      {"matmul", [=](const Tensor& x) { return sum(tanh(matmul(x, m))); }},
      {"linear", [=](const Tensor& x) { return sum(tanh(linear(x, w))); }},
      {"bmm", [=](const Tensor& x) { return sum(tanh(bmm(x, transpose(x, 1, 2)))); }},
      {"scaled_dot_product_attention",
       [=](const Tensor& x) {
         Generator dropout_gen(5);
         const Tensor h = heads(x);
         return sum(tanh(scaled_dot_product_attention(h, h, h, {.causal = true, .dropout = 0.2,
                                                                 .generator = &dropout_gen})
                             .output));
       }},
      {"softmax", [=](const Tensor& x) { return sum(softmax(x, -1) * target_values); }},
      {"log_softmax", [=](const Tensor& x) { return sum(log_softmax(x, 1) * target_values); }},
      {"layer_norm", [=](const Tensor& x) { return sum(tanh(layer_norm(x, {4}, gamma, beta))); }},
      {"dropout",
       [=](const Tensor& x) {
         Generator dropout_gen(9);
         return sum(tanh(dropout(x, 0.4, true, dropout_gen)));
       }},
      {"cross_entropy",
       [=](const Tensor& x) { return cross_entropy(reshape(x, {6, 4}) * 2.0, targets, {.label_smoothing = 0.1}); }},
      {"nll_loss", [=](const Tensor& x) { return nll_loss(log_softmax(reshape(x, {6, 4}), -1), targets); }},
      {"mse_loss", [=](const Tensor& x) { return mse_loss(tanh(x), target_values); }},
  };
}

}  // namespace

TEST_CASE("fused ops: the gradient has a graph with create_graph and none without") {
  Generator gen(1);
  for (const FusedUse& use : fused_uses()) {
    CAPTURE(use.name);
    const Tensor x = randn({2, 3, 4}, gen, DType::f64).requires_grad_();
    const Tensor plain = grad({use.loss(x)}, {x})[0];
    CHECK(!plain.requires_grad());
    const Tensor recorded = grad({use.loss(x)}, {x}, {}, {.create_graph = true})[0];
    CHECK(recorded.requires_grad());
    // Both ways give the same first-order gradient.
    CHECK(relative_error(recorded.detach(), plain) < 1e-12);
  }
}

TEST_CASE("fused ops: a Hessian-vector product of each matches finite differences of its gradient") {
  Generator gen(2);
  const double step = 1e-6;
  for (const FusedUse& use : fused_uses()) {
    CAPTURE(use.name);
    const Tensor x = randn({2, 3, 4}, gen, DType::f64).requires_grad_();
    const Tensor v = randn({2, 3, 4}, gen, DType::f64);
    const Tensor g = grad({use.loss(x)}, {x}, {}, {.create_graph = true})[0];
    const Tensor hvp = grad({sum(g * v)}, {x})[0];
    auto gradient_at = [&](double shift) {
      const Tensor moved = (x.detach() + v * shift).requires_grad_();
      return grad({use.loss(moved)}, {moved})[0];
    };
    const Tensor numeric = (gradient_at(step) - gradient_at(-step)) / (2 * step);
    CHECK(relative_error(hvp, numeric) < 1e-6);
  }
}

TEST_CASE("autocast: products differentiated twice run in bf16, and linear reads x's rounding in x's place") {
  // Sizes large enough (128 on every side) for autocast to send each product to bf16.
  Generator gen(4);
  const Tensor input = randn({128, 128}, gen).requires_grad_();
  const Tensor weight = (randn({128, 128}, gen) * 0.1).requires_grad_();
  const Tensor r = randn({128, 128}, gen);
  // The gradient penalty ‖∂L/∂W‖² of L = Σ R ⊙ linear(x, W) with x = 2·input (not a leaf, so linear keeps only its
  // rounding): ∂L/∂W = Rᵀ·x, and the penalty's gradient with respect to input is 2·2·R·(Rᵀ·x).
  const Tensor expected = matmul(r, matmul(transpose(r, 0, 1), input * 2.0)) * 4.0;
  Tensor got;
  const int64_t before = bf16_products();
  {
    const AutocastGuard bf16(DType::bf16);
    const Tensor x = input * 2.0;
    const Tensor dw = grad({sum(linear(x, weight) * r)}, {weight}, {}, {.create_graph = true})[0];
    got = grad({sum(dw * dw)}, {input})[0];
  }
  // The forward product, its backward's dW = dyᵀ·x (recorded), and that product's own backward.
  CHECK(bf16_products() - before >= 3);
  CHECK(relative_error(got, expected) < 2e-2);
}

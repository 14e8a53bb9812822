// AutocastGuard (autograd/engine.h): its scope and nesting; backward products in the precision their forward
// ran in; gradients through a Transformer under autocast against f32 and against rounding its inputs only; bf16 training deterministic for a seed.
// The per-op tolerances against f32 and the reference are in test_matmul.cpp, beside the other GEMM paths.
#include "autograd/engine.h"
#include "nn/transformer.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

int64_t bf16_products() { return gemm::products_run_on(gemm::Backend::onednn_bf16); }

// A Transformer with one encoder and one decoder layer whose projections and feed-forward products are large
// enough (192 and 160 tokens x 128 x 128 and up) for autocast to run them in bf16. Dropout as given.
struct TinyTransformer {
  Generator gen;
  nn::Transformer model;
  Tensor src, tgt, weights;
  explicit TinyTransformer(double dropout)
      : gen(7),
        model({.layer = {.d_model = 128, .nhead = 4, .dim_feedforward = 256, .dropout = dropout},
               .num_encoder_layers = 1,
               .num_decoder_layers = 1},
              gen) {
    src = randn({8, 24, 128}, gen);
    tgt = randn({8, 20, 128}, gen);
    weights = randn({8, 20, 128}, gen);
  }
  // sum(out · R) and every parameter's gradient, by name order.
  std::pair<double, std::vector<Tensor>> loss_and_grads() {
    for (const Tensor& p : model.parameters()) p.zero_grad();
    const GeneratorGuard dropout_stream(gen);  // dropout draws from this model's own stream, as the trainer's does
    const Tensor loss = sum(model.forward(src, tgt) * weights);
    loss.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : model.parameters()) grads.push_back(p.grad().clone());
    return {loss.item(), grads};
  }
};

}  // namespace

TEST_CASE("AutocastGuard: scoped, nested, thread-local; only f32 and bf16") {
  CHECK(autocast_dtype() == DType::f32);
  {
    AutocastGuard outer(DType::bf16);
    CHECK(autocast_dtype() == DType::bf16);
    {
      AutocastGuard off(DType::f32);
      CHECK(autocast_dtype() == DType::f32);
    }
    CHECK(autocast_dtype() == DType::bf16);
  }
  CHECK(autocast_dtype() == DType::f32);
  CHECK(message_of<DTypeError>([] { AutocastGuard guard(DType::f64); }) ==
        "autocast: runs products in bf16 (or f32 to turn it off), not f64");
}

TEST_CASE("autocast: a product recorded under the guard runs its backward products in bf16 outside it") {
  Generator gen(3);
  Tensor x = randn({160, 128}, gen), w = randn({128, 128}, gen);
  x.requires_grad_();
  w.requires_grad_();
  Tensor y;
  {
    AutocastGuard autocast(DType::bf16);
    y = linear(x, w);
  }
  const int64_t before = bf16_products();
  sum(y).backward();
  CHECK(bf16_products() - before == 2);  // dx and dW
  // And a product recorded without the guard stays f32 in backward even when backward runs under it.
  const Tensor z = linear(x, w);
  AutocastGuard autocast(DType::bf16);
  const int64_t again = bf16_products();
  sum(z).backward();
  CHECK(bf16_products() == again);
}

TEST_CASE("autocast: a Transformer's gradients under bf16 are within 8% of f32's, and of the error bf16 inputs alone make") {
  // The loss sum(out · R) cancels heavily (20,480 terms of mean size ~0.6 sum to ~110), so its gradients are
  // sensitive: merely rounding src and tgt to bf16, all else f32, moves them by up to 3% (relative 2-norm).
  // Autocast rounds every product's operands; it may move them by at most 3x that (2.2x measured), and never by
  // more than 8% (4% measured).
  TinyTransformer f32_run(0.0);
  const auto [f32_loss, f32_grads] = f32_run.loss_and_grads();
  TinyTransformer rounded_inputs(0.0);
  rounded_inputs.src = rounded_inputs.src.to(DType::bf16).to(DType::f32);
  rounded_inputs.tgt = rounded_inputs.tgt.to(DType::bf16).to(DType::f32);
  const std::vector<Tensor> input_rounding_grads = rounded_inputs.loss_and_grads().second;
  TinyTransformer bf16_run(0.0);
  const int64_t before = bf16_products();
  std::pair<double, std::vector<Tensor>> bf16;
  {
    AutocastGuard autocast(DType::bf16);
    bf16 = bf16_run.loss_and_grads();
  }
  CHECK(bf16_products() - before > 20);
  const auto& [bf16_loss, bf16_grads] = bf16;
  CHECK(std::abs(bf16_loss - f32_loss) <= 0.05 * std::abs(f32_loss));
  REQUIRE(bf16_grads.size() == f32_grads.size());
  auto relative_error = [&](const Tensor& got, const Tensor& expected) {
    const Tensor error = got - expected;
    return std::sqrt(sum(error * error).item() / sum(expected * expected).item());
  };
  for (size_t i = 0; i < f32_grads.size(); ++i) {
    CAPTURE(i);
    const double autocast_error = relative_error(bf16_grads[i], f32_grads[i]);
    CHECK(autocast_error <= 0.08);
    CHECK(autocast_error <= 3 * relative_error(input_rounding_grads[i], f32_grads[i]) + 1e-4);
    // Model weights and their gradients stay f32 under autocast: only the products' operands were rounded.
    CHECK(bf16_grads[i].dtype() == DType::f32);
  }
  for (const Tensor& p : bf16_run.model.parameters()) CHECK(p.dtype() == DType::f32);
}

TEST_CASE("autocast: bf16 training is deterministic for a seed and thread count (dropout included)") {
  TinyTransformer first(0.1), second(0.1);
  AutocastGuard autocast(DType::bf16);
  const auto [first_loss, first_grads] = first.loss_and_grads();
  const auto [second_loss, second_grads] = second.loss_and_grads();
  CHECK(first_loss == second_loss);
  for (size_t i = 0; i < first_grads.size(); ++i) CHECK(testing::max_abs_difference(first_grads[i], second_grads[i]) == 0.0);
}

// Second order against PyTorch: Hessian-vector products of a small model's loss, with respect to its input and
// every parameter, must match those PyTorch's double backward gave. The model (make_torch_hvp.py's): a
// MultiheadAttention self-attention with a key padding mask, a residual LayerNorm, Linear, GELU, Linear and
// cross entropy, all in f64. The golden data is tests/fixtures/torch_hvp.safetensors, written by
// tests/fixtures/make_torch_hvp.py (its header says how it was run and which names it writes). Both sides compute
// in f64, so the bound, 1e-6 of the largest magnitude of PyTorch's tensor, leaves room for rounding only.
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/safetensors.h"
#include "ops/ops.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#ifndef GRADFORMER_FIXTURES
#error "tests/meson.build defines GRADFORMER_FIXTURES as the directory holding the fixtures"
#endif

using namespace gradformer;
namespace st = gradformer::safetensors;

namespace {

constexpr double tolerance = 1e-6;

// The script's sizes: B = 2, T = 3, D = 8, H = 2, F = 16, C = 5.
constexpr int64_t model_dim = 8, heads = 2, feedforward_dim = 16, classes = 5;

const st::File& fixture() {
  static const st::File file = st::load(std::string(GRADFORMER_FIXTURES) + "/torch_hvp.safetensors");
  return file;
}

const st::TensorRecord& record(const std::string& name) {
  const auto found = fixture().tensors.find(name);
  if (found == fixture().tensors.end()) FAIL("torch_hvp.safetensors holds no tensor named ", name);
  return found->second;
}

Tensor f64_tensor(const std::string& name) {
  const auto& stored = record(name);
  return from_vector<double>(st::values<double>(stored, name), stored.shape);
}

Tensor i64_tensor(const std::string& name) {
  const auto& stored = record(name);
  return from_vector<int64_t>(st::values<int64_t>(stored, name), stored.shape);
}

// The script's Model, under its names: attn, norm, hidden, out.
class HvpModel : public nn::Module {
 public:
  HvpModel()
      : attn_(register_module("attn", std::make_shared<nn::MultiheadAttention>(nn::MultiheadAttentionOptions{
                                          .embed_dim = model_dim, .num_heads = heads, .dropout = 0.0}))),
        norm_(register_module("norm", std::make_shared<nn::LayerNorm>(Shape{model_dim}))),
        hidden_(register_module("hidden", std::make_shared<nn::Linear>(model_dim, feedforward_dim))),
        out_(register_module("out", std::make_shared<nn::Linear>(feedforward_dim, classes))) {}

  Tensor loss(const Tensor& x, const Tensor& key_padding_mask, const Tensor& targets) const {
    const Tensor a = attn_->forward(x, x, x, {.key_padding_mask = key_padding_mask}).output;  // (B, T, D)
    const Tensor n = norm_->forward(x + a);
    const Tensor logits = out_->forward(gelu(hidden_->forward(n)));  // (B, T, C)
    return cross_entropy(reshape(logits, {-1, classes}), targets);
  }

 private:
  std::shared_ptr<nn::MultiheadAttention> attn_;
  std::shared_ptr<nn::LayerNorm> norm_;
  std::shared_ptr<nn::Linear> hidden_, out_;
};

// The model in f64 with the script's weights, and what the loss is taken with.
struct Setup {
  HvpModel model;
  Tensor x, key_padding_mask, targets;
  std::vector<std::string> names;  // input.x, then every parameter by its dotted name
  std::vector<Tensor> thetas;

  Setup() {
    model.to(DType::f64);
    nn::StateDict weights;
    for (const auto& [name, parameter] : model.named_parameters()) weights.emplace(name, f64_tensor(name));
    model.load_state_dict(weights);
    model.eval();
    x = f64_tensor("input.x").requires_grad_();
    key_padding_mask = ne(i64_tensor("key_padding_mask"), 0.0);
    targets = i64_tensor("targets");
    names.push_back("input.x");
    thetas.push_back(x);
    for (const auto& [name, parameter] : model.named_parameters()) {
      names.push_back(name);
      thetas.push_back(parameter);
    }
  }
  Tensor loss() const { return model.loss(x, key_padding_mask, targets); }
};

// max |ours - theirs| / max |theirs|, the error measure the tolerance is stated in.
double relative_error(const Tensor& ours, const Tensor& theirs) {
  const auto a = ours.to_vector<double>(), b = theirs.to_vector<double>();
  double difference = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = std::max(difference, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? difference / scale : difference;
}

void check_close(const Tensor& ours, const std::string& name) {
  INFO(name);
  REQUIRE(ours.defined());
  const Tensor theirs = f64_tensor(name);
  REQUIRE(ours.shape() == theirs.shape());
  CHECK(relative_error(ours, theirs) <= tolerance);
}

}  // namespace

TEST_CASE("torch_hvp: the fixture holds what make_torch_hvp.py promises") {
  const auto& metadata = fixture().metadata;
  REQUIRE(metadata.contains("torch_version"));
  CHECK(metadata.at("torch_version").starts_with("1.13"));
  const Setup setup;
  for (const std::string& name : setup.names) {
    CAPTURE(name);
    for (const char* kind : {"grad.", "v.", "hvp."}) CHECK(fixture().tensors.contains(kind + name));
  }
}

TEST_CASE("torch_hvp: the loss and its first-order gradients match PyTorch's") {
  const Setup setup;
  const Tensor loss = setup.loss();
  CHECK(relative_error(loss, f64_tensor("loss")) <= tolerance);
  loss.backward();
  for (size_t i = 0; i < setup.thetas.size(); ++i) check_close(setup.thetas[i].grad(), "grad." + setup.names[i]);
}

TEST_CASE("torch_hvp: Hessian-vector products through attention, layer norm, GELU and cross entropy match "
          "PyTorch's") {
  const Setup setup;
  const std::vector<Tensor> grads = grad({setup.loss()}, setup.thetas, {}, {.create_graph = true});
  REQUIRE(grads.size() == setup.thetas.size());
  Tensor dot = scalar_tensor(0.0, DType::f64);
  for (size_t i = 0; i < grads.size(); ++i) {
    check_close(grads[i], "grad." + setup.names[i]);
    dot = dot + sum(grads[i] * f64_tensor("v." + setup.names[i]));
  }
  const std::vector<Tensor> hvps = grad({dot}, setup.thetas);
  for (size_t i = 0; i < hvps.size(); ++i) check_close(hvps[i], "hvp." + setup.names[i]);
}

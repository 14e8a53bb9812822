// Parity with PyTorch: nn::MultiheadAttention, TransformerEncoderLayer and TransformerDecoderLayer given
// PyTorch's weights, inputs and masks must give PyTorch's outputs and, for the loss sum(output * R), its input
// and parameter gradients. The golden data is tests/fixtures/torch_parity.safetensors, written by
// tests/fixtures/make_torch_parity.py (its header says how it was run and which names it writes).
// Both sides compute in f32, so the bounds allow for rounding in a different order, nothing more: outputs within
// 1e-5 and gradients within 1e-4 of the largest magnitude of PyTorch's tensor. Not a gradient check (the layer
// table does that in f64) and not a test of training-mode dropout, which the fixture turns off.
#include "nn/attention.h"
#include "nn/module.h"
#include "nn/safetensors.h"
#include "nn/transformer.h"
#include "ops/ops.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#ifndef GRADFORMER_FIXTURES
#error "tests/meson.build defines GRADFORMER_FIXTURES as the directory holding the fixtures"
#endif

using namespace gradformer;
namespace st = gradformer::safetensors;

namespace {

constexpr double output_tolerance = 1e-5;
constexpr double gradient_tolerance = 1e-4;

// The script's sizes: B = 2, T = 3, S = 4, D = 8, H = 2, feed-forward width 16.
constexpr int64_t model_dim = 8, heads = 2, feedforward_dim = 16;

const st::File& fixture() {
  static const st::File file = st::load(std::string(GRADFORMER_FIXTURES) + "/torch_parity.safetensors");
  return file;
}

const st::TensorRecord& record(const std::string& name) {
  const auto found = fixture().tensors.find(name);
  if (found == fixture().tensors.end()) FAIL("torch_parity.safetensors holds no tensor named ", name);
  return found->second;
}

// An F32 record as an f32 tensor, optionally a leaf that requires grad.
Tensor f32_tensor(const std::string& name, bool requires_grad = false) {
  const auto& stored = record(name);
  Tensor result = from_vector<float>(st::values<float>(stored, name), stored.shape);
  if (requires_grad) result.requires_grad_();
  return result;
}

// An I64 0/1 record as the bool mask PyTorch was given (true where the record holds 1).
Tensor bool_mask(const std::string& name) {
  const auto& stored = record(name);
  const auto values = st::values<int64_t>(stored, name);
  REQUIRE_MESSAGE(std::all_of(values.begin(), values.end(), [](int64_t v) { return v == 0 || v == 1; }),
                  name, " holds values other than 0 and 1");
  return ne(from_vector<int64_t>(values, stored.shape), 0.0);
}

// The weights the script stored for the module under `prefix`: every F32 tensor under the prefix that is not an
// input, output, R or gradient. Loading them strictly checks that the two sides have the same parameter names.
nn::StateDict weights(const std::string& prefix) {
  nn::StateDict dict;
  for (const auto& [name, stored] : fixture().tensors) {
    if (!name.starts_with(prefix) || stored.dtype != st::DType::F32) continue;
    const std::string local = name.substr(prefix.size());
    if (local.starts_with("input.") || local.starts_with("grad.") || local == "output" || local == "weights" ||
        local == "R")
      continue;
    dict.emplace(local, f32_tensor(name));
  }
  return dict;
}

// max |ours - theirs| / max |theirs|, the error measure the tolerances are stated in.
double relative_error(const Tensor& ours, const Tensor& theirs) {
  const auto x = ours.to_vector<double>(), y = theirs.to_vector<double>();
  double difference = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    difference = std::max(difference, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? difference / scale : difference;
}

void check_close(const Tensor& ours, const std::string& name, double tolerance) {
  INFO(name);
  REQUIRE(ours.defined());
  const Tensor theirs = f32_tensor(name);
  REQUIRE(ours.shape() == theirs.shape());
  CHECK(relative_error(ours, theirs) <= tolerance);
}

// Backward of sum(output * R) with the script's R.
void backward_with_fixture_r(const Tensor& output, const std::string& prefix) {
  sum(output * f32_tensor(prefix + "R")).backward();
}

// Every parameter's gradient against the script's grad.<name>.
void check_parameter_gradients(const nn::Module& module, const std::string& prefix) {
  for (const auto& [name, parameter] : module.named_parameters()) {
    check_close(parameter.grad(), prefix + "grad." + name, gradient_tolerance);
  }
}

}  // namespace

TEST_CASE("torch_parity: the fixture holds what make_torch_parity.py promises") {
  const auto& metadata = fixture().metadata;
  REQUIRE(metadata.contains("torch_version"));
  CHECK(metadata.at("torch_version").starts_with("1.13"));
  // The decoder's tgt_mask is the causal one, which our decoder takes as a flag rather than a tensor.
  const auto tgt_mask = st::values<int64_t>(record("dec.tgt_mask"), "dec.tgt_mask");
  const auto& shape = record("dec.tgt_mask").shape;
  REQUIRE(shape.size() == 2);
  for (int64_t i = 0; i < shape[0]; ++i) {
    for (int64_t j = 0; j < shape[1]; ++j) CHECK(tgt_mask[i * shape[1] + j] == (j > i ? 1 : 0));
  }
  for (const char* prefix : {"mha.", "enc.", "dec."}) {
    CAPTURE(prefix);
    CHECK(!weights(prefix).empty());
  }
}

TEST_CASE("torch_parity: MultiheadAttention with a key padding mask") {
  const std::string prefix = "mha.";
  nn::MultiheadAttention attention({.embed_dim = model_dim, .num_heads = heads, .dropout = 0.0});
  attention.load_state_dict(weights(prefix));
  attention.eval();
  const Tensor query = f32_tensor(prefix + "input.query", true);  // (B, T, D)
  const Tensor key = f32_tensor(prefix + "input.key", true);      // (B, S, D)
  const Tensor value = f32_tensor(prefix + "input.value", true);  // (B, S, D)

  nn::MultiheadAttentionForwardOptions options;
  options.key_padding_mask = bool_mask(prefix + "key_padding_mask");  // (B, S)
  options.need_weights = true;
  options.average_attn_weights = true;
  const AttentionResult result = attention.forward(query, key, value, options);
  check_close(result.output, prefix + "output", output_tolerance);    // (B, T, D)
  check_close(result.weights, prefix + "weights", output_tolerance);  // (B, T, S)

  backward_with_fixture_r(result.output, prefix);
  check_close(query.grad(), prefix + "grad.input.query", gradient_tolerance);
  check_close(key.grad(), prefix + "grad.input.key", gradient_tolerance);
  check_close(value.grad(), prefix + "grad.input.value", gradient_tolerance);
  check_parameter_gradients(attention, prefix);
}

TEST_CASE("torch_parity: TransformerEncoderLayer, post-norm, with a source padding mask") {
  const std::string prefix = "enc.";
  nn::TransformerEncoderLayer layer(
      {.d_model = model_dim, .nhead = heads, .dim_feedforward = feedforward_dim, .dropout = 0.0});
  layer.load_state_dict(weights(prefix));
  layer.eval();
  const Tensor src = f32_tensor(prefix + "input.src", true);  // (B, S, D)

  const Tensor output = layer.forward(src, bool_mask(prefix + "src_key_padding_mask"));  // (B, S, D)
  check_close(output, prefix + "output", output_tolerance);

  backward_with_fixture_r(output, prefix);
  check_close(src.grad(), prefix + "grad.input.src", gradient_tolerance);
  check_parameter_gradients(layer, prefix);
}

TEST_CASE("torch_parity: TransformerDecoderLayer, post-norm, causal, with target and memory padding masks") {
  const std::string prefix = "dec.";
  nn::TransformerDecoderLayer layer(
      {.d_model = model_dim, .nhead = heads, .dim_feedforward = feedforward_dim, .dropout = 0.0});
  layer.load_state_dict(weights(prefix));
  layer.eval();
  const Tensor tgt = f32_tensor(prefix + "input.tgt", true);        // (B, T, D)
  const Tensor memory = f32_tensor(prefix + "input.memory", true);  // (B, S, D)

  // The script's tgt_mask is the causal mask (checked by the first test case), which we pass as tgt_causal.
  const Tensor output = layer.forward(tgt, memory, /*tgt_causal=*/true, bool_mask(prefix + "tgt_key_padding_mask"),
                                      bool_mask(prefix + "memory_key_padding_mask"));  // (B, T, D)
  check_close(output, prefix + "output", output_tolerance);

  backward_with_fixture_r(output, prefix);
  check_close(tgt.grad(), prefix + "grad.input.tgt", gradient_tolerance);
  check_close(memory.grad(), prefix + "grad.input.memory", gradient_tolerance);
  check_parameter_gradients(layer, prefix);
}

// The Transformer layers of nn/transformer.h: the feed-forward block and positional encodings against their
// formulas, encoder and decoder layers against their composition from their own children (post- and pre-norm),
// causality, key/value-cached decoding against full decoding, nn.Transformer's state_dict keys, and errors.
#include "nn/transformer.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace gradformer;
using gradformer::testing::message_of;
using testing::max_abs_difference;

namespace {

// The child `name` of module as its concrete type.
template <class M>
std::shared_ptr<M> child(const nn::Module& module, const std::string& name) {
  for (const auto& [child_name, c] : module.named_children())
    if (child_name == name) return std::dynamic_pointer_cast<M>(c);
  return nullptr;
}

std::vector<std::string> child_names(const nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& [name, c] : module.named_children()) names.push_back(name);
  return names;
}

// Randomises every parameter, so LayerNorm's ones and zeros and the zero attention biases do not hide a term.
void randomise(nn::Module& module, Generator& gen) {
  for (const Tensor& p : module.parameters()) p.copy_(randn(p.shape(), gen, p.dtype()));
}

Tensor self_attention(const nn::MultiheadAttention& m, const Tensor& x, bool causal, const Tensor& padding = {}) {
  nn::MultiheadAttentionForwardOptions options;
  options.causal = causal;
  options.key_padding_mask = padding;
  return m.forward(x, x, x, options).output;
}

}  // namespace

TEST_CASE("FeedForward: linear2(act(linear1(x))) with PyTorch's child names") {
  Generator gen(1);
  for (nn::Activation activation : {nn::Activation::relu, nn::Activation::gelu}) {
    nn::FeedForward ff({.d_model = 4, .dim_feedforward = 6, .dropout = 0.1, .activation = activation}, gen);
    ff.eval();
    CHECK(child_names(ff) == std::vector<std::string>{"linear1", "dropout", "linear2"});
    const Tensor x = randn({2, 3, 4}, gen);
    const auto l1 = child<nn::Linear>(ff, "linear1"), l2 = child<nn::Linear>(ff, "linear2");
    const Tensor hidden = l1->forward(x);
    const Tensor expected = l2->forward(activation == nn::Activation::relu ? relu(hidden) : gelu(hidden));
    CHECK(max_abs_difference(ff.forward(x), expected) == 0.0);
    ff.train();
    CHECK(max_abs_difference(ff.forward(x), expected) > 1e-6);  // dropout in training
  }
}

TEST_CASE("Positional encodings: Vaswani's sin/cos table, offsets, the learned table, max_len") {
  nn::SinusoidalPositionalEncoding sinusoidal(6, 10);
  CHECK(sinusoidal.pe().shape() == Shape{10, 6});
  CHECK(sinusoidal.named_buffers().size() == 1);
  CHECK(sinusoidal.parameters().empty());
  for (int64_t p : {0, 3, 9})
    for (int64_t i = 0; i < 3; ++i) {
      const double angle = static_cast<double>(p) / std::pow(10000.0, 2.0 * static_cast<double>(i) / 6.0);
      CHECK(sinusoidal.pe().at({p, 2 * i}) == doctest::Approx(std::sin(angle)));
      CHECK(sinusoidal.pe().at({p, 2 * i + 1}) == doctest::Approx(std::cos(angle)));
    }
  Generator gen(2);
  const Tensor x = randn({2, 3, 6}, gen);
  CHECK(max_abs_difference(sinusoidal.forward(x, 4), x + narrow(sinusoidal.pe(), 0, 4, 3)) == 0.0);
  CHECK(message_of<IndexError>([&] { sinusoidal.forward(x, 8); }) ==
        "SinusoidalPositionalEncoding: positions 8..10 of input [2, 3, 6] exceed max_len 10");
  CHECK(message_of<ShapeError>([&] { sinusoidal.forward(zeros({2, 3, 5})); }) ==
        "SinusoidalPositionalEncoding: input [2, 3, 5]: expected (B, L, 6) (d_model)");

  // Both encodings take (d_model, max_len).
  nn::LearnedPositionalEncoding learned(6, 5, gen);
  CHECK(learned.weight().shape() == Shape{5, 6});
  CHECK(learned.named_parameters().front().first == "weight");
  CHECK(max_abs_difference(learned.forward(x, 1), x + narrow(learned.weight(), 0, 1, 3)) == 0.0);
  CHECK(message_of<IndexError>([&] { learned.forward(x, 3); }) ==
        "LearnedPositionalEncoding: positions 3..5 of input [2, 3, 6] exceed max_len 5");
}

TEST_CASE("TransformerEncoderLayer: PyTorch's children, post-norm and pre-norm as composed from them") {
  Generator gen(3);
  for (bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    nn::TransformerEncoderLayer layer({.d_model = 4, .nhead = 2, .dim_feedforward = 6, .norm_first = norm_first}, gen);
    CHECK(child_names(layer) == std::vector<std::string>{"self_attn", "linear1", "dropout", "linear2", "norm1", "norm2",
                                                         "dropout1", "dropout2"});
    layer.to(DType::f64);
    randomise(layer, gen);
    layer.eval();
    const auto sa = child<nn::MultiheadAttention>(layer, "self_attn");
    const auto l1 = child<nn::Linear>(layer, "linear1"), l2 = child<nn::Linear>(layer, "linear2");
    const auto n1 = child<nn::LayerNorm>(layer, "norm1"), n2 = child<nn::LayerNorm>(layer, "norm2");
    const auto ff = [&](const Tensor& x) { return l2->forward(relu(l1->forward(x))); };
    const Tensor x = randn({2, 3, 4}, gen, DType::f64);
    const Tensor padding = from_vector<bool>({0, 0, 1, 0, 0, 0}, {2, 3});
    Tensor expected;
    if (norm_first) {
      const Tensor h = x + self_attention(*sa, n1->forward(x), true, padding);
      expected = h + ff(n2->forward(h));
    } else {
      const Tensor h = n1->forward(x + self_attention(*sa, x, true, padding));
      expected = n2->forward(h + ff(h));
    }
    CHECK(max_abs_difference(layer.forward(x, padding, {}, true), expected) < 1e-12);
  }
}

TEST_CASE("TransformerDecoderLayer: PyTorch's children and post-norm computation; causal outputs ignore the future") {
  Generator gen(4);
  nn::TransformerDecoderLayer layer(
      {.d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.1, .activation = nn::Activation::gelu}, gen);
  CHECK(child_names(layer) == std::vector<std::string>{"self_attn", "multihead_attn", "linear1", "dropout", "linear2",
                                                       "norm1", "norm2", "norm3", "dropout1", "dropout2", "dropout3"});
  layer.to(DType::f64);
  randomise(layer, gen);
  layer.eval();
  const Tensor tgt = randn({2, 4, 4}, gen, DType::f64), memory = randn({2, 3, 4}, gen, DType::f64);
  const Tensor memory_padding = from_vector<bool>({0, 0, 1, 0, 0, 0}, {2, 3});
  const auto sa = child<nn::MultiheadAttention>(layer, "self_attn");
  const auto ca = child<nn::MultiheadAttention>(layer, "multihead_attn");
  const auto l1 = child<nn::Linear>(layer, "linear1"), l2 = child<nn::Linear>(layer, "linear2");
  const auto n1 = child<nn::LayerNorm>(layer, "norm1"), n2 = child<nn::LayerNorm>(layer, "norm2"),
             n3 = child<nn::LayerNorm>(layer, "norm3");
  nn::MultiheadAttentionForwardOptions cross;
  cross.key_padding_mask = memory_padding;
  Tensor h = n1->forward(tgt + self_attention(*sa, tgt, true));
  h = n2->forward(h + ca->forward(h, memory, memory, cross).output);
  const Tensor expected = n3->forward(h + l2->forward(gelu(l1->forward(h))));
  const Tensor got = layer.forward(tgt, memory, true, {}, memory_padding);
  CHECK(max_abs_difference(got, expected) < 1e-12);

  Tensor future = tgt.clone();
  narrow(future, 1, 2, 2).copy_(randn({2, 2, 4}, gen, DType::f64));
  CHECK(max_abs_difference(narrow(layer.forward(future, memory, true, {}, memory_padding), 1, 0, 2),
                           narrow(got, 1, 0, 2)) == 0.0);
  // Without the causal mask the first steps do see the later ones.
  CHECK(max_abs_difference(narrow(layer.forward(future, memory, false), 1, 0, 2),
                           narrow(layer.forward(tgt, memory, false), 1, 0, 2)) > 1e-6);

  // The encoder layer with causal self-attention, likewise.
  nn::TransformerEncoderLayer encoder_layer(
      {.d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.0, .norm_first = true}, gen);
  encoder_layer.to(DType::f64);
  CHECK(max_abs_difference(narrow(encoder_layer.forward(future, {}, {}, true), 1, 0, 2),
                           narrow(encoder_layer.forward(tgt, {}, {}, true), 1, 0, 2)) == 0.0);
}

TEST_CASE("Decoding step by step with a cache equals full causal decoding (decoder layer and Transformer)") {
  Generator gen(5);
  for (bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    nn::Transformer model({.layer = {.d_model = 8, .nhead = 2, .dim_feedforward = 12, .norm_first = norm_first},
                           .num_encoder_layers = 2,
                           .num_decoder_layers = 2},
                          gen);
    model.to(DType::f64);
    randomise(model, gen);
    model.eval();
    NoGradGuard no_grad;
    const Tensor src = randn({2, 3, 8}, gen, DType::f64), tgt = randn({2, 5, 8}, gen, DType::f64);
    const Tensor src_padding = from_vector<bool>({0, 0, 0, 0, 0, 1}, {2, 3});
    const Tensor memory = model.encode(src, src_padding);
    nn::DecodeMasks masks;
    masks.memory_key_padding_mask = src_padding;
    const Tensor full = model.decode(tgt, memory, masks);
    CHECK(max_abs_difference(full, model.forward(src, tgt, src_padding, {}, src_padding)) == 0.0);

    nn::DecoderCache cache;
    std::vector<Tensor> steps;
    for (int64_t t = 0; t < 5; ++t) steps.push_back(model.decode(narrow(tgt, 1, t, 1), memory, masks, &cache));
    CHECK(max_abs_difference(concat(steps, 1), full) < 1e-12);
    REQUIRE(cache.layers.size() == 2);
    CHECK(cache.layers[1].self_attn.key.shape() == Shape{2, 2, 5, 4});
    CHECK(cache.layers[1].cross_attn.key.shape() == Shape{2, 2, 3, 4});

    const auto layer = model.decoder().layers().at<nn::TransformerDecoderLayer>(0);
    const Tensor layer_full = layer->forward(tgt, memory, true, {}, src_padding);
    nn::DecoderLayerCache layer_cache;
    std::vector<Tensor> layer_steps;
    for (int64_t t = 0; t < 5; ++t)
      layer_steps.push_back(layer->forward(narrow(tgt, 1, t, 1), memory, true, {}, src_padding, &layer_cache));
    CHECK(max_abs_difference(concat(layer_steps, 1), layer_full) < 1e-12);
  }
}

TEST_CASE("Transformer: state_dict keys equal nn.Transformer's, in PyTorch's parameter order") {
  Generator gen(6);
  nn::Transformer model(
      {.layer = {.d_model = 8, .nhead = 2, .dim_feedforward = 12}, .num_encoder_layers = 2, .num_decoder_layers = 2},
      gen);
  const std::vector<std::string> attention{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"};
  const std::vector<std::string> feed_forward{"linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"};
  std::vector<std::string> expected;
  for (int layer = 0; layer < 2; ++layer) {
    const std::string prefix = "encoder.layers." + std::to_string(layer) + ".";
    for (const auto& name : attention) expected.push_back(prefix + "self_attn." + name);
    for (const auto& name : feed_forward) expected.push_back(prefix + name);
    for (const char* name : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}) expected.push_back(prefix + name);
  }
  expected.insert(expected.end(), {"encoder.norm.weight", "encoder.norm.bias"});
  for (int layer = 0; layer < 2; ++layer) {
    const std::string prefix = "decoder.layers." + std::to_string(layer) + ".";
    for (const auto& name : attention) expected.push_back(prefix + "self_attn." + name);
    for (const auto& name : attention) expected.push_back(prefix + "multihead_attn." + name);
    for (const auto& name : feed_forward) expected.push_back(prefix + name);
    for (const char* name : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "norm3.weight", "norm3.bias"})
      expected.push_back(prefix + name);
  }
  expected.insert(expected.end(), {"decoder.norm.weight", "decoder.norm.bias"});

  std::vector<std::string> got;
  for (const auto& [name, p] : model.named_parameters()) got.push_back(name);
  CHECK(got == expected);
  std::vector<std::string> keys;
  for (const auto& [name, t] : model.state_dict()) keys.push_back(name);
  std::sort(expected.begin(), expected.end());
  CHECK(keys == expected);
  const nn::StateDict state = model.state_dict();
  CHECK(state.at("encoder.layers.0.self_attn.in_proj_weight").shape() == Shape{24, 8});
  CHECK(state.at("decoder.layers.1.multihead_attn.out_proj.bias").shape() == Shape{8});
  CHECK(state.at("encoder.layers.1.linear1.weight").shape() == Shape{12, 8});
  CHECK(state.at("decoder.layers.0.linear2.weight").shape() == Shape{8, 12});
  // nn.Transformer re-draws every matrix Xavier-uniform: bound √(6 / (fan_in + fan_out)).
  CHECK(testing::max_abs(state.at("encoder.layers.0.linear1.weight")) <= std::sqrt(6.0 / 20.0));
  CHECK(testing::max_abs(state.at("encoder.layers.0.self_attn.out_proj.weight")) <= std::sqrt(6.0 / 16.0));
}

TEST_CASE("Transformer layers: errors name the layer and the shapes") {
  Generator gen(7);
  const nn::TransformerLayerOptions options{.d_model = 8, .nhead = 2, .dim_feedforward = 16};
  nn::TransformerEncoderLayer encoder_layer(options, gen);
  CHECK(message_of<ShapeError>([&] { encoder_layer.forward(zeros({2, 3, 6})); }) ==
        "TransformerEncoderLayer: src [2, 3, 6]: expected (B, L, 8) (d_model)");
  nn::TransformerDecoderLayer decoder_layer(options, gen);
  CHECK(message_of<ShapeError>([&] { decoder_layer.forward(zeros({2, 3, 8}), zeros({2, 4})); }) ==
        "TransformerDecoderLayer: memory [2, 4]: expected (B, L, 8) (d_model)");
  CHECK(message_of<ValueError>([&] { nn::TransformerEncoderLayer(10, 3, gen); }) ==
        "MultiheadAttention: embed_dim 10 is not divisible by num_heads 3");
  CHECK(message_of<ValueError>(
            [&] { nn::TransformerDecoderLayer({.d_model = 8, .nhead = 0, .dim_feedforward = 16}, gen); }) ==
        "TransformerDecoderLayer: d_model 8, nhead 0 and dim_feedforward 16 must be positive");
  CHECK(message_of<ValueError>([&] {
          nn::Transformer({.layer = {.d_model = 8, .nhead = 2}, .num_encoder_layers = 0, .num_decoder_layers = 1}, gen);
        }) ==
        "TransformerEncoder: num_layers 0 must be positive");
  CHECK(message_of<ValueError>([&] { nn::SinusoidalPositionalEncoding(0); }) ==
        "SinusoidalPositionalEncoding: d_model 0 and max_len 1024 must be positive");
}

namespace {

// A norm and a feed-forward of a user's: the factories' products stand in for LayerNorm and linear1/linear2.
class ScaleNorm : public nn::UnaryModule {
 public:
  explicit ScaleNorm(int64_t) { gain_ = register_parameter("gain", ones({})); }
  std::string type_name() const override { return "ScaleNorm"; }
  Tensor forward(const Tensor& x) const override {  // x / |x| · g over the last axis
    return x * rsqrt(sum(x * x, {-1}, true) + 1e-6) * gain_;
  }

 private:
  Tensor gain_;
};

class GatedFeedForward : public nn::UnaryModule {
 public:
  GatedFeedForward(int64_t d_model, int64_t hidden, Generator& gen) {
    gate_ = register_module("gate", std::make_shared<nn::Linear>(d_model, hidden, false, gen));
    out_ = register_module("out", std::make_shared<nn::Linear>(hidden, d_model, false, gen));
  }
  std::string type_name() const override { return "GatedFeedForward"; }
  Tensor forward(const Tensor& x) const override { return out_->forward(silu(gate_->forward(x))); }

 private:
  std::shared_ptr<nn::Linear> gate_, out_;
};

nn::TransformerLayerOptions custom_layer_options(bool norm_first) {
  return {.d_model = 8,
          .nhead = 2,
          .dim_feedforward = 16,
          .dropout = 0.0,
          .norm_first = norm_first,
          .feed_forward = [](const nn::TransformerLayerOptions& o, Generator& gen) -> std::shared_ptr<nn::UnaryModule> {
            return std::make_shared<GatedFeedForward>(o.d_model, o.dim_feedforward, gen);
          },
          .norm = [](int64_t d) -> std::shared_ptr<nn::UnaryModule> { return std::make_shared<ScaleNorm>(d); }};
}

}  // namespace

TEST_CASE("Transformer layers take a user's feed-forward and norm through their factories") {
  for (bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    Generator gen(3);
    const nn::TransformerEncoder encoder(custom_layer_options(norm_first), 2, true, gen);
    std::vector<std::string> names;
    for (const auto& entry : encoder.named_parameters()) names.push_back(entry.first);
    CHECK(std::find(names.begin(), names.end(), "layers.0.feed_forward.gate.weight") != names.end());
    CHECK(std::find(names.begin(), names.end(), "layers.1.norm2.gain") != names.end());
    CHECK(std::find(names.begin(), names.end(), "norm.gain") != names.end());
    CHECK(std::none_of(names.begin(), names.end(), [](const std::string& n) { return n.find("linear1") != n.npos; }));

    const Tensor src = randn({2, 3, 8}, gen);
    const Tensor y = encoder.forward(src);  // (B, S, D)
    CHECK(y.shape() == Shape{2, 3, 8});
    // The final norm is ScaleNorm's: every position has unit length.
    const std::vector<float> lengths = sqrt(sum(y * y, {-1})).to_vector<float>();
    for (float length : lengths) CHECK(length == doctest::Approx(1.0).epsilon(1e-4));

    const nn::TransformerDecoder decoder(custom_layer_options(norm_first), 1, true, gen);
    const Tensor out = decoder.forward(randn({2, 4, 8}, gen), y);
    CHECK(out.shape() == Shape{2, 4, 8});
    sum(out).backward();
    for (const auto& [name, p] : decoder.named_parameters()) {
      CAPTURE(name);
      CHECK(p.grad().defined());
    }
  }
  nn::TransformerLayerOptions broken = custom_layer_options(false);
  broken.norm = [](int64_t) { return std::shared_ptr<nn::UnaryModule>(); };
  CHECK(message_of<ValueError>([&] { nn::TransformerEncoderLayer layer(broken); }) ==
        "TransformerEncoderLayer: the norm factory returned a null module");
}

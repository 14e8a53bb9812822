// The attention layers of nn/attention.h against the same formulas written out from basic ops: the lecture's
// Attention as softmax(Kᵀ q_j) one query at a time, MultiheadAttention head by head with sliced weights, in value
// and gradient; causality, key padding, the key/value cache against full decoding, parameters and errors.
#include "nn/attention.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>

using namespace gradformer;
using gradformer::testing::message_of;
using testing::max_abs_difference;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Element i of t along axis 0, as a tensor of rank one less.
Tensor row(const Tensor& t, int64_t i) { return squeeze(narrow(t, 0, i, 1), 0); }

// Runs fn on fresh leaves holding `inputs` (the module's own parameters already are leaves), backpropagates
// sum(out * weights) and returns the output, each input's gradient, then each parameter's gradient.
std::vector<Tensor> value_and_grads(nn::Module& module, const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                    const std::vector<Tensor>& inputs, const Tensor& weights) {
  module.zero_grad();
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) leaves.push_back(t.detach().clone().requires_grad_());
  const Tensor out = fn(leaves);
  sum(out * weights).backward();
  std::vector<Tensor> result{out.detach()};
  for (const Tensor& t : leaves) result.push_back(t.grad());
  for (const Tensor& p : module.parameters()) result.push_back(p.grad());
  return result;
}

void check_same(const std::vector<Tensor>& got, const std::vector<Tensor>& expected, double tolerance = 1e-10) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    REQUIRE(got[i].defined());
    REQUIRE(expected[i].defined());
    CHECK(got[i].shape() == expected[i].shape());
    CHECK(max_abs_difference(got[i], expected[i]) <= tolerance);
  }
}

// The lecture, one sequence b and one query j at a time: K = W_K Xᵀ (d_k, S), V = W_V Xᵀ (d_v, S),
// q_j = W_Q x'_j, α_j = softmax(Kᵀ q_j · scale), c_j = V α_j. padding (B, S) true = masked out, or undefined.
Tensor lecture_attention(const nn::Attention& m, const Tensor& decoder_inputs, const Tensor& encoder_inputs,
                         const Tensor& padding, double scale) {
  std::vector<Tensor> batches;
  for (int64_t b = 0; b < decoder_inputs.size(0); ++b) {
    const Tensor x = row(encoder_inputs, b);                   // (S, key_dim)
    const Tensor keys = matmul(m.w_k(), transpose(x, 0, 1));    // (d_k, S)
    const Tensor values = matmul(m.w_v(), transpose(x, 0, 1));  // (d_v, S)
    std::vector<Tensor> contexts;
    for (int64_t j = 0; j < decoder_inputs.size(1); ++j) {
      const Tensor q = matmul(m.w_q(), row(row(decoder_inputs, b), j));  // (d_k)
      Tensor scores = matmul(transpose(keys, 0, 1), q) * scale;         // (S)
      if (padding.defined()) scores = masked_fill(scores, row(padding, b), -kInf);
      contexts.push_back(matmul(values, softmax(scores, 0)));  // (d_v)
    }
    batches.push_back(stack(contexts, 0));  // (T, d_v)
  }
  return stack(batches, 0);  // (B, T, d_v)
}

// nn.MultiheadAttention written out: sliced projections, a loop over heads with its own softmax, the heads
// concatenated, then out_proj. attn_mask additive (T, S) or undefined; padding (B, S) true = padding.
Tensor per_head_attention(const nn::MultiheadAttention& m, const Tensor& query, const Tensor& key, const Tensor& value,
                          const Tensor& attn_mask, const Tensor& padding, std::vector<Tensor>* probabilities = nullptr) {
  const int64_t E = m.embed_dim(), H = m.num_heads(), Dh = E / H;
  const Tensor& w = m.in_proj_weight();
  const Tensor& b = m.in_proj_bias();
  const Tensor q = linear(query, slice(w, 0, 0, E), slice(b, 0, 0, E));           // (B, T, E)
  const Tensor k = linear(key, slice(w, 0, E, 2 * E), slice(b, 0, E, 2 * E));     // (B, S, E)
  const Tensor v = linear(value, slice(w, 0, 2 * E, 3 * E), slice(b, 0, 2 * E, 3 * E));
  std::vector<Tensor> heads;
  for (int64_t h = 0; h < H; ++h) {
    const Tensor qh = slice(q, -1, h * Dh, (h + 1) * Dh), kh = slice(k, -1, h * Dh, (h + 1) * Dh),
                 vh = slice(v, -1, h * Dh, (h + 1) * Dh);
    Tensor scores = matmul(qh, transpose(kh, -1, -2)) / std::sqrt(static_cast<double>(Dh));  // (B, T, S)
    if (attn_mask.defined()) scores = scores + attn_mask;
    if (padding.defined()) scores = masked_fill(scores, unsqueeze(padding, 1), -kInf);
    const Tensor p = softmax(scores, -1);
    if (probabilities) probabilities->push_back(p.detach());
    heads.push_back(matmul(p, vh));  // (B, T, Dh)
  }
  return linear(concat(heads, -1), m.out_proj().weight(), m.out_proj().bias());
}

Tensor causal_additive(int64_t steps, int64_t keys) {
  Tensor mask = zeros({steps, keys}, DType::f64);
  for (int64_t i = 0; i < steps; ++i)
    for (int64_t j = i + 1; j < keys; ++j) mask.set_at({i, j}, -kInf);
  return mask;
}

// A layer in f64 with non-zero biases, so every term of the projections is exercised.
std::shared_ptr<nn::MultiheadAttention> make_mha(int64_t E, int64_t H, Generator& gen, double dropout = 0.0) {
  auto m = std::make_shared<nn::MultiheadAttention>(
      nn::MultiheadAttentionOptions{.embed_dim = E, .num_heads = H, .dropout = dropout}, gen);
  m->to(DType::f64);
  m->in_proj_bias().detach().copy_(randn({3 * E}, gen, DType::f64));
  m->out_proj().bias().detach().copy_(randn({E}, gen, DType::f64));
  return m;
}

}  // namespace

TEST_CASE("Attention: the lecture's softmax(Kᵀq_j) and c_j = V α_j, in value and gradient") {
  Generator gen(1);
  for (bool scaled : {true, false}) {
    for (bool padded : {false, true}) {
      CAPTURE(scaled);
      CAPTURE(padded);
      nn::Attention m({.query_dim = 3, .key_dim = 5, .value_dim = 2, .attention_dim = 4, .scaled = scaled}, gen);
      m.to(DType::f64);
      const Tensor xd = randn({2, 3, 3}, gen, DType::f64), xe = randn({2, 4, 5}, gen, DType::f64);
      const Tensor padding = padded ? from_vector<bool>({false, false, true, true, false, false, false, true}, {2, 4})
                                    : Tensor{};
      const Tensor r = randn({2, 3, 2}, gen, DType::f64);
      const double scale = scaled ? 0.5 : 1.0;  // 1/√d_k with d_k = 4
      const auto got = value_and_grads(
          m, [&](const std::vector<Tensor>& x) { return m.forward(x[0], x[1], padding).output; }, {xd, xe}, r);
      const auto expected = value_and_grads(
          m, [&](const std::vector<Tensor>& x) { return lecture_attention(m, x[0], x[1], padding, scale); }, {xd, xe},
          r);
      check_same(got, expected);
    }
  }
}

TEST_CASE("Attention: weights are α_j, rows summing to one, zero on padding; SelfAttention is Attention(X, X)") {
  Generator gen(2);
  nn::Attention m({.query_dim = 3, .key_dim = 3, .value_dim = 2, .attention_dim = 4}, gen);
  const Tensor x = randn({2, 4, 3}, gen);
  const Tensor padding = from_vector<bool>({false, false, false, true, false, true, true, true}, {2, 4});
  const AttentionResult out = m.forward(x, x, padding, false, true);
  CHECK(out.output.shape() == Shape{2, 4, 2});
  REQUIRE(out.weights.shape() == Shape{2, 4, 4});
  for (double s : sum(out.weights, {-1}).to_vector<double>()) CHECK(s == doctest::Approx(1.0));
  for (int64_t j = 0; j < 4; ++j) {
    CHECK(out.weights.at({0, j, 3}) == 0.0);
    CHECK(out.weights.at({1, j, 0}) == doctest::Approx(1.0));
  }
  CHECK_FALSE(m.forward(x, x).weights.defined());

  Generator g1(9), g2(9);
  nn::SelfAttention self({.dim = 3, .value_dim = 2, .attention_dim = 4}, g1);
  nn::Attention plain({.query_dim = 3, .key_dim = 3, .value_dim = 2, .attention_dim = 4}, g2);
  std::vector<std::string> names;
  for (const auto& [name, p] : self.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"attention.w_q", "attention.w_k", "attention.w_v"});
  CHECK(max_abs_difference(self.forward(x, padding, true).output, plain.forward(x, x, padding, true).output) == 0.0);
}

TEST_CASE("Attention and MultiheadAttention: causal outputs ignore the future, padded keys are ignored") {
  Generator gen(3);
  nn::SelfAttention self({.dim = 4, .value_dim = 2, .attention_dim = 3}, gen);
  auto mha = make_mha(4, 2, gen);
  self.to(DType::f64);
  const Tensor x = randn({2, 5, 4}, gen, DType::f64);
  Tensor future = x.clone();
  narrow(future, 1, 3, 2).copy_(randn({2, 2, 4}, gen, DType::f64));
  nn::MultiheadAttentionForwardOptions causal;
  causal.causal = true;
  const auto early = [](const Tensor& t) { return narrow(t, 1, 0, 3); };
  CHECK(max_abs_difference(early(self.forward(x, {}, true).output), early(self.forward(future, {}, true).output)) ==
        0.0);
  CHECK(max_abs_difference(early(mha->forward(x, x, x, causal).output),
                           early(mha->forward(future, future, future, causal).output)) == 0.0);
  // The last output does see the changed steps.
  CHECK(max_abs_difference(mha->forward(x, x, x, causal).output, mha->forward(future, future, future, causal).output) >
        1e-6);

  // Keys 3 and 4 of every sequence are padding: changing them changes nothing.
  const Tensor padding = from_vector<bool>({0, 0, 0, 1, 1, 0, 0, 0, 1, 1}, {2, 5});
  nn::MultiheadAttentionForwardOptions padded;
  padded.key_padding_mask = padding;
  const Tensor query = randn({2, 3, 4}, gen, DType::f64);
  CHECK(max_abs_difference(mha->forward(query, x, x, padded).output,
                           mha->forward(query, future, future, padded).output) == 0.0);
  CHECK(max_abs_difference(self.attention().forward(query, x, padding).output,
                           self.attention().forward(query, future, padding).output) == 0.0);
}

TEST_CASE("MultiheadAttention: equals the head-by-head computation in value and gradient") {
  Generator gen(4);
  auto m = make_mha(6, 3, gen);
  const Tensor x = randn({2, 3, 6}, gen, DType::f64), memory = randn({2, 4, 6}, gen, DType::f64),
               other = randn({2, 4, 6}, gen, DType::f64);
  const Tensor padding = from_vector<bool>({0, 0, 0, 1, 0, 1, 0, 0}, {2, 4});

  SUBCASE("self-attention through the fused projection") {
    const Tensor r = randn({2, 3, 6}, gen, DType::f64);
    check_same(value_and_grads(*m, [&](const std::vector<Tensor>& in) { return m->forward(in[0], in[0], in[0]).output; },
                               {x}, r),
               value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return per_head_attention(*m, in[0], in[0], in[0], {}, {});
               }, {x}, r));
  }
  SUBCASE("causal self-attention with key padding") {
    const Tensor r = randn({2, 3, 6}, gen, DType::f64);
    const Tensor self_padding = from_vector<bool>({0, 0, 1, 0, 0, 0}, {2, 3});
    nn::MultiheadAttentionForwardOptions options;
    options.causal = true;
    options.key_padding_mask = self_padding;
    check_same(value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return m->forward(in[0], in[0], in[0], options).output;
               }, {x}, r),
               value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return per_head_attention(*m, in[0], in[0], in[0], causal_additive(3, 3), self_padding);
               }, {x}, r));
  }
  SUBCASE("cross-attention, key is value, with key padding and a float attn_mask") {
    const Tensor r = randn({2, 3, 6}, gen, DType::f64);
    const Tensor bias = randn({3, 4}, gen, DType::f64);
    nn::MultiheadAttentionForwardOptions options;
    options.key_padding_mask = padding;
    options.attn_mask = bias;
    check_same(value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return m->forward(in[0], in[1], in[1], options).output;
               }, {x, memory}, r),
               value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return per_head_attention(*m, in[0], in[1], in[1], bias, padding);
               }, {x, memory}, r));
  }
  SUBCASE("three distinct tensors, a bool attn_mask (true = not allowed) and the weights") {
    const Tensor r = randn({2, 3, 6}, gen, DType::f64);
    const Tensor blocked = from_vector<bool>({0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0}, {3, 4});
    nn::MultiheadAttentionForwardOptions options;
    options.attn_mask = blocked;
    check_same(value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return m->forward(in[0], in[1], in[2], options).output;
               }, {x, memory, other}, r),
               value_and_grads(*m, [&](const std::vector<Tensor>& in) {
                 return per_head_attention(*m, in[0], in[1], in[2], masked_fill(zeros({3, 4}, DType::f64), blocked, -kInf),
                                           {});
               }, {x, memory, other}, r));
    std::vector<Tensor> probabilities;
    per_head_attention(*m, x, memory, other, masked_fill(zeros({3, 4}, DType::f64), blocked, -kInf), {}, &probabilities);
    options.need_weights = true;
    const AttentionResult averaged = m->forward(x, memory, other, options);
    options.average_attn_weights = false;
    const AttentionResult per_head = m->forward(x, memory, other, options);
    REQUIRE(per_head.weights.shape() == Shape{2, 3, 3, 4});
    CHECK(max_abs_difference(per_head.weights, stack(probabilities, 1)) < 1e-12);
    CHECK(max_abs_difference(averaged.weights, mean(stack(probabilities, 1), {1})) < 1e-12);
    CHECK(max_abs_difference(averaged.output, m->forward(x, memory, other, {.attn_mask = blocked}).output) == 0.0);
  }
}

TEST_CASE("MultiheadAttention: parameters, names and initialisation follow nn.MultiheadAttention") {
  Generator gen(5);
  nn::MultiheadAttention m(8, 2, gen);
  std::vector<std::pair<std::string, Shape>> got;
  for (const auto& [name, p] : m.named_parameters()) got.emplace_back(name, p.shape());
  CHECK(got == std::vector<std::pair<std::string, Shape>>{
                   {"in_proj_weight", {24, 8}}, {"in_proj_bias", {24}}, {"out_proj.weight", {8, 8}}, {"out_proj.bias", {8}}});
  CHECK(testing::max_abs(m.in_proj_bias()) == 0.0);
  CHECK(testing::max_abs(m.out_proj().bias()) == 0.0);
  const double xavier = std::sqrt(6.0 / (24 + 8));
  CHECK(testing::max_abs(m.in_proj_weight()) <= xavier);
  CHECK(testing::max_abs(m.in_proj_weight()) > 0.5 * xavier);
  CHECK(testing::max_abs(m.out_proj().weight()) <= 1.0 / std::sqrt(8.0));
  nn::MultiheadAttention no_bias({.embed_dim = 8, .num_heads = 2, .bias = false}, gen);
  CHECK(no_bias.named_parameters().size() == 2);
  CHECK(no_bias.forward(randn({1, 2, 8}, gen), randn({1, 3, 8}, gen), randn({1, 3, 8}, gen)).output.shape() ==
        Shape{1, 2, 8});
}

TEST_CASE("MultiheadAttention: dropout on the weights in training only, reproducible from the current generator") {
  Generator init(6), masks(1);
  auto m = std::make_shared<nn::MultiheadAttention>(
      nn::MultiheadAttentionOptions{.embed_dim = 4, .num_heads = 2, .dropout = 0.5}, init);
  m->to(DType::f64);
  const Tensor x = randn({2, 3, 4}, init, DType::f64);
  const GeneratorGuard guard(masks);
  const Tensor a = m->forward(x, x, x).output;
  masks.manual_seed(1);
  const Tensor b = m->forward(x, x, x).output;
  const Tensor c = m->forward(x, x, x).output;
  CHECK(max_abs_difference(a, b) == 0.0);
  CHECK(max_abs_difference(a, c) > 1e-6);
  m->eval();
  const Tensor e1 = m->forward(x, x, x).output, e2 = m->forward(x, x, x).output;
  CHECK(max_abs_difference(e1, e2) == 0.0);
  CHECK(max_abs_difference(e1, per_head_attention(*m, x, x, x, {}, {})) < 1e-12);
}

TEST_CASE("MultiheadAttention: decoding step by step through a KVCache equals full causal attention") {
  Generator gen(7);
  auto m = make_mha(4, 2, gen);
  m->eval();
  NoGradGuard no_grad;
  const Tensor x = randn({2, 5, 4}, gen, DType::f64), memory = randn({2, 3, 4}, gen, DType::f64);
  nn::MultiheadAttentionForwardOptions causal;
  causal.causal = true;
  const Tensor full_self = m->forward(x, x, x, causal).output;
  const Tensor full_cross = m->forward(x, memory, memory).output;

  // Self-attention in pieces of 1, 2 and 2 steps: the 2-step pieces need the end-aligned causal mask.
  nn::KVCache self_cache;
  nn::KVCache cross_cache{.static_kv = true};
  std::vector<Tensor> self_steps, cross_steps;
  for (auto [start, length] : {std::pair<int64_t, int64_t>{0, 1}, {1, 2}, {3, 2}}) {
    const Tensor piece = narrow(x, 1, start, length);
    self_steps.push_back(m->forward(piece, piece, piece, {.causal = true, .cache = &self_cache}).output);
    CHECK(self_cache.key.shape() == Shape{2, 2, start + length, 2});
    const Tensor cached_key = cross_cache.key;
    cross_steps.push_back(m->forward(piece, memory, memory, {.cache = &cross_cache}).output);
    if (cached_key.defined()) CHECK(cross_cache.key.is_same(cached_key));  // projected once, reused
  }
  CHECK(max_abs_difference(concat(self_steps, 1), full_self) < 1e-12);
  CHECK(max_abs_difference(concat(cross_steps, 1), full_cross) < 1e-12);

  // With key padding over every step so far.
  const Tensor padding = from_vector<bool>({0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, {2, 5});
  causal.key_padding_mask = padding;
  const Tensor full_padded = m->forward(x, x, x, causal).output;
  nn::KVCache cache;
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < 5; ++t) {
    const Tensor step = narrow(x, 1, t, 1);
    steps.push_back(m->forward(step, step, step,
                               {.key_padding_mask = narrow(padding, 1, 0, t + 1), .causal = true, .cache = &cache})
                        .output);
  }
  CHECK(max_abs_difference(concat(steps, 1), full_padded) < 1e-12);
}

TEST_CASE("MultiheadAttention: a KVCache grows in place without gradients and by concat with them") {
  Generator gen(9);
  auto m = make_mha(4, 2, gen);
  m->eval();
  const Tensor x = randn({2, 40, 4}, gen, DType::f64);
  nn::MultiheadAttentionForwardOptions causal;
  causal.causal = true;
  Tensor full;
  {
    NoGradGuard no_grad;
    full = m->forward(x, x, x, causal).output;
  }

  // With gradients the cache is a concat in the graph, and no buffer is kept.
  const Tensor y = randn({1, 3, 4}, gen, DType::f64).requires_grad_();
  nn::KVCache graph_cache;
  for (int64_t t = 0; t < 3; ++t) {
    const Tensor step = narrow(y, 1, t, 1);
    m->forward(step, step, step, {.causal = true, .cache = &graph_cache});
  }
  CHECK(!graph_cache.key_buffer.defined());
  sum(graph_cache.key).backward();
  CHECK(y.grad().defined());

  // Decoding: every step writes its keys into the buffer, which the cache's key and value view; the buffer is
  // replaced only when full (16 steps at first, then twice the steps so far) or when a caller replaced the key.
  NoGradGuard no_grad;
  nn::KVCache cache;
  std::vector<Tensor> steps;
  std::vector<int64_t> capacities;
  for (int64_t t = 0; t < 40; ++t) {
    const Tensor step = narrow(x, 1, t, 1);
    steps.push_back(m->forward(step, step, step, {.causal = true, .cache = &cache}).output);
    CHECK(cache.key.shape() == Shape{2, 2, t + 1, 2});
    CHECK(cache.key.raw_data() == cache.key_buffer.raw_data());
    CHECK(cache.value.raw_data() == cache.value_buffer.raw_data());
    if (capacities.empty() || capacities.back() != cache.key_buffer.size(2)) capacities.push_back(cache.key_buffer.size(2));
  }
  CHECK(capacities == std::vector<int64_t>{16, 34, 70});
  CHECK(max_abs_difference(concat(steps, 1), full) < 1e-12);

  // Beam search reorders the cache's rows with a copy; the next step starts a new buffer from it.
  const Tensor reordered = index_select(cache.key, 0, from_vector<int64_t>({1, 0}, {2}));
  cache.key = reordered;
  cache.value = index_select(cache.value, 0, from_vector<int64_t>({1, 0}, {2}));
  const Tensor next = narrow(x, 1, 0, 1);
  m->forward(next, next, next, {.causal = true, .cache = &cache});
  CHECK(cache.key.raw_data() == cache.key_buffer.raw_data());
  CHECK(max_abs_difference(narrow(cache.key, 2, 0, 40), reordered) == 0.0);

}

TEST_CASE("Attention layers: errors name the layer and the shapes") {
  Generator gen(8);
  nn::MultiheadAttention m(16, 4, gen);
  CHECK(message_of<ShapeError>([&] { m.forward(zeros({2, 5, 16}), zeros({2, 7, 12}), zeros({2, 7, 12})); }) ==
        "MultiheadAttention: query [2, 5, 16] and key [2, 7, 12]: embedding dims 16 and 12 differ");
  CHECK(message_of<ShapeError>([&] { m.forward(zeros({2, 5, 8}), zeros({2, 7, 8}), zeros({2, 7, 8})); }) ==
        "MultiheadAttention: query [2, 5, 8]: embedding dim 8, but embed_dim is 16");
  CHECK(message_of<ShapeError>([&] { m.forward(zeros({5, 16}), zeros({2, 7, 16}), zeros({2, 7, 16})); }) ==
        "MultiheadAttention: query [5, 16], key [2, 7, 16], value [2, 7, 16]: expected (B, T, E), (B, S, E), (B, S, E)");
  CHECK(message_of<ShapeError>([&] { m.forward(zeros({2, 5, 16}), zeros({2, 7, 16}), zeros({2, 6, 16})); }) ==
        "MultiheadAttention: key [2, 7, 16] and value [2, 6, 16]: shapes differ");
  CHECK(message_of<ShapeError>([&] { m.forward(zeros({3, 5, 16}), zeros({2, 7, 16}), zeros({2, 7, 16})); }) ==
        "MultiheadAttention: query [3, 5, 16] and key [2, 7, 16]: batch sizes 3 and 2 differ");
  nn::KVCache cache;
  const Tensor step = zeros({2, 1, 16});
  m.forward(step, step, step, {.cache = &cache});
  const Tensor other_batch = zeros({3, 1, 16});
  CHECK(message_of<ShapeError>([&] { m.forward(other_batch, other_batch, other_batch, {.cache = &cache}); }) ==
        "MultiheadAttention: cache keys [2, 4, 1, 4] and new keys [3, 4, 1, 4]: batch, head or head sizes differ");
  CHECK(message_of<ValueError>([&] { nn::MultiheadAttention(10, 3, gen); }) ==
        "MultiheadAttention: embed_dim 10 is not divisible by num_heads 3");
  CHECK(message_of<ValueError>(
            [&] { nn::MultiheadAttention({.embed_dim = 8, .num_heads = 2, .dropout = 1.0}, gen); }) ==
        "MultiheadAttention: dropout 1 is outside [0, 1)");

  nn::Attention a({.query_dim = 3, .key_dim = 5, .value_dim = 2, .attention_dim = 4}, gen);
  CHECK(message_of<ShapeError>([&] { a.forward(zeros({2, 4, 5}), zeros({2, 6, 5})); }) ==
        "Attention: decoder inputs [2, 4, 5]: expected (B, T, 3) (query_dim)");
  CHECK(message_of<ShapeError>([&] { a.forward(zeros({2, 4, 3}), zeros({2, 6})); }) ==
        "Attention: encoder inputs [2, 6]: expected (B, S, 5) (key_dim)");
  CHECK(message_of<ShapeError>([&] { a.forward(zeros({2, 4, 3}), zeros({1, 6, 5})); }) ==
        "Attention: decoder inputs [2, 4, 3] and encoder inputs [1, 6, 5]: batch sizes 2 and 1 differ");
  CHECK(message_of<ValueError>(
            [&] { nn::Attention({.query_dim = 3, .key_dim = 0, .value_dim = 2, .attention_dim = 4}, gen); }) ==
        "Attention: query_dim 3, key_dim 0, value_dim 2 and attention_dim 4 must be positive");
}

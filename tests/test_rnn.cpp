// nn/rnn: the cells against their formulas written with basic ops, the layers' padding semantics (padding changes
// no sequence's outputs, final state or gradients), a long sequence, additive attention's masking, and errors.
// Gradients of every layer are checked numerically by the layer table.
#include "nn/rnn.h"

#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

using namespace gradformer;
using gradformer::testing::max_abs;
using gradformer::testing::max_abs_difference;

namespace {

Tensor normal64(Shape shape, Generator& gen) { return randn(std::move(shape), gen, DType::f64); }

// x·Wᵀ + b with matmul, the reference for the cells' projections.
Tensor affine(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return matmul(x, transpose(weight, 0, 1)) + bias;
}

// Rows [k·H, (k+1)·H) of a stacked gate projection (B, G·H).
Tensor gate(const Tensor& projection, int64_t k, int64_t hidden) { return narrow(projection, 1, k * hidden, hidden); }

// Sequence b of a batch cut to its own length: (1, length, I).
Tensor sequence(const Tensor& x, int64_t b, int64_t length) { return narrow(narrow(x, 0, b, 1), 1, 0, length); }

void check_parameter_names(const nn::Module& m, const std::vector<std::pair<std::string, Shape>>& expected) {
  const auto named = m.named_parameters();
  REQUIRE(named.size() == expected.size());
  for (size_t i = 0; i < named.size(); ++i) {
    CHECK(named[i].first == expected[i].first);
    CHECK(named[i].second.shape() == expected[i].second);
  }
}

// Every parameter inside PyTorch's recurrent bound 1/√H.
void check_recurrent_init(const nn::Module& m, int64_t hidden) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  for (const Tensor& p : m.parameters()) CHECK(max_abs(p) <= bound);
}

}  // namespace

TEST_CASE("rnn: cells have PyTorch's parameter names, shapes and init") {
  Generator gen(1);
  nn::RNNCell rnn(3, 4, nn::Nonlinearity::tanh, true, gen);
  check_parameter_names(rnn, {{"weight_ih", {4, 3}}, {"weight_hh", {4, 4}}, {"bias_ih", {4}}, {"bias_hh", {4}}});
  check_recurrent_init(rnn, 4);
  nn::LSTMCell lstm(3, 4, true, gen);
  check_parameter_names(lstm, {{"weight_ih", {16, 3}}, {"weight_hh", {16, 4}}, {"bias_ih", {16}}, {"bias_hh", {16}}});
  check_recurrent_init(lstm, 4);
  nn::GRUCell gru(3, 4, false, gen);
  check_parameter_names(gru, {{"weight_ih", {12, 3}}, {"weight_hh", {12, 4}}});
  check_recurrent_init(gru, 4);
}

TEST_CASE("rnn: layers name their parameters per layer and direction, as PyTorch") {
  Generator gen(2);
  nn::LSTM lstm({.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}, gen);
  CHECK(lstm.type_name() == "LSTM");
  check_parameter_names(lstm, {{"weight_ih_l0", {16, 3}},
                               {"weight_hh_l0", {16, 4}},
                               {"bias_ih_l0", {16}},
                               {"bias_hh_l0", {16}},
                               {"weight_ih_l0_reverse", {16, 3}},
                               {"weight_hh_l0_reverse", {16, 4}},
                               {"bias_ih_l0_reverse", {16}},
                               {"bias_hh_l0_reverse", {16}},
                               {"weight_ih_l1", {16, 8}},
                               {"weight_hh_l1", {16, 4}},
                               {"bias_ih_l1", {16}},
                               {"bias_hh_l1", {16}},
                               {"weight_ih_l1_reverse", {16, 8}},
                               {"weight_hh_l1_reverse", {16, 4}},
                               {"bias_ih_l1_reverse", {16}},
                               {"bias_hh_l1_reverse", {16}}});
  check_recurrent_init(lstm, 4);
  nn::GRU gru({.input_size = 5, .hidden_size = 3, .bias = false}, gen);
  check_parameter_names(gru, {{"weight_ih_l0", {9, 5}}, {"weight_hh_l0", {9, 3}}});
  nn::RNN rnn({.input_size = 5, .hidden_size = 3}, nn::Nonlinearity::relu, gen);
  CHECK(rnn.named_parameters().size() == 4);
}

TEST_CASE("rnn: RNNCell is act(W_ih x + b_ih + W_hh h + b_hh)") {
  Generator gen(3);
  for (nn::Nonlinearity nonlinearity : {nn::Nonlinearity::tanh, nn::Nonlinearity::relu}) {
    nn::RNNCell cell(3, 4, nonlinearity, true, gen);
    cell.to(DType::f64);
    const Tensor x = normal64({2, 3}, gen), h = normal64({2, 4}, gen);
    const Tensor pre = affine(x, cell.weight_ih(), cell.bias_ih()) + affine(h, cell.weight_hh(), cell.bias_hh());
    const Tensor expected = nonlinearity == nn::Nonlinearity::tanh ? tanh(pre) : relu(pre);
    CHECK(max_abs_difference(cell.forward(x, h), expected) < 1e-12);
    // No state means a zero state.
    CHECK(max_abs_difference(cell.forward(x), cell.forward(x, zeros({2, 4}, DType::f64))) == 0.0);
  }
}

TEST_CASE("rnn: LSTMCell follows the i, f, g, o gate formula") {
  Generator gen(4);
  nn::LSTMCell cell(3, 4, true, gen);
  cell.to(DType::f64);
  const Tensor x = normal64({2, 3}, gen), h = normal64({2, 4}, gen), c = normal64({2, 4}, gen);
  const Tensor gates = affine(x, cell.weight_ih(), cell.bias_ih()) + affine(h, cell.weight_hh(), cell.bias_hh());
  const Tensor i = sigmoid(gate(gates, 0, 4)), f = sigmoid(gate(gates, 1, 4)), g = tanh(gate(gates, 2, 4)),
               o = sigmoid(gate(gates, 3, 4));
  const Tensor c_expected = f * c + i * g;
  const nn::LSTMState state = cell.forward(x, {h, c});
  CHECK(max_abs_difference(state.c, c_expected) < 1e-12);
  CHECK(max_abs_difference(state.h, o * tanh(c_expected)) < 1e-12);
}

TEST_CASE("rnn: GRUCell follows PyTorch's formula, b_hn inside the reset product") {
  Generator gen(5);
  nn::GRUCell cell(3, 4, true, gen);
  cell.to(DType::f64);
  const Tensor x = normal64({2, 3}, gen), h = normal64({2, 4}, gen);
  const Tensor gi = affine(x, cell.weight_ih(), cell.bias_ih());
  const Tensor gh = affine(h, cell.weight_hh(), cell.bias_hh());
  const Tensor r = sigmoid(gate(gi, 0, 4) + gate(gh, 0, 4));
  const Tensor z = sigmoid(gate(gi, 1, 4) + gate(gh, 1, 4));
  const Tensor n = tanh(gate(gi, 2, 4) + r * gate(gh, 2, 4));
  CHECK(max_abs_difference(cell.forward(x, h), (1.0 - z) * n + z * h) < 1e-12);
}

TEST_CASE("rnn: a one-layer RNN over full sequences is its cell applied step by step") {
  Generator gen(6);
  nn::GRU layer(3, 4, gen);
  layer.to(DType::f64);
  nn::GRUCell cell(3, 4, true, gen);
  cell.to(DType::f64);
  // Both register weight_ih, weight_hh, bias_ih, bias_hh in that order (the layer's with the suffix _l0).
  const std::vector<Tensor> layer_params = layer.parameters(), cell_params = cell.parameters();
  for (size_t i = 0; i < cell_params.size(); ++i) cell_params[i].copy_(layer_params[i]);
  const Tensor x = normal64({2, 3, 3}, gen), h0 = normal64({1, 2, 4}, gen);
  const nn::RNNResult result = layer.forward(x, {}, h0);
  Tensor h = squeeze(h0, 0);
  for (int64_t t = 0; t < 3; ++t) {
    h = cell.forward(squeeze(narrow(x, 1, t, 1), 1), h);
    CHECK(max_abs_difference(squeeze(narrow(result.output, 1, t, 1), 1), h) < 1e-12);
  }
  CHECK(max_abs_difference(squeeze(result.h_n, 0), h) < 1e-12);
}

namespace {

// Runs `layer` on a padded batch and on each sequence alone (B = 1, unpadded): outputs, final states and the
// gradients of x and of every parameter must agree, and outputs at padded positions must be zero.
template <class RecurrentLayer, class Run>
void check_padding_changes_nothing(RecurrentLayer& layer, int64_t input_size, const Run& run) {
  Generator gen(7);
  layer.to(DType::f64);
  const std::vector<int64_t> lengths{5, 2, 3, 1};
  const int64_t batch = 4, steps = 5;
  Tensor x = normal64({batch, steps, input_size}, gen);
  x.requires_grad_();
  const Tensor lengths_tensor = from_vector<int64_t>(lengths, {batch});

  // Random weights on each result make every element count in the gradients.
  auto [output, states] = run(layer, x, lengths_tensor);
  const Tensor r_output = normal64(output.shape(), gen);
  std::vector<Tensor> r_states;
  Tensor loss = sum(output * r_output);
  for (const Tensor& s : states) {
    r_states.push_back(normal64(s.shape(), gen));
    loss = loss + sum(s * r_states.back());
  }
  layer.zero_grad();
  loss.backward();
  std::vector<Tensor> batch_grads;
  for (const Tensor& p : layer.parameters()) batch_grads.push_back(p.grad().clone());
  const Tensor x_grad = x.grad();

  std::vector<Tensor> summed(batch_grads.size());
  layer.zero_grad();
  for (int64_t b = 0; b < batch; ++b) {
    CAPTURE(b);
    const int64_t length = lengths[static_cast<size_t>(b)];
    Tensor alone = sequence(x.detach(), b, length).clone();
    alone.requires_grad_();
    auto [output_b, states_b] = run(layer, alone, Tensor());
    const Tensor padded_row = narrow(output, 0, b, 1);
    CHECK(max_abs_difference(narrow(padded_row, 1, 0, length), output_b) < 1e-12);
    if (length < steps) CHECK(max_abs(narrow(padded_row, 1, length, steps - length)) == 0.0);
    Tensor loss_b = sum(output_b * narrow(narrow(r_output, 0, b, 1), 1, 0, length));
    for (size_t i = 0; i < states.size(); ++i) {
      CHECK(max_abs_difference(narrow(states[i], 1, b, 1), states_b[i]) < 1e-12);
      loss_b = loss_b + sum(states_b[i] * narrow(r_states[i], 1, b, 1));
    }
    loss_b.backward();  // parameter gradients accumulate over the sequences
    const Tensor x_grad_row = narrow(x_grad, 0, b, 1);
    CHECK(max_abs_difference(narrow(x_grad_row, 1, 0, length), alone.grad()) < 1e-10);
    if (length < steps) CHECK(max_abs(narrow(x_grad_row, 1, length, steps - length)) == 0.0);
  }
  const std::vector<Tensor> params = layer.parameters();
  for (size_t i = 0; i < params.size(); ++i) CHECK(max_abs_difference(params[i].grad(), batch_grads[i]) < 1e-10);
}

auto run_rnn = [](const auto& layer, const Tensor& x, const Tensor& lengths) {
  const nn::RNNResult r = layer.forward(x, lengths);
  return std::pair{r.output, std::vector<Tensor>{r.h_n}};
};

auto run_lstm = [](const nn::LSTM& layer, const Tensor& x, const Tensor& lengths) {
  const nn::LSTMResult r = layer.forward(x, lengths);
  return std::pair{r.output, std::vector<Tensor>{r.state.h, r.state.c}};
};

}  // namespace

TEST_CASE("rnn: padding changes no sequence's outputs, final state or gradients") {
  Generator gen(8);
  SUBCASE("LSTM, two layers") {
    nn::LSTM layer({.input_size = 3, .hidden_size = 4, .num_layers = 2}, gen);
    check_padding_changes_nothing(layer, 3, run_lstm);
  }
  SUBCASE("LSTM, two layers, bidirectional") {
    nn::LSTM layer({.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}, gen);
    check_padding_changes_nothing(layer, 3, run_lstm);
  }
  SUBCASE("GRU") {
    nn::GRU layer(3, 4, gen);
    check_padding_changes_nothing(layer, 3, run_rnn);
  }
  SUBCASE("GRU, bidirectional") {
    nn::GRU layer({.input_size = 3, .hidden_size = 4, .bidirectional = true}, gen);
    check_padding_changes_nothing(layer, 3, run_rnn);
  }
  SUBCASE("RNN, relu, two layers, no bias") {
    nn::RNN layer({.input_size = 3, .hidden_size = 4, .num_layers = 2, .bias = false}, nn::Nonlinearity::relu, gen);
    check_padding_changes_nothing(layer, 3, run_rnn);
  }
}

TEST_CASE("rnn: a length of 0 gives zero outputs and keeps the initial state") {
  Generator gen(9);
  nn::LSTM layer({.input_size = 3, .hidden_size = 4, .bidirectional = true}, gen);
  const Tensor h0 = randn({2, 2, 4}, gen), c0 = randn({2, 2, 4}, gen);
  const nn::LSTMResult r = layer.forward(randn({2, 3, 3}, gen), from_vector<int64_t>({3, 0}, {2}), {h0, c0});
  CHECK(max_abs(narrow(r.output, 0, 1, 1)) == 0.0);
  CHECK(max_abs_difference(narrow(r.state.h, 1, 1, 1), narrow(h0, 1, 1, 1)) == 0.0);
  CHECK(max_abs_difference(narrow(r.state.c, 1, 1, 1), narrow(c0, 1, 1, 1)) == 0.0);
}

TEST_CASE("rnn: dropout acts between layers in training only") {
  Generator init_a(14), init_b(14);
  nn::LSTM plain({.input_size = 3, .hidden_size = 4, .num_layers = 2}, init_a);
  nn::LSTM dropped({.input_size = 3, .hidden_size = 4, .num_layers = 2, .dropout = 0.5}, init_b);
  Generator gen(15);
  const Tensor x = randn({2, 3, 3}, gen), lengths = from_vector<int64_t>({3, 2}, {2});
  plain.eval();
  dropped.eval();
  CHECK(max_abs_difference(dropped.forward(x, lengths).output, plain.forward(x, lengths).output) == 0.0);
  dropped.train();
  const nn::LSTMResult r = dropped.forward(x, lengths);
  CHECK(max_abs_difference(r.output, plain.forward(x, lengths).output) > 0.0);
  CHECK(max_abs(narrow(narrow(r.output, 0, 1, 1), 1, 2, 1)) == 0.0);  // padding stays zero
}

TEST_CASE("rnn: a 5,000-step RNN runs forward and backward without deep recursion") {
  Generator gen(10);
  nn::RNN layer(1, 2, gen);
  // f64, whose tiny products go to OpenBLAS on this thread: the f32 path's oneDNN primitives open an OpenMP
  // region per product, which alone took 7 to 18 s for these 10,000 products when other jobs held the cores.
  // Deep recursion would overflow the stack and crash; how fast it runs is a benchmark's business, not a test's.
  layer.to(DType::f64);
  Tensor x = randn({1, 5000, 1}, gen, DType::f64);
  x.requires_grad_();
  const nn::RNNResult r = layer.forward(x);
  (sum(r.output) + sum(r.h_n)).backward();
  CHECK(x.grad().shape() == Shape{1, 5000, 1});
  for (const Tensor& p : layer.parameters()) CHECK(std::isfinite(max_abs(p.grad())));
}

TEST_CASE("rnn: AdditiveAttention weights are a softmax over the unpadded keys") {
  Generator gen(11);
  nn::AdditiveAttention attention({.query_dim = 4, .key_dim = 3, .attention_dim = 5}, gen);
  attention.to(DType::f64);
  check_parameter_names(attention, {{"w_query.weight", {5, 4}}, {"w_key.weight", {5, 3}}, {"v.weight", {1, 5}}});
  const Tensor query = normal64({2, 4}, gen), keys = normal64({2, 3, 3}, gen), values = normal64({2, 3, 6}, gen);
  const Tensor mask = from_vector<bool>({false, false, true, false, true, true}, {2, 3});
  const AttentionResult r = attention.forward(query, keys, values, mask);
  CHECK(r.output.shape() == Shape{2, 6});
  CHECK(r.weights.shape() == Shape{2, 3});
  CHECK(std::abs(r.weights.at({0, 0}) + r.weights.at({0, 1}) - 1.0) < 1e-12);
  CHECK(r.weights.at({0, 2}) == 0.0);
  CHECK(r.weights.at({1, 0}) == doctest::Approx(1.0));
  CHECK(r.weights.at({1, 1}) == 0.0);
  CHECK(r.weights.at({1, 2}) == 0.0);

  // Against the formula for sentence 0: score_i = vᵀ tanh(W_q s + W_k h_i) over its two real keys.
  std::vector<double> scores;
  for (int64_t i = 0; i < 2; ++i) {
    const Tensor key = squeeze(narrow(narrow(keys, 0, 0, 1), 1, i, 1), 1);  // (1, K)
    const Tensor energy = tanh(matmul(narrow(query, 0, 0, 1), transpose(attention.w_query().weight(), 0, 1)) +
                               matmul(key, transpose(attention.w_key().weight(), 0, 1)));
    scores.push_back(sum(energy * attention.v().weight()).item());
  }
  const double w0 = 1.0 / (1.0 + std::exp(scores[1] - scores[0]));
  CHECK(r.weights.at({0, 0}) == doctest::Approx(w0).epsilon(1e-12));
  const Tensor values0 = narrow(values, 0, 0, 1);  // (1, S, Dv)
  const Tensor context0 = w0 * narrow(values0, 1, 0, 1) + (1 - w0) * narrow(values0, 1, 1, 1);
  CHECK(max_abs_difference(narrow(r.output, 0, 0, 1), reshape(context0, {1, 6})) < 1e-12);

  // Precomputed keys give the same result; T queries at once give the same as one at a time.
  const AttentionResult p =
      attention.forward_projected(query, attention.precompute_keys(keys), values, mask);
  CHECK(max_abs_difference(p.output, r.output) == 0.0);
  const AttentionResult many = attention.forward(unsqueeze(query, 1), keys, values, mask);
  CHECK(many.weights.shape() == Shape{2, 1, 3});
  CHECK(max_abs_difference(squeeze(many.weights, 1), r.weights) < 1e-14);
  CHECK(max_abs_difference(squeeze(many.output, 1), r.output) < 1e-14);
}

TEST_CASE("rnn: AdditiveAttention over a fully padded row gives zeros and finite gradients, never NaN") {
  Generator gen(12);
  nn::AdditiveAttention attention({.query_dim = 4, .key_dim = 3, .attention_dim = 5}, gen);
  Tensor query = randn({2, 2, 4}, gen), keys = randn({2, 3, 3}, gen);
  query.requires_grad_();
  keys.requires_grad_();
  const Tensor mask = from_vector<bool>({false, true, false, true, true, true}, {2, 3});
  const AttentionResult r = attention.forward(query, keys, keys, mask);
  CHECK(max_abs(narrow(r.weights, 0, 1, 1)) == 0.0);
  CHECK(max_abs(narrow(r.output, 0, 1, 1)) == 0.0);
  sum(r.output * randn(r.output.shape(), gen)).backward();
  CHECK(std::isfinite(max_abs(query.grad())));
  CHECK(std::isfinite(max_abs(keys.grad())));
  CHECK(max_abs(narrow(query.grad(), 0, 1, 1)) == 0.0);
  for (const Tensor& p : attention.parameters()) CHECK(std::isfinite(max_abs(p.grad())));
}

TEST_CASE("rnn: errors name the layer and the shapes") {
  Generator gen(13);
  nn::LSTMCell cell(3, 4, true, gen);
  CHECK_THROWS_WITH_AS(cell.forward(zeros({2, 5})), "LSTMCell: input [2, 5]: expected [B, 3] (input_size 3)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(cell.forward(zeros({2, 3}), {zeros({2, 4}), zeros({3, 4})}),
                       "LSTMCell: c [3, 4] for input [2, 3]: expected [2, 4]", ShapeError);
  CHECK_THROWS_WITH_AS(cell.forward(zeros({2, 3}), {zeros({2, 4}), Tensor()}),
                       "LSTMCell: state needs both h and c or neither, got only h", ValueError);
  CHECK_THROWS_WITH_AS(nn::GRUCell(0, 4, true, gen), "GRUCell: input_size 0 and hidden_size 4 must be positive",
                       ValueError);

  nn::GRU gru({.input_size = 3, .hidden_size = 4, .num_layers = 2}, gen);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 3, 5})),
                       "GRU: input [2, 3, 5]: expected [B, S, 3] (batch first, input_size 3)", ShapeError);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 0, 3})), "GRU: input [2, 0, 3]: the sequence length S must be at least 1",
                       ShapeError);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 3, 3}), from_vector<int64_t>({3, 4}, {2})),
                       "GRU: lengths[1] = 4 is outside [0, 3] for input [2, 3, 3]", ValueError);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 3, 3}), from_vector<int64_t>({-1, 2}, {2})),
                       "GRU: lengths[0] = -1 is outside [0, 3] for input [2, 3, 3]", ValueError);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 3, 3}), from_vector<int64_t>({3, 2, 1}, {3})),
                       "GRU: lengths [3] for input [2, 3, 3]: expected [2]", ShapeError);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 3, 3}), zeros({2})), "GRU: lengths must be i64, got f32 [2]",
                       DTypeError);
  CHECK_THROWS_WITH_AS(gru.forward(zeros({2, 3, 3}), {}, zeros({1, 2, 4})),
                       "GRU: h0 [1, 2, 4] for input [2, 3, 3]: expected [2, 2, 4]", ShapeError);
  CHECK_THROWS_WITH_AS(nn::LSTM({.input_size = 3, .hidden_size = 4, .num_layers = 0}, gen),
                       "LSTM: num_layers 0 must be positive", ValueError);
  CHECK_THROWS_WITH_AS(nn::GRU({.input_size = 3, .hidden_size = 4, .num_layers = 2, .dropout = 1.5}, gen),
                       "GRU: dropout = 1.5 is outside [0, 1]", ValueError);

  nn::AdditiveAttention attention({.query_dim = 4, .key_dim = 3, .attention_dim = 5}, gen);
  CHECK_THROWS_WITH_AS(attention.forward(zeros({2, 4}), zeros({2, 3, 2}), zeros({2, 3, 2})),
                       "AdditiveAttention: keys [2, 3, 2]: expected [B, S, 3] (key_dim 3)", ShapeError);
  CHECK_THROWS_WITH_AS(attention.forward(zeros({2, 6}), zeros({2, 3, 3}), zeros({2, 3, 3})),
                       "AdditiveAttention: query [2, 6]: expected [B, 4] or [B, T, 4] (query_dim 4)", ShapeError);
  CHECK_THROWS_WITH_AS(attention.forward(zeros({2, 4}), zeros({2, 3, 3}), zeros({2, 2, 3})),
                       "AdditiveAttention: values [2, 2, 3] for query [2, 4] and 3 keys: expected [2, 3, Dv]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(attention.forward(zeros({2, 4}), zeros({2, 3, 3}), zeros({2, 3, 3}), zeros({2, 3})),
                       "AdditiveAttention: key_padding_mask must be bool, got f32 [2, 3]", DTypeError);
  CHECK_THROWS_WITH_AS(attention.forward(zeros({2, 4}), zeros({2, 3, 3}), zeros({2, 3, 3}),
                                         from_vector<bool>({false, false}, {2, 1})),
                       "AdditiveAttention: key_padding_mask [2, 1] for values [2, 3, 3]: expected [2, 3]",
                       ShapeError);
}

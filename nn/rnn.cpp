#include "nn/rnn.h"

#include "nn/init.h"
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gradformer::nn {
namespace {

// One time step of each recurrence. x_proj (B, G·H) is W_ih x + b_ih for this step, computed by the caller
// (for a whole sequence at once in the layers); h and c are (B, H).
Tensor rnn_step(const Tensor& x_proj, const Tensor& h, const Tensor& weight_hh, const Tensor& bias_hh,
                Nonlinearity nonlinearity) {
  const Tensor pre = x_proj + linear(h, weight_hh, bias_hh);  // (B, H)
  return nonlinearity == Nonlinearity::tanh ? tanh(pre) : relu(pre);
}

LSTMState lstm_step(const Tensor& x_proj, const LSTMState& state, const Tensor& weight_hh, const Tensor& bias_hh) {
  const std::vector<Tensor> gates = chunk(x_proj + linear(state.h, weight_hh, bias_hh), 4, 1);  // i, f, g, o: (B, H)
  const Tensor c = sigmoid(gates[1]) * state.c + sigmoid(gates[0]) * tanh(gates[2]);
  return {sigmoid(gates[3]) * tanh(c), c};
}

Tensor gru_step(const Tensor& x_proj, const Tensor& h, const Tensor& weight_hh, const Tensor& bias_hh) {
  const std::vector<Tensor> xi = chunk(x_proj, 3, 1);                             // r, z, n: (B, H)
  const std::vector<Tensor> hh = chunk(linear(h, weight_hh, bias_hh), 3, 1);  // r, z, n: (B, H)
  const Tensor r = sigmoid(xi[0] + hh[0]);
  const Tensor z = sigmoid(xi[1] + hh[1]);
  const Tensor n = tanh(xi[2] + r * hh[2]);  // b_hn stays inside the reset product, as PyTorch
  return (1.0 - z) * n + z * h;
}

// U(-1/√H, 1/√H), PyTorch's init for every recurrent weight and bias.
Tensor recurrent_uniform(Shape shape, int64_t hidden_size, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  return init::uniform_(empty(std::move(shape)), -bound, bound, gen);
}

void check_sizes(std::string_view layer, int64_t input_size, int64_t hidden_size) {
  if (input_size <= 0 || hidden_size <= 0)
    fail<ValueError>(layer, "input_size {} and hidden_size {} must be positive", input_size, hidden_size);
}

void check_cell_input(std::string_view cell, const Tensor& x, int64_t input_size) {
  if (x.dim() != 2 || x.size(1) != input_size)
    fail<ShapeError>(cell, "input {}: expected [B, {}] (input_size {})", shape_str(x.shape()), input_size,
                     input_size);
}

// A state tensor of `expected` shape, or zeros of it in x's dtype when undefined.
Tensor state_or_zeros(std::string_view where, std::string_view what, const Tensor& state, const Shape& expected,
                      const Tensor& x) {
  if (!state.defined()) return zeros(expected, x.dtype());
  if (state.shape() != expected)
    fail<ShapeError>(where, "{} {} for input {}: expected {}", what, shape_str(state.shape()), shape_str(x.shape()),
                     shape_str(expected));
  return state;
}

// Appends one (B, G·H) view per step of `block` (B, s, G·H), in order. A slice's backward writes into a zero
// tensor the size of what it was cut from, so cutting each of S steps straight out of the whole sequence would
// cost O(S²) in backward; cutting halves out of halves costs O(S log S), with recursion only log2(S) deep.
void split_steps(const Tensor& block, std::vector<Tensor>& steps) {
  const int64_t length = block.size(1);
  if (length == 1) {
    steps.push_back(squeeze(block, 1));
    return;
  }
  const int64_t half = length / 2;
  split_steps(narrow(block, 1, 0, half), steps);
  split_steps(narrow(block, 1, half, length - half), steps);
}

// The i-th slice along axis 0 of h0 (L·D, B, H), as a (B, H) view.
Tensor layer_state(const Tensor& states, int64_t index) { return squeeze(narrow(states, 0, index, 1), 0); }

}  // namespace

RNNCellBase::RNNCellBase(std::string_view type_name, int64_t input_size, int64_t hidden_size, int64_t gates,
                         bool bias, Generator& gen)
    : input_size_(input_size), hidden_size_(hidden_size) {
  check_sizes(type_name, input_size, hidden_size);
  weight_ih_ = register_parameter("weight_ih", recurrent_uniform({gates * hidden_size, input_size}, hidden_size, gen));
  weight_hh_ = register_parameter("weight_hh", recurrent_uniform({gates * hidden_size, hidden_size}, hidden_size, gen));
  if (bias) {
    bias_ih_ = register_parameter("bias_ih", recurrent_uniform({gates * hidden_size}, hidden_size, gen));
    bias_hh_ = register_parameter("bias_hh", recurrent_uniform({gates * hidden_size}, hidden_size, gen));
  }
}

RNNCell::RNNCell(int64_t input_size, int64_t hidden_size, Nonlinearity nonlinearity, bool bias, Generator& gen)
    : RNNCellBase("RNNCell", input_size, hidden_size, 1, bias, gen), nonlinearity_(nonlinearity) {}

Tensor RNNCell::forward(const Tensor& x, const Tensor& h) const {
  check_cell_input("RNNCell", x, input_size_);
  const Tensor h0 = state_or_zeros("RNNCell", "hidden", h, {x.size(0), hidden_size_}, x);
  return rnn_step(linear(x, weight_ih_, bias_ih_), h0, weight_hh_, bias_hh_, nonlinearity_);
}

LSTMCell::LSTMCell(int64_t input_size, int64_t hidden_size, bool bias, Generator& gen)
    : RNNCellBase("LSTMCell", input_size, hidden_size, 4, bias, gen) {}

LSTMState LSTMCell::forward(const Tensor& x, const LSTMState& state) const {
  check_cell_input("LSTMCell", x, input_size_);
  if (state.h.defined() != state.c.defined())
    fail<ValueError>("LSTMCell", "state needs both h and c or neither, got only {}", state.h.defined() ? "h" : "c");
  const Shape expected{x.size(0), hidden_size_};
  const LSTMState s{state_or_zeros("LSTMCell", "h", state.h, expected, x),
                    state_or_zeros("LSTMCell", "c", state.c, expected, x)};
  return lstm_step(linear(x, weight_ih_, bias_ih_), s, weight_hh_, bias_hh_);
}

GRUCell::GRUCell(int64_t input_size, int64_t hidden_size, bool bias, Generator& gen)
    : RNNCellBase("GRUCell", input_size, hidden_size, 3, bias, gen) {}

Tensor GRUCell::forward(const Tensor& x, const Tensor& h) const {
  check_cell_input("GRUCell", x, input_size_);
  const Tensor h0 = state_or_zeros("GRUCell", "hidden", h, {x.size(0), hidden_size_}, x);
  return gru_step(linear(x, weight_ih_, bias_ih_), h0, weight_hh_, bias_hh_);
}

RNNBase::RNNBase(std::string type_name, Mode mode, const RecurrentOptions& options, Generator& gen)
    : type_name_(std::move(type_name)),
      mode_(mode),
      input_size_(options.input_size),
      hidden_size_(options.hidden_size),
      num_layers_(options.num_layers),
      directions_(options.bidirectional ? 2 : 1),
      dropout_(options.dropout) {
  const int64_t input_size = options.input_size, hidden_size = options.hidden_size, num_layers = options.num_layers;
  const double dropout = options.dropout;
  const bool bias = options.bias;
  check_sizes(type_name_, input_size, hidden_size);
  if (num_layers <= 0) fail<ValueError>(type_name_, "num_layers {} must be positive", num_layers);
  if (!(dropout >= 0.0 && dropout <= 1.0)) fail<ValueError>(type_name_, "dropout = {} is outside [0, 1]", dropout);
  const int64_t gates = mode == Mode::lstm ? 4 : mode == Mode::gru ? 3 : 1;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    const int64_t layer_input = layer == 0 ? input_size : directions_ * hidden_size;
    for (int64_t direction = 0; direction < directions_; ++direction) {
      const std::string suffix = fmt::format("_l{}{}", layer, direction == 1 ? "_reverse" : "");
      Weights w;
      w.weight_ih = register_parameter("weight_ih" + suffix,
                                       recurrent_uniform({gates * hidden_size, layer_input}, hidden_size, gen));
      w.weight_hh = register_parameter("weight_hh" + suffix,
                                       recurrent_uniform({gates * hidden_size, hidden_size}, hidden_size, gen));
      if (bias) {
        w.bias_ih = register_parameter("bias_ih" + suffix, recurrent_uniform({gates * hidden_size}, hidden_size, gen));
        w.bias_hh = register_parameter("bias_hh" + suffix, recurrent_uniform({gates * hidden_size}, hidden_size, gen));
      }
      weights_.push_back(std::move(w));
    }
  }
}

LSTMResult RNNBase::run(const Tensor& x, const Tensor& lengths, const Tensor& h0, const Tensor& c0) const {
  const std::string_view name = type_name_;
  if (x.dim() != 3 || x.size(2) != input_size_)
    fail<ShapeError>(name, "input {}: expected [B, S, {}] (batch first, input_size {})", shape_str(x.shape()),
                     input_size_, input_size_);
  const int64_t batch = x.size(0), steps = x.size(1);
  if (steps == 0) fail<ShapeError>(name, "input {}: the sequence length S must be at least 1", shape_str(x.shape()));

  // Step t needs masking only if some sequence has ended by then; before the shortest length none has.
  int64_t shortest = steps;
  if (lengths.defined()) {
    if (lengths.dtype() != DType::i64)
      fail<DTypeError>(name, "lengths must be i64, got {} {}", dtype_name(lengths.dtype()), shape_str(lengths.shape()));
    if (lengths.dim() != 1 || lengths.size(0) != batch)
      fail<ShapeError>(name, "lengths {} for input {}: expected [{}]", shape_str(lengths.shape()), shape_str(x.shape()),
                       batch);
    const std::vector<int64_t> values = lengths.to_vector<int64_t>();
    for (size_t b = 0; b < values.size(); ++b) {
      if (values[b] < 0 || values[b] > steps)
        fail<ValueError>(name, "lengths[{}] = {} is outside [0, {}] for input {}", b, values[b], steps,
                         shape_str(x.shape()));
      shortest = std::min(shortest, values[b]);
    }
  }
  std::vector<Tensor> padding(static_cast<size_t>(steps));  // bool (B, 1): true where step t is past the end
  for (int64_t t = shortest; t < steps; ++t)
    padding[static_cast<size_t>(t)] = unsqueeze(le(lengths, static_cast<double>(t)), 1);

  const Shape state_shape{num_layers_ * directions_, batch, hidden_size_};
  const Tensor h_init = state_or_zeros(name, "h0", h0, state_shape, x);
  const Tensor c_init = mode_ == Mode::lstm ? state_or_zeros(name, "c0", c0, state_shape, x) : Tensor();

  Tensor layer_input = x;  // (B, S, I) for layer 0, then (B, S, D·H)
  std::vector<Tensor> final_h, final_c;
  for (int64_t layer = 0; layer < num_layers_; ++layer) {
    std::vector<Tensor> direction_outputs;
    for (int64_t direction = 0; direction < directions_; ++direction) {
      const int64_t index = layer * directions_ + direction;
      const Weights& w = weights_[static_cast<size_t>(index)];
      std::vector<Tensor> projected;  // S × (B, G·H), from one GEMM over B·S rows
      projected.reserve(static_cast<size_t>(steps));
      split_steps(linear(layer_input, w.weight_ih, w.bias_ih), projected);
      LSTMState state{layer_state(h_init, index), c_init.defined() ? layer_state(c_init, index) : Tensor()};
      std::vector<Tensor> outputs(static_cast<size_t>(steps));
      for (int64_t k = 0; k < steps; ++k) {
        const int64_t t = direction == 0 ? k : steps - 1 - k;
        const Tensor& x_proj = projected[static_cast<size_t>(t)];  // (B, G·H)
        LSTMState next;
        switch (mode_) {
          case Mode::rnn_tanh: next.h = rnn_step(x_proj, state.h, w.weight_hh, w.bias_hh, Nonlinearity::tanh); break;
          case Mode::rnn_relu: next.h = rnn_step(x_proj, state.h, w.weight_hh, w.bias_hh, Nonlinearity::relu); break;
          case Mode::lstm: next = lstm_step(x_proj, state, w.weight_hh, w.bias_hh); break;
          case Mode::gru: next.h = gru_step(x_proj, state.h, w.weight_hh, w.bias_hh); break;
        }
        const Tensor& pad = padding[static_cast<size_t>(t)];
        if (pad.defined()) {
          // Past its end a sequence keeps its state, so the final state is the one at its last valid step.
          next.h = where(pad, state.h, next.h);
          if (next.c.defined()) next.c = where(pad, state.c, next.c);
          outputs[static_cast<size_t>(t)] = masked_fill(next.h, pad, 0.0);
        } else {
          outputs[static_cast<size_t>(t)] = next.h;
        }
        state = std::move(next);
      }
      direction_outputs.push_back(stack(outputs, 1));  // (B, S, H)
      final_h.push_back(state.h);
      if (state.c.defined()) final_c.push_back(state.c);
    }
    layer_input = directions_ == 1 ? direction_outputs[0] : concat(direction_outputs, 2);  // (B, S, D·H)
    if (layer + 1 < num_layers_) layer_input = gradformer::dropout(layer_input, dropout_, is_training());
  }
  return {layer_input, {stack(final_h, 0), final_c.empty() ? Tensor() : stack(final_c, 0)}};
}

RNN::RNN(int64_t input_size, int64_t hidden_size, Generator& gen)
    : RNN(RecurrentOptions{.input_size = input_size, .hidden_size = hidden_size}, Nonlinearity::tanh, gen) {}

RNN::RNN(const RecurrentOptions& options, Nonlinearity nonlinearity, Generator& gen)
    : RNNBase("RNN", nonlinearity == Nonlinearity::tanh ? Mode::rnn_tanh : Mode::rnn_relu, options, gen) {}

RNNResult RNN::forward(const Tensor& x, const Tensor& lengths, const Tensor& h0) const {
  LSTMResult result = run(x, lengths, h0, {});
  return {std::move(result.output), std::move(result.state.h)};
}

LSTM::LSTM(int64_t input_size, int64_t hidden_size, Generator& gen)
    : LSTM(RecurrentOptions{.input_size = input_size, .hidden_size = hidden_size}, gen) {}

LSTM::LSTM(const RecurrentOptions& options, Generator& gen) : RNNBase("LSTM", Mode::lstm, options, gen) {}

LSTMResult LSTM::forward(const Tensor& x, const Tensor& lengths, const LSTMState& state) const {
  if (state.h.defined() != state.c.defined())
    fail<ValueError>("LSTM", "state needs both h0 and c0 or neither, got only {}", state.h.defined() ? "h0" : "c0");
  return run(x, lengths, state.h, state.c);
}

GRU::GRU(int64_t input_size, int64_t hidden_size, Generator& gen)
    : GRU(RecurrentOptions{.input_size = input_size, .hidden_size = hidden_size}, gen) {}

GRU::GRU(const RecurrentOptions& options, Generator& gen) : RNNBase("GRU", Mode::gru, options, gen) {}

RNNResult GRU::forward(const Tensor& x, const Tensor& lengths, const Tensor& h0) const {
  LSTMResult result = run(x, lengths, h0, {});
  return {std::move(result.output), std::move(result.state.h)};
}

AdditiveAttention::AdditiveAttention(const AdditiveAttentionOptions& options, Generator& gen)
    : query_dim_(options.query_dim), key_dim_(options.key_dim), attention_dim_(options.attention_dim) {
  if (query_dim_ <= 0 || key_dim_ <= 0 || attention_dim_ <= 0)
    fail<ValueError>("AdditiveAttention", "query_dim {}, key_dim {} and attention_dim {} must be positive", query_dim_,
                     key_dim_, attention_dim_);
  w_query_ = register_module("w_query", std::make_shared<Linear>(query_dim_, attention_dim_, false, gen));
  w_key_ = register_module("w_key", std::make_shared<Linear>(key_dim_, attention_dim_, false, gen));
  v_ = register_module("v", std::make_shared<Linear>(attention_dim_, 1, false, gen));
}

Tensor AdditiveAttention::precompute_keys(const Tensor& keys) const {
  if (keys.dim() != 3 || keys.size(2) != key_dim_)
    fail<ShapeError>("AdditiveAttention", "keys {}: expected [B, S, {}] (key_dim {})", shape_str(keys.shape()),
                     key_dim_, key_dim_);
  return w_key_->forward(keys);  // (B, S, A)
}

AttentionResult AdditiveAttention::forward(const Tensor& query, const Tensor& keys, const Tensor& values,
                                           const Tensor& key_padding_mask) const {
  return forward_projected(query, precompute_keys(keys), values, key_padding_mask);
}

AttentionResult AdditiveAttention::forward_projected(const Tensor& query, const Tensor& projected_keys,
                                                     const Tensor& values, const Tensor& key_padding_mask) const {
  constexpr std::string_view name = "AdditiveAttention";
  if ((query.dim() != 2 && query.dim() != 3) || query.size(-1) != query_dim_)
    fail<ShapeError>(name, "query {}: expected [B, {}] or [B, T, {}] (query_dim {})", shape_str(query.shape()),
                     query_dim_, query_dim_, query_dim_);
  if (projected_keys.dim() != 3 || projected_keys.size(2) != attention_dim_ || projected_keys.size(0) != query.size(0))
    fail<ShapeError>(name, "projected keys {} for query {}: expected [{}, S, {}] (attention_dim {})",
                     shape_str(projected_keys.shape()), shape_str(query.shape()), query.size(0), attention_dim_,
                     attention_dim_);
  const int64_t batch = query.size(0), sources = projected_keys.size(1);
  if (values.dim() != 3 || values.size(0) != batch || values.size(1) != sources)
    fail<ShapeError>(name, "values {} for query {} and {} keys: expected [{}, {}, Dv]", shape_str(values.shape()),
                     shape_str(query.shape()), sources, batch, sources);
  if (key_padding_mask.defined()) {
    if (key_padding_mask.dtype() != DType::boolean)
      fail<DTypeError>(name, "key_padding_mask must be bool, got {} {}", dtype_name(key_padding_mask.dtype()),
                       shape_str(key_padding_mask.shape()));
    if (key_padding_mask.shape() != Shape{batch, sources})
      fail<ShapeError>(name, "key_padding_mask {} for values {}: expected [{}, {}]",
                       shape_str(key_padding_mask.shape()), shape_str(values.shape()), batch, sources);
  }

  const bool single = query.dim() == 2;
  const Tensor q = single ? unsqueeze(query, 1) : query;                       // (B, T, Q)
  const Tensor projected_query = unsqueeze(w_query_->forward(q), 2);          // (B, T, 1, A)
  const Tensor energy = tanh(projected_query + unsqueeze(projected_keys, 1));  // (B, T, S, A)
  Tensor scores = squeeze(v_->forward(energy), 3);                             // (B, T, S)
  if (key_padding_mask.defined())
    scores = masked_fill(scores, unsqueeze(key_padding_mask, 1), -std::numeric_limits<double>::infinity());
  // softmax gives an all -inf row zeros, so a fully padded query has zero weights, zero context, zero gradients.
  const Tensor weights = softmax(scores, -1);  // (B, T, S)
  const Tensor context = bmm(weights, values);  // (B, T, Dv)
  if (single) return {squeeze(context, 1), squeeze(weights, 1)};
  return {context, weights};
}

}  // namespace gradformer::nn

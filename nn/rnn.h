// Recurrent layers and Bahdanau's additive attention: the encoder and decoder of an RNN Seq2Seq with attention
// (Bahdanau, Cho and Bengio 2015). The cells (RNNCell, LSTMCell, GRUCell) and the layers over padded batches
// (RNN, LSTM, GRU) follow PyTorch's parameter names, shapes, gate order and initialisation; the layers are
// always batch-first. Built from existing ops (linear, sigmoid, tanh, where, ...): no kernel of its own.
//
// Padded batches: a layer takes lengths i64 [B] and runs every sequence over the full S steps, but for steps
// t >= length_b it keeps the previous state (h_t = where(padding, h_prev, h_new)), so the final state is the
// state at each sequence's own last valid step, as with pack_padded_sequence, and outputs at padded positions
// are zero. A reverse direction starts from the initial state and only begins to move at t = length_b - 1.
// A length of 0 is allowed: that sequence's outputs are all zero and its final state is its initial state.
//
// Not here: projections (proj_size), batch-second layouts.
#pragma once

#include "nn/layers.h"
#include "nn/module.h"
#include "ops/attention.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::nn {

enum class Nonlinearity { tanh, relu };

struct LSTMState {
  Tensor h;  // (B, H) for a cell; (L·D, B, H) for a layer, D = 2 if bidirectional else 1
  Tensor c;  // same shape as h
};

// What the three cells share, as torch.nn.RNNCellBase: sizes and PyTorch's parameters weight_ih [G·H, I],
// weight_hh [G·H, H], bias_ih and bias_hh [G·H] (undefined without bias), G the number of gates, all drawn from
// U(-1/√H, 1/√H).
class RNNCellBase : public Module {
 public:
  int64_t input_size() const { return input_size_; }
  int64_t hidden_size() const { return hidden_size_; }
  const Tensor& weight_ih() const { return weight_ih_; }
  const Tensor& weight_hh() const { return weight_hh_; }
  const Tensor& bias_ih() const { return bias_ih_; }
  const Tensor& bias_hh() const { return bias_hh_; }

 protected:
  RNNCellBase(std::string_view type_name, int64_t input_size, int64_t hidden_size, int64_t gates, bool bias,
              Generator& gen);

  int64_t input_size_, hidden_size_;
  Tensor weight_ih_, weight_hh_, bias_ih_, bias_hh_;
};

// h' = act(W_ih x + b_ih + W_hh h + b_hh), one gate: weight_ih [H, I], as torch.nn.RNNCell.
class RNNCell : public RNNCellBase {
 public:
  RNNCell(int64_t input_size, int64_t hidden_size, Nonlinearity nonlinearity = Nonlinearity::tanh, bool bias = true,
          Generator& gen = current_generator());
  std::string type_name() const override { return "RNNCell"; }
  // x (B, I), h (B, H) or undefined (zeros) -> h' (B, H).
  Tensor forward(const Tensor& x, const Tensor& h = {}) const;

 private:
  Nonlinearity nonlinearity_;
};

// Gates i, f, g, o stacked in that order: weight_ih [4H, I], weight_hh [4H, H], biases [4H].
// c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g), h' = σ(o) ⊙ tanh(c'), as torch.nn.LSTMCell.
class LSTMCell : public RNNCellBase {
 public:
  LSTMCell(int64_t input_size, int64_t hidden_size, bool bias = true, Generator& gen = current_generator());
  std::string type_name() const override { return "LSTMCell"; }
  // x (B, I), state {h, c} each (B, H) or both undefined (zeros) -> {h', c'}.
  LSTMState forward(const Tensor& x, const LSTMState& state = {}) const;
};

// Gates r, z, n stacked in that order: weight_ih [3H, I], weight_hh [3H, H], biases [3H]. PyTorch's formula,
// with b_hn inside the reset product: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
class GRUCell : public RNNCellBase {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, bool bias = true, Generator& gen = current_generator());
  std::string type_name() const override { return "GRUCell"; }
  // x (B, I), h (B, H) or undefined (zeros) -> h' (B, H).
  Tensor forward(const Tensor& x, const Tensor& h = {}) const;
};

struct RNNResult {
  Tensor output;  // (B, S, D·H), zeros at padded positions
  Tensor h_n;     // (L·D, B, H): layer l's direction d at row l·D + d, each at its sequence's last valid step
};

struct LSTMResult {
  Tensor output;    // (B, S, D·H), zeros at padded positions
  LSTMState state;  // h_n and c_n, each (L·D, B, H)
};

// The arguments RNN, LSTM and GRU share (PyTorch's RNNBase); input_size and hidden_size are required.
struct RecurrentOptions {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bias = true;
  bool bidirectional = false;
  double dropout = 0.0;  // between layers, in training
};

// What RNN, LSTM and GRU share (PyTorch's RNNBase): parameters weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
// bias_hh_l{k} (suffix _reverse for the backward direction), all U(-1/√H, 1/√H); layer k > 0 reads D·H inputs.
// The input projection of a whole sequence is one GEMM over B·S rows; only the recurrent one runs per step.
// In training, `dropout` zeroes the outputs of every layer but the last before the next layer reads them, as
// PyTorch (final states are never dropped); its masks come from the thread's current generator.
class RNNBase : public Module {
 public:
  enum class Mode { rnn_tanh, rnn_relu, lstm, gru };

  std::string type_name() const override { return type_name_; }
  int64_t input_size() const { return input_size_; }
  int64_t hidden_size() const { return hidden_size_; }
  int64_t num_layers() const { return num_layers_; }
  bool bidirectional() const { return directions_ == 2; }
  double dropout() const { return dropout_; }

 protected:
  RNNBase(std::string type_name, Mode mode, const RecurrentOptions& options, Generator& gen);
  // x (B, S, I); lengths i64 (B) in [0, S] or undefined (all S); h0 and c0 (L·D, B, H) or undefined (zeros),
  // c0 only for LSTM. The result's state.c is defined only for LSTM.
  LSTMResult run(const Tensor& x, const Tensor& lengths, const Tensor& h0, const Tensor& c0) const;

 private:
  struct Weights {
    Tensor weight_ih, weight_hh, bias_ih, bias_hh;
  };
  std::string type_name_;
  Mode mode_;
  int64_t input_size_, hidden_size_, num_layers_, directions_;
  double dropout_;
  std::vector<Weights> weights_;  // layer l, direction d at l·D + d
};

// Elman RNN over a padded batch: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).
class RNN : public RNNBase {
 public:
  RNN(int64_t input_size, int64_t hidden_size, Generator& gen = current_generator());
  explicit RNN(const RecurrentOptions& options, Nonlinearity nonlinearity = Nonlinearity::tanh,
               Generator& gen = current_generator());
  // x (B, S, I), lengths i64 (B) or undefined, h0 (L·D, B, H) or undefined.
  RNNResult forward(const Tensor& x, const Tensor& lengths = {}, const Tensor& h0 = {}) const;
};

class LSTM : public RNNBase {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, Generator& gen = current_generator());
  explicit LSTM(const RecurrentOptions& options, Generator& gen = current_generator());
  // x (B, S, I), lengths i64 (B) or undefined, state {h0, c0} each (L·D, B, H) or both undefined.
  LSTMResult forward(const Tensor& x, const Tensor& lengths = {}, const LSTMState& state = {}) const;
};

class GRU : public RNNBase {
 public:
  GRU(int64_t input_size, int64_t hidden_size, Generator& gen = current_generator());
  explicit GRU(const RecurrentOptions& options, Generator& gen = current_generator());
  // x (B, S, I), lengths i64 (B) or undefined, h0 (L·D, B, H) or undefined.
  RNNResult forward(const Tensor& x, const Tensor& lengths = {}, const Tensor& h0 = {}) const;
};

// AdditiveAttention's sizes, all required: queries of query_dim, keys of key_dim, scored in attention_dim.
struct AdditiveAttentionOptions {
  int64_t query_dim = 0;
  int64_t key_dim = 0;
  int64_t attention_dim = 0;
};

// Bahdanau's attention: score(s, h_i) = vᵀ tanh(W_q s + W_k h_i), weights = softmax over the S keys, context =
// Σ_i weights_i · value_i. Children w_query (Linear Q → A), w_key (Linear K → A) and v (Linear A → 1), none
// with a bias. A query whose keys are all padding gets zero weights and a zero context, never NaN.
class AdditiveAttention : public Module {
 public:
  explicit AdditiveAttention(const AdditiveAttentionOptions& options, Generator& gen = current_generator());
  std::string type_name() const override { return "AdditiveAttention"; }
  // W_k h for every key: keys (B, S, K) -> (B, S, A). A decoder computes it once per source sentence and passes
  // it to forward_projected at every step.
  Tensor precompute_keys(const Tensor& keys) const;
  // query (B, Q) or (B, T, Q), keys (B, S, K), values (B, S, Dv), key_padding_mask bool (B, S) with true =
  // padding, or undefined. Output: the context (B, Dv) or (B, T, Dv); weights (B, S) or (B, T, S), each row
  // summing to 1 over unpadded keys, 0 on padding.
  AttentionResult forward(const Tensor& query, const Tensor& keys, const Tensor& values,
                          const Tensor& key_padding_mask = {}) const;
  // The same with projected_keys = precompute_keys(keys), (B, S, A).
  AttentionResult forward_projected(const Tensor& query, const Tensor& projected_keys, const Tensor& values,
                                    const Tensor& key_padding_mask = {}) const;
  const Linear& w_query() const { return *w_query_; }
  const Linear& w_key() const { return *w_key_; }
  const Linear& v() const { return *v_; }

 private:
  int64_t query_dim_, key_dim_, attention_dim_;
  std::shared_ptr<Linear> w_query_, w_key_, v_;
};

}  // namespace gradformer::nn

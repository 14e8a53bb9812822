#include "models/rnn_seq2seq.h"

#include "models/data/tokenizer.h"
#include "ops/ops.h"

namespace gradformer::models {

struct RnnAttentionSeq2Seq::State : DecoderState {
  Tensor keys;            // encoder outputs (B, S, 2H)
  Tensor projected_keys;  // W_k keys (B, S, A), computed once
  Tensor source_padding;  // bool (B, S)
  Tensor h, c;            // decoder state (B, H); c for LSTM only
  Tensor context;         // previous context (B, 2H)

  void select(const Tensor& rows) override {
    for (Tensor* t : {&keys, &projected_keys, &source_padding, &h, &c, &context})
      if (t->defined()) *t = select_rows(*t, rows);
  }
};

RnnAttentionSeq2Seq::RnnAttentionSeq2Seq(const RnnSizes& sizes, nlohmann::json config, Generator& gen)
    : sizes_(sizes), config_(std::move(config)) {
  const int64_t e = sizes.embedding_dim, h = sizes.hidden_size;
  embedding_ = register_module("embedding", std::make_shared<nn::Embedding>(sizes.vocab_size, e, data::pad_id, gen));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(sizes.dropout));
  const nn::RecurrentOptions encoder{.input_size = e, .hidden_size = h, .bidirectional = true};
  if (sizes.lstm) {
    lstm_encoder_ = register_module("encoder", std::make_shared<nn::LSTM>(encoder, gen));
    lstm_decoder_ = register_module("decoder", std::make_shared<nn::LSTMCell>(e + 2 * h, h, true, gen));
  } else {
    gru_encoder_ = register_module("encoder", std::make_shared<nn::GRU>(encoder, gen));
    gru_decoder_ = register_module("decoder", std::make_shared<nn::GRUCell>(e + 2 * h, h, true, gen));
  }
  bridge_ = register_module("bridge", std::make_shared<nn::Linear>(2 * h, h, true, gen));
  // Queries are decoder states (H), keys the encoder's two directions (2H).
  const nn::AdditiveAttentionOptions attention{.query_dim = h, .key_dim = 2 * h, .attention_dim = h};
  attention_ = register_module("attention", std::make_shared<nn::AdditiveAttention>(attention, gen));
  combine_ = register_module("combine", std::make_shared<nn::Linear>(3 * h, h, true, gen));
  output_ = register_module("output", std::make_shared<nn::Linear>(h, sizes.vocab_size, true, gen));
}

std::unique_ptr<RnnAttentionSeq2Seq::State> RnnAttentionSeq2Seq::encode(const Tensor& src) const {
  auto state = std::make_unique<State>();
  state->source_padding = eq(src, static_cast<double>(data::pad_id));                          // (B, S)
  // sum takes floating point only; the counts are exact in f32.
  const Tensor lengths = sum(logical_not(state->source_padding).to(DType::f32), {1}).to(DType::i64);  // (B)
  const Tensor x = dropout_->forward(embedding_->forward(src));                                 // (B, S, E)
  Tensor h_n;                                                                                   // (2, B, H)
  if (lstm_encoder_) {
    nn::LSTMResult r = lstm_encoder_->forward(x, lengths);
    state->keys = r.output;
    h_n = r.state.h;
  } else {
    nn::RNNResult r = gru_encoder_->forward(x, lengths);
    state->keys = r.output;
    h_n = r.h_n;
  }
  // The decoder starts from both directions' final states, as Bahdanau's s_0 = tanh(W_s [h_fwd; h_bwd]).
  auto direction = [&h_n](int64_t d) { return squeeze(slice(h_n, 0, d, d + 1), 0); };  // (B, H)
  const Tensor both = concat({direction(0), direction(1)}, -1);                          // (B, 2H)
  state->h = tanh(bridge_->forward(both));
  if (lstm_decoder_) state->c = zeros_like(state->h);
  state->projected_keys = attention_->precompute_keys(state->keys);
  state->context = zeros({src.size(0), 2 * sizes_.hidden_size}, state->keys.dtype());
  return state;
}

Tensor RnnAttentionSeq2Seq::advance(State& state, const Tensor& tokens, Tensor* weights) const {
  const Tensor input = concat({dropout_->forward(embedding_->forward(tokens)), state.context}, -1);  // (B, E + 2H)
  if (lstm_decoder_) {
    const nn::LSTMState next = lstm_decoder_->forward(input, {state.h, state.c});
    state.h = next.h;
    state.c = next.c;
  } else {
    state.h = gru_decoder_->forward(input, state.h);
  }
  const AttentionResult attended =
      attention_->forward_projected(state.h, state.projected_keys, state.keys, state.source_padding);
  state.context = attended.output;  // (B, 2H)
  if (weights) *weights = attended.weights;
  const Tensor combined = tanh(combine_->forward(concat({state.h, state.context}, -1)));  // (B, H)
  return output_->forward(dropout_->forward(combined));                                   // (B, V)
}

Tensor RnnAttentionSeq2Seq::forward(const Tensor& src, const Tensor& tgt_in) const {
  std::unique_ptr<State> state = encode(src);
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < tgt_in.size(1); ++t)
    steps.push_back(advance(*state, reshape(slice(tgt_in, 1, t, t + 1), {tgt_in.size(0)}), nullptr));
  return stack(steps, 1);  // (B, T, V)
}

std::unique_ptr<DecoderState> RnnAttentionSeq2Seq::start(const Tensor& src) const { return encode(src); }

Tensor RnnAttentionSeq2Seq::step(DecoderState& state, const Tensor& last) const {
  return log_softmax(advance(static_cast<State&>(state), last, nullptr), -1);
}

std::vector<AttentionMap> RnnAttentionSeq2Seq::attention_maps(const Tensor& src, const Tensor& tgt_in) const {
  NoGradGuard no_grad;
  std::unique_ptr<State> state = encode(src);
  std::vector<Tensor> rows;
  for (int64_t t = 0; t < tgt_in.size(1); ++t) {
    Tensor weights;
    advance(*state, reshape(slice(tgt_in, 1, t, t + 1), {tgt_in.size(0)}), &weights);
    rows.push_back(weights);  // (1, S)
  }
  return {{"additive attention", concat(rows, 0), AttentionKind::cross, 0, 0}};
}

}  // namespace gradformer::models

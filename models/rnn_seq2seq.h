// Seq2Seq with attention (Bahdanau et al. 2015), the lecture's starting point: a bidirectional GRU or LSTM
// encoder, a GRU or LSTM decoder cell fed the previous token and the previous context, additive attention over
// the encoder states at every step, and an output layer over [decoder state; context]. Decoding a step costs
// one cell step and one attention over the source.
#pragma once

#include "models/seq2seq.h"
#include "nn/layers.h"
#include "nn/rnn.h"

namespace gradformer::models {

struct RnnSizes {
  int64_t vocab_size, embedding_dim, hidden_size;
  double dropout;
  bool lstm;  // else GRU
};

class RnnAttentionSeq2Seq : public Seq2SeqModel {
 public:
  RnnAttentionSeq2Seq(const RnnSizes& sizes, nlohmann::json config, Generator& gen);
  std::string type_name() const override { return "RnnAttentionSeq2Seq"; }
  Tensor forward(const Tensor& src, const Tensor& tgt_in) const override;
  std::unique_ptr<DecoderState> start(const Tensor& src) const override;
  Tensor step(DecoderState& state, const Tensor& last) const override;
  std::vector<AttentionMap> attention_maps(const Tensor& src, const Tensor& tgt_in) const override;
  nlohmann::json config() const override { return config_; }

  struct State;

 private:
  std::unique_ptr<State> encode(const Tensor& src) const;
  // One decoder step: advances `state` by token ids (B) and returns logits (B, V) and the weights (B, S).
  Tensor advance(State& state, const Tensor& tokens, Tensor* weights) const;

  RnnSizes sizes_;
  nlohmann::json config_;
  std::shared_ptr<nn::Embedding> embedding_;
  std::shared_ptr<nn::Dropout> dropout_;
  std::shared_ptr<nn::GRU> gru_encoder_;
  std::shared_ptr<nn::LSTM> lstm_encoder_;
  std::shared_ptr<nn::GRUCell> gru_decoder_;
  std::shared_ptr<nn::LSTMCell> lstm_decoder_;
  std::shared_ptr<nn::Linear> bridge_, combine_, output_;
  std::shared_ptr<nn::AdditiveAttention> attention_;
};

}  // namespace gradformer::models

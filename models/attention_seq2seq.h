// "Attention without RNN", the lecture's middle step: the encoder and decoder are stacks of the lecture's
// single-head Attention and SelfAttention layers (no recurrence), each followed by a dense feed-forward layer,
// with residual connections, LayerNorm and sinusoidal positions. No multi-head projections and no key/value
// cache: each decoding step re-runs the decoder over the prefix, which is what makes the Transformer's cache and
// heads the next step.
#pragma once

#include "models/seq2seq.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/transformer.h"

namespace gradformer::models {

struct AttentionSeq2SeqSizes {
  int64_t vocab_size, d_model, d_ff, blocks;
  double dropout;
  int64_t max_length;
};

class AttentionSeq2Seq : public Seq2SeqModel {
 public:
  AttentionSeq2Seq(const AttentionSeq2SeqSizes& sizes, nlohmann::json config, Generator& gen);
  std::string type_name() const override { return "AttentionSeq2Seq"; }
  Tensor forward(const Tensor& src, const Tensor& tgt_in) const override;
  std::unique_ptr<DecoderState> start(const Tensor& src) const override;
  Tensor step(DecoderState& state, const Tensor& last) const override;
  std::vector<AttentionMap> attention_maps(const Tensor& src, const Tensor& tgt_in) const override;
  nlohmann::json config() const override { return config_; }

 private:
  // With weights, each block's self-attention weights (B, 1, S, S) go to weights->encoder_self.
  Tensor encode(const Tensor& src, const Tensor& source_padding, nn::AttentionWeights* weights = nullptr) const;
  // Decoder output (B, T, D); with weights, each block's self- and cross-attention weights, (B, 1, T, T) and
  // (B, 1, T, S): one head, shaped as the Transformer's.
  Tensor decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& source_padding,
                nn::AttentionWeights* weights) const;

  AttentionSeq2SeqSizes sizes_;
  nlohmann::json config_;
  std::shared_ptr<nn::Embedding> embedding_;
  std::shared_ptr<nn::SinusoidalPositionalEncoding> positions_;
  std::shared_ptr<nn::Dropout> dropout_;
  std::shared_ptr<nn::ModuleList> encoder_attention_, encoder_feed_forward_, encoder_norms_;
  std::shared_ptr<nn::ModuleList> decoder_self_attention_, decoder_attention_, decoder_feed_forward_, decoder_norms_;
  std::shared_ptr<nn::Linear> output_;
};

}  // namespace gradformer::models

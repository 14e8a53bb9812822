// The Transformer of Vaswani et al. 2017 as a Seq2SeqModel: token embeddings scaled by √D plus sinusoidal
// positions, nn::Transformer (encoder and decoder stacks), and an output projection, optionally tied to one
// shared embedding table. Step-by-step decoding keeps each decoder layer's key/value cache.
#pragma once

#include "models/seq2seq.h"
#include "nn/layers.h"
#include "nn/transformer.h"

namespace gradformer::models {

struct TransformerSizes {
  int64_t vocab_size, d_model, heads, d_ff, layers;
  double dropout;
  bool pre_norm, share_embeddings;
  int64_t max_length;
  nn::FeedForwardFactory feed_forward{};  // null: the library's (see nn::TransformerLayerOptions)
  nn::NormFactory norm{};
};

class TransformerSeq2Seq : public Seq2SeqModel {
 public:
  TransformerSeq2Seq(const TransformerSizes& sizes, nlohmann::json config, Generator& gen);
  std::string type_name() const override { return "TransformerSeq2Seq"; }
  Tensor forward(const Tensor& src, const Tensor& tgt_in) const override;
  std::unique_ptr<DecoderState> start(const Tensor& src) const override;
  Tensor step(DecoderState& state, const Tensor& last) const override;
  std::vector<AttentionMap> attention_maps(const Tensor& src, const Tensor& tgt_in) const override;
  nlohmann::json config() const override { return config_; }

 private:
  Tensor embed_source(const Tensor& ids) const;                      // (B, S) -> (B, S, D)
  Tensor embed_target(const Tensor& ids, int64_t start) const;       // (B, T) -> (B, T, D)
  Tensor project(const Tensor& y) const;                             // (B, T, D) -> (B, T, V)

  TransformerSizes sizes_;
  nlohmann::json config_;
  std::shared_ptr<nn::Embedding> source_embedding_, target_embedding_;
  std::shared_ptr<nn::SinusoidalPositionalEncoding> positions_;
  std::shared_ptr<nn::Dropout> embedding_dropout_;
  std::shared_ptr<nn::Transformer> transformer_;
  std::shared_ptr<nn::Linear> output_;  // absent when the embeddings are shared
};

}  // namespace gradformer::models

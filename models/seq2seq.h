// The interface every model of the zoo implements: teacher-forced logits for training, and step-by-step
// decoding with a state (encoder output, key/value caches or recurrent state) for greedy and beam search.
// Token ids follow models/data/tokenizer.h: <pad> 0, <bos> 1, <eos> 2, <unk> 3; padding is read from the ids.
#pragma once

#include "nn/module.h"
#include "ops/selection.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace gradformer::models {

// What decoding carries from one step to the next. select() keeps the rows named by `rows` (i64 [B']), in that
// order and with repeats: beam search reorders hypotheses and replicates sources with it.
class DecoderState {
 public:
  virtual ~DecoderState() = default;
  virtual void select(const Tensor& rows) = 0;
};

// The rows `rows` (i64 [B']) of x along axis 0, for select(): floating states, i64 ids and bool masks alike.
inline Tensor select_rows(const Tensor& x, const Tensor& rows) { return index_select(x, 0, rows); }

// Attention weights of one layer (and head) for a picture: weights [T, S], target positions by source tokens.
struct AttentionMap {
  std::string label;
  Tensor weights;
};

class Seq2SeqModel : public nn::Module {
 public:
  // Logits (B, T, V) for the target inputs tgt_in (B, T), which start with <bos>, given src (B, S) ending with <eos>.
  virtual Tensor forward(const Tensor& src, const Tensor& tgt_in) const = 0;
  // Encodes src (B, S) once for decoding.
  virtual std::unique_ptr<DecoderState> start(const Tensor& src) const = 0;
  // Log-probabilities (B, V) of the next token given the previous one, last (B), advancing the state.
  virtual Tensor step(DecoderState& state, const Tensor& last) const = 0;
  // The attention maps of one sentence pair: src (1, S), tgt_in (1, T); one per layer (and head).
  virtual std::vector<AttentionMap> attention_maps(const Tensor& src, const Tensor& tgt_in) const = 0;
  // The configuration that rebuilds this model through make_model (models/zoo.h).
  virtual nlohmann::json config() const = 0;
};

}  // namespace gradformer::models

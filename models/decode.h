// Greedy and beam-search decoding over any Seq2SeqModel, batched, through the model's step-by-step state, so
// each step costs one token's work. Runs without recording a graph; the caller puts the model in eval mode.
#pragma once

#include "models/seq2seq.h"

#include <vector>

namespace gradformer::models {

// Beam search keeps batch * beam_size decoder states and beam_size * vocabulary candidates per sentence, so an
// unbounded beam only exhausts memory (fairseq and Marian users rarely go past a few dozen).
inline constexpr int64_t max_beam_size = 256;

struct DecodeOptions {
  int64_t beam_size = 1;       // 1 = greedy; at most max_beam_size
  double length_penalty = 1.0; // beam scores are sum(log p) / length^length_penalty, as fairseq
  int64_t max_length = 0;      // 0: source length * 2 + 10, at most the model's configured max_length
};

// Throws ValueError when a beam size is outside 1..max_beam_size.
void check_decode_options(const DecodeOptions& options);

// The best target of every source row of src (B, S), as ids without <bos> and <eos>.
std::vector<std::vector<int64_t>> translate(const Seq2SeqModel& model, const Tensor& src, const DecodeOptions& options = {});

}  // namespace gradformer::models

// Greedy and beam-search decoding over any Seq2SeqModel, or an ensemble of them, batched, through the models'
// step-by-step state, so each step costs one token's work. Runs without recording a graph; the caller puts the
// models in eval mode.
#pragma once

#include "models/seq2seq.h"

#include <functional>
#include <vector>

namespace gradformer::models {

// Beam search keeps batch * beam_size decoder states and beam_size * vocabulary candidates per sentence, so an
// unbounded beam only exhausts memory (fairseq and Marian users rarely go past a few dozen).
inline constexpr int64_t max_beam_size = 256;

struct DecodeOptions {
  int64_t beam_size = 1;       // 1 = greedy; at most max_beam_size
  double length_penalty = 1.0; // beam scores are sum(log p) / length^length_penalty, as fairseq
  int64_t max_length = 0;      // 0: source length * 2 + 10, at most the fewest positions a model covers
  int64_t n_best = 1;          // hypotheses returned per sentence, 1..beam_size
};

// Models decoded together: each step uses the average of their log-probabilities (as Marian and fairseq
// ensembles), each model with its own key/value cache. They must share the vocabulary; one model is the usual case.
using ModelEnsemble = std::vector<std::reference_wrapper<const Seq2SeqModel>>;

// One translation of a sentence with the scores an n-best list prints (Moses/Marian `F0=` and the total).
struct ScoredHypothesis {
  std::vector<int64_t> tokens;  // without <bos> and <eos>
  double log_prob = 0.0;        // sum of the log-probabilities of tokens and the final <eos>
  double score = 0.0;           // log_prob / (tokens + 1)^length_penalty: what beam search ranks by
};

// Throws ValueError when a beam size is outside 1..max_beam_size or n_best outside 1..beam_size.
void check_decode_options(const DecodeOptions& options);

// The fewest positions any member's encodings cover (its configuration's max_length); 0 when none says.
int64_t ensemble_positions(const ModelEnsemble& models);

// The n_best best targets of every source row of src (B, S), best first. Finished hypotheses (they produced
// <eos>) come before any cut off at the length limit, which fill the list only when too few finished.
std::vector<std::vector<ScoredHypothesis>> decode(const ModelEnsemble& models, const Tensor& src,
                                                  const DecodeOptions& options = {});

// The best target of every source row of src (B, S), as ids without <bos> and <eos>.
std::vector<std::vector<int64_t>> translate(const Seq2SeqModel& model, const Tensor& src, const DecodeOptions& options = {});

}  // namespace gradformer::models

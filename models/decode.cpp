// Greedy search keeps one hypothesis per sentence; beam search keeps beam_size per sentence in one batch of
// B * beam_size rows and reorders the decoder state with DecoderState::select after every step. A finished
// hypothesis (it produced <eos>) is set aside with its normalised score; a sentence stops when its n_best-th
// finished hypothesis beats every live one or the length limit is reached. An ensemble steps every member and
// averages their log-probabilities; one model's are used as they are, so a single model decodes as it always did.
#include "models/decode.h"

#include "models/data/tokenizer.h"
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gradformer::models {
namespace {

// The default stays within the positions every model's encodings cover (its configuration's max_length), so a
// long source cannot walk the decoder off the end of its table.
int64_t length_limit(const ModelEnsemble& models, const Tensor& src, const DecodeOptions& options) {
  if (options.max_length > 0) return options.max_length;
  const int64_t positions = ensemble_positions(models);
  const int64_t wanted = src.size(1) * 2 + 10;
  return positions > 0 ? std::min(wanted, positions) : wanted;
}

// Every member's decoder state, stepped and reordered together.
class EnsembleState {
 public:
  EnsembleState(const ModelEnsemble& models, const Tensor& src) : models_(models) {
    for (const Seq2SeqModel& model : models_) states_.push_back(model.start(src));
  }
  // The members' average log-probabilities (B, V) of the next token given the previous one, last (B).
  Tensor step(const Tensor& last) {
    Tensor sum = models_[0].get().step(*states_[0], last);
    for (size_t m = 1; m < models_.size(); ++m) sum = sum + models_[m].get().step(*states_[m], last);
    return models_.size() == 1 ? sum : sum / static_cast<double>(models_.size());
  }
  void select(const Tensor& rows) {
    for (auto& state : states_) state->select(rows);
  }

 private:
  const ModelEnsemble& models_;
  std::vector<std::unique_ptr<DecoderState>> states_;
};

double normalised(double log_prob, size_t length, double length_penalty) {
  return log_prob / std::pow(static_cast<double>(std::max<size_t>(length, 1)), length_penalty);
}

std::vector<std::vector<ScoredHypothesis>> greedy(const ModelEnsemble& models, const Tensor& src,
                                                  const DecodeOptions& options, int64_t max_length) {
  const int64_t batch = src.size(0);
  EnsembleState state(models, src);
  std::vector<ScoredHypothesis> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  Tensor last = full({batch}, static_cast<double>(data::bos_id), DType::i64);
  for (int64_t t = 0; t < max_length; ++t) {
    const Tensor logp = state.step(last);  // (B, V)
    const Tensor next = argmax(logp, -1);  // (B)
    const Tensor logp64 = logp.to(DType::f64).contiguous();
    const int64_t vocab = logp64.size(1);
    const double* lp = logp64.data_ptr<const double>();
    const int64_t* ids = next.data_ptr<const int64_t>();
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      ScoredHypothesis& h = out[static_cast<size_t>(b)];
      if (done[static_cast<size_t>(b)]) continue;
      h.log_prob += lp[b * vocab + ids[b]];
      if (ids[b] == data::eos_id)
        done[static_cast<size_t>(b)] = true;
      else
        h.tokens.push_back(ids[b]);
      all_done = all_done && done[static_cast<size_t>(b)];
    }
    if (all_done) break;
    last = next;
  }
  std::vector<std::vector<ScoredHypothesis>> result;
  for (int64_t b = 0; b < batch; ++b) {
    ScoredHypothesis& h = out[static_cast<size_t>(b)];
    // The <eos> counts in the length of a finished hypothesis, as in beam search.
    h.score = normalised(h.log_prob, h.tokens.size() + (done[static_cast<size_t>(b)] ? 1 : 0), options.length_penalty);
    result.push_back({std::move(h)});
  }
  return result;
}

// A live beam entry: its tokens so far and the sum of their log-probabilities.
struct Hypothesis {
  std::vector<int64_t> tokens;
  double log_prob = 0.0;
};

std::vector<std::vector<ScoredHypothesis>> beam_search(const ModelEnsemble& models, const Tensor& src,
                                                       const DecodeOptions& options, int64_t max_length) {
  const int64_t batch = src.size(0), beam = options.beam_size;
  const auto n_best = static_cast<size_t>(options.n_best);
  EnsembleState state(models, src);
  // Replicate every source beam times: rows b*beam .. b*beam+beam-1 belong to sentence b.
  std::vector<int64_t> replicate;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < beam; ++k) replicate.push_back(b);
  state.select(from_vector(replicate, {batch * beam}));

  auto length_normalised = [&](const Hypothesis& h, size_t length) {
    return normalised(h.log_prob, length, options.length_penalty);
  };
  std::vector<std::vector<Hypothesis>> live(static_cast<size_t>(batch), std::vector<Hypothesis>(static_cast<size_t>(beam)));
  // Only the first copy of each sentence starts live, so the first step does not pick the same token beam times.
  for (auto& hyps : live)
    for (size_t k = 1; k < hyps.size(); ++k) hyps[k].log_prob = -std::numeric_limits<double>::infinity();
  // Per sentence, its finished hypotheses best first; a stable order keeps the first found of equal scores first.
  std::vector<std::vector<ScoredHypothesis>> finished(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int64_t> last_ids(static_cast<size_t>(batch * beam), data::bos_id);

  for (int64_t t = 0; t < max_length; ++t) {
    const Tensor logp = state.step(from_vector(last_ids, {batch * beam})).to(DType::f64).contiguous();
    const int64_t vocab = logp.size(1);
    const double* lp = logp.data_ptr<const double>();
    std::vector<int64_t> rows, next_ids;
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      auto& hyps = live[static_cast<size_t>(b)];
      // Candidates: every live hypothesis extended by every token; keep the 2·beam best (enough to refill the
      // beam even if beam of them end with <eos>).
      std::vector<std::tuple<double, int64_t, int64_t>> candidates;  // score, hypothesis, token
      for (int64_t k = 0; k < beam; ++k) {
        const double base = hyps[static_cast<size_t>(k)].log_prob;
        if (!std::isfinite(base) || done[static_cast<size_t>(b)]) continue;
        const double* row = lp + (b * beam + k) * vocab;
        for (int64_t v = 0; v < vocab; ++v) candidates.emplace_back(base + row[v], k, v);
      }
      const size_t keep = std::min<size_t>(candidates.size(), static_cast<size_t>(2 * beam));
      std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(keep), candidates.end(),
                        [](const auto& x, const auto& y) { return std::get<0>(x) > std::get<0>(y); });
      std::vector<Hypothesis> next;
      for (size_t c = 0; c < keep && static_cast<int64_t>(next.size()) < beam; ++c) {
        const auto [score, k, v] = candidates[c];
        Hypothesis h{hyps[static_cast<size_t>(k)].tokens, score};
        if (v == data::eos_id) {
          auto& done_hyps = finished[static_cast<size_t>(b)];
          ScoredHypothesis f{h.tokens, h.log_prob, length_normalised(h, h.tokens.size() + 1)};
          const auto place = std::upper_bound(done_hyps.begin(), done_hyps.end(), f.score,
                                              [](double s, const ScoredHypothesis& x) { return s > x.score; });
          done_hyps.insert(place, std::move(f));
          continue;
        }
        h.tokens.push_back(v);
        next.push_back(std::move(h));
        rows.push_back(b * beam + k);
        next_ids.push_back(v);
      }
      // A sentence is done when no live hypothesis can still beat its n_best-th finished one: with scores that
      // only fall, the best live score normalised at the most favourable length bounds them all.
      double best_live = -std::numeric_limits<double>::infinity();
      for (const Hypothesis& h : next) best_live = std::max(best_live, length_normalised(h, static_cast<size_t>(max_length)));
      const auto& done_hyps = finished[static_cast<size_t>(b)];
      const double last_kept =
          done_hyps.size() >= n_best ? done_hyps[n_best - 1].score : -std::numeric_limits<double>::infinity();
      if (next.empty() || last_kept >= best_live) done[static_cast<size_t>(b)] = true;
      // Keep the batch rectangular: pad the beam with dead copies of row b*beam.
      while (static_cast<int64_t>(next.size()) < beam) {
        next.push_back(Hypothesis{{}, -std::numeric_limits<double>::infinity()});
        rows.push_back(b * beam);
        next_ids.push_back(data::pad_id);
      }
      hyps = std::move(next);
      all_done = all_done && done[static_cast<size_t>(b)];
    }
    if (all_done) break;
    state.select(from_vector(rows, {batch * beam}));
    last_ids = std::move(next_ids);
  }
  for (int64_t b = 0; b < batch; ++b) {
    auto& kept = finished[static_cast<size_t>(b)];
    if (kept.size() > n_best) kept.resize(n_best);
    if (kept.size() == n_best) continue;
    // Out of length before n_best hypotheses ended: the best live ones, by their sum of log-probabilities.
    auto hyps = live[static_cast<size_t>(b)];
    std::stable_sort(hyps.begin(), hyps.end(), [](const Hypothesis& x, const Hypothesis& y) { return x.log_prob > y.log_prob; });
    for (const Hypothesis& h : hyps) {
      if (kept.size() == n_best || (!kept.empty() && !std::isfinite(h.log_prob))) break;
      kept.push_back({h.tokens, h.log_prob, length_normalised(h, h.tokens.size())});
    }
  }
  return finished;
}

}  // namespace

void check_decode_options(const DecodeOptions& options) {
  if (options.beam_size < 1 || options.beam_size > max_beam_size)
    fail<ValueError>("translate", "beam size {} is outside 1..{}", options.beam_size, max_beam_size);
  if (options.n_best < 1 || options.n_best > options.beam_size)
    fail<ValueError>("translate", "n-best {} is outside 1..{} (the beam size)", options.n_best, options.beam_size);
}

int64_t ensemble_positions(const ModelEnsemble& models) {
  int64_t fewest = 0;
  for (const Seq2SeqModel& model : models) {
    const int64_t positions = model.config().value("max_length", int64_t{0});
    if (positions > 0 && (fewest == 0 || positions < fewest)) fewest = positions;
  }
  return fewest;
}

std::vector<std::vector<ScoredHypothesis>> decode(const ModelEnsemble& models, const Tensor& src,
                                                  const DecodeOptions& options) {
  if (src.dim() != 2 || src.dtype() != DType::i64)
    fail<ShapeError>("translate", "src must be an i64 (B, S) tensor, got {} {}", dtype_name(src.dtype()),
                     shape_str(src.shape()));
  check_decode_options(options);
  if (models.empty()) fail<ValueError>("translate", "an ensemble needs at least one model");
  NoGradGuard no_grad;
  const int64_t max_length = length_limit(models, src, options);
  return options.beam_size == 1 ? greedy(models, src, options, max_length)
                                : beam_search(models, src, options, max_length);
}

std::vector<std::vector<int64_t>> translate(const Seq2SeqModel& model, const Tensor& src, const DecodeOptions& options) {
  std::vector<std::vector<int64_t>> best;
  for (auto& hypotheses : decode({model}, src, options)) best.push_back(std::move(hypotheses.front().tokens));
  return best;
}

}  // namespace gradformer::models

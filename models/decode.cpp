// Greedy search keeps one hypothesis per sentence; beam search keeps beam_size per sentence in one batch of
// beam_size rows per sentence still searching, and reorders the decoder state with DecoderState::select after
// every step; a sentence that is done (greedy: its <eos>) leaves the batch. A finished
// hypothesis (it produced <eos>) is set aside with its normalised score; a sentence stops when its n_best-th
// finished hypothesis beats every live one or the length limit is reached. An ensemble steps every member and
// averages their log-probabilities; one model's are used as they are, so a single model decodes as it always did.
#include "models/decode.h"

#include "autograd/profiler.h"
#include "models/data/tokenizer.h"
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

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

// The log-probabilities of one step as a dense (rows, V) table of T (f32 or f64, as the model computes), read
// in place: no copy of the whole table to f64 per step.
template <class Visit>
auto with_table(const Tensor& logp, Visit visit) {
  const Tensor dense = logp.contiguous();
  if (dense.dtype() == DType::f64) return visit(dense, dense.data_ptr<const double>());
  const Tensor table = dense.dtype() == DType::f32 ? dense : dense.to(DType::f32);
  return visit(table, table.data_ptr<const float>());
}

// Rows (sentences) still being decoded, as positions in the original batch: finished ones leave the decoder's
// batch (its state keeps only the rows still live), so the steps after cost only what is left.
std::vector<std::vector<ScoredHypothesis>> greedy(const ModelEnsemble& models, const Tensor& src,
                                                  const DecodeOptions& options, int64_t max_length) {
  const int64_t batch = src.size(0);
  EnsembleState state(models, src);
  std::vector<ScoredHypothesis> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int64_t> live(static_cast<size_t>(batch));  // row r of the state decodes sentence live[r]
  for (int64_t b = 0; b < batch; ++b) live[static_cast<size_t>(b)] = b;
  Tensor last = full({batch}, static_cast<double>(data::bos_id), DType::i64);
  for (int64_t t = 0; t < max_length && !live.empty(); ++t) {
    const RecordFunction profiled("decode_step");
    const Tensor logp = state.step(last);  // (rows, V)
    const Tensor next = argmax(logp, -1);  // (rows)
    const int64_t* ids = next.data_ptr<const int64_t>();
    std::vector<int64_t> keep, kept_ids;  // the rows still live after this step, and their tokens
    with_table(logp, [&](const Tensor& table, const auto* lp) {
      const int64_t vocab = table.size(1);
      for (size_t r = 0; r < live.size(); ++r) {
        const auto b = static_cast<size_t>(live[r]);
        const int64_t id = ids[r];
        out[b].log_prob += static_cast<double>(lp[static_cast<int64_t>(r) * vocab + id]);
        if (id == data::eos_id) {
          done[b] = true;
          continue;
        }
        out[b].tokens.push_back(id);
        keep.push_back(static_cast<int64_t>(r));
        kept_ids.push_back(id);
      }
      return 0;
    });
    if (keep.size() == live.size()) {
      last = next;
      continue;
    }
    if (keep.empty()) break;
    std::vector<int64_t> still_live;
    for (int64_t r : keep) still_live.push_back(live[static_cast<size_t>(r)]);
    live = std::move(still_live);
    const auto rows = static_cast<int64_t>(keep.size());
    state.select(from_vector(keep, {rows}));
    last = from_vector(kept_ids, {rows});
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

// A candidate extension: the hypothesis's score with the token, which hypothesis (0..beam), which token.
struct Candidate {
  double score;
  int64_t hypothesis, token;
};

// The `count` largest entries of row (n values), largest first, into `best` (reused between calls): one pass with
// a small min-heap, so the vocabulary is read once and never sorted.
template <class T>
void top_entries(const T* row, int64_t n, size_t count, std::vector<std::pair<T, int64_t>>& best) {
  best.clear();
  auto greater = [](const std::pair<T, int64_t>& x, const std::pair<T, int64_t>& y) { return x.first > y.first; };
  for (int64_t v = 0; v < n; ++v) {
    if (best.size() < count) {
      best.emplace_back(row[v], v);
      std::push_heap(best.begin(), best.end(), greater);
    } else if (row[v] > best.front().first) {
      std::pop_heap(best.begin(), best.end(), greater);
      best.back() = {row[v], v};
      std::push_heap(best.begin(), best.end(), greater);
    }
  }
  std::sort_heap(best.begin(), best.end(), greater);
}

// The decoder's batch holds beam rows for each sentence still searching (rows i*beam .. i*beam+beam-1 for the
// i-th of them); a sentence that is done leaves it, so later steps cost only the sentences left.
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
  std::vector<int64_t> searching(static_cast<size_t>(batch));  // the sentence of each beam of rows in the state
  for (int64_t b = 0; b < batch; ++b) searching[static_cast<size_t>(b)] = b;
  std::vector<int64_t> last_ids(static_cast<size_t>(batch * beam), data::bos_id);
  const size_t keep = static_cast<size_t>(2 * beam);  // enough to refill the beam even if beam of them end
  std::vector<Candidate> candidates;
  std::vector<std::pair<float, int64_t>> best_f32;
  std::vector<std::pair<double, int64_t>> best_f64;

  for (int64_t t = 0; t < max_length && !searching.empty(); ++t) {
    const RecordFunction profiled("decode_step");
    const Tensor logp = state.step(from_vector(last_ids, {static_cast<int64_t>(last_ids.size())}));
    std::vector<int64_t> rows, next_ids, still_searching;
    with_table(logp, [&](const Tensor& table, const auto* lp) {
      using T = std::remove_cv_t<std::remove_pointer_t<decltype(lp)>>;
      auto& best = [&]() -> auto& {
        if constexpr (std::is_same_v<T, float>) return best_f32; else return best_f64;
      }();
      const int64_t vocab = table.size(1);
      for (size_t i = 0; i < searching.size(); ++i) {
        const auto b = static_cast<size_t>(searching[i]);
        auto& hyps = live[b];
        const auto first_row = static_cast<int64_t>(i) * beam;
        // Candidates: each live hypothesis's 2·beam best tokens, which hold the best 2·beam extensions overall.
        candidates.clear();
        for (int64_t k = 0; k < beam; ++k) {
          const double base = hyps[static_cast<size_t>(k)].log_prob;
          if (!std::isfinite(base)) continue;
          top_entries(lp + (first_row + k) * vocab, vocab, keep, best);
          for (const auto& [value, v] : best) candidates.push_back({base + static_cast<double>(value), k, v});
        }
        const size_t kept = std::min(candidates.size(), keep);
        std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(kept), candidates.end(),
                          [](const Candidate& x, const Candidate& y) { return x.score > y.score; });
        std::vector<Hypothesis> next;
        std::vector<int64_t> next_rows, next_tokens;
        for (size_t c = 0; c < kept && static_cast<int64_t>(next.size()) < beam; ++c) {
          const auto [score, k, v] = candidates[c];
          Hypothesis h{hyps[static_cast<size_t>(k)].tokens, score};
          if (v == data::eos_id) {
            auto& done_hyps = finished[b];
            ScoredHypothesis f{h.tokens, h.log_prob, length_normalised(h, h.tokens.size() + 1)};
            const auto place = std::upper_bound(done_hyps.begin(), done_hyps.end(), f.score,
                                                [](double s, const ScoredHypothesis& x) { return s > x.score; });
            done_hyps.insert(place, std::move(f));
            continue;
          }
          h.tokens.push_back(v);
          next.push_back(std::move(h));
          next_rows.push_back(first_row + k);
          next_tokens.push_back(v);
        }
        // A sentence is done when no live hypothesis can still beat its n_best-th finished one: with scores that
        // only fall, the best live score normalised at the most favourable length bounds them all.
        double best_live = -std::numeric_limits<double>::infinity();
        for (const Hypothesis& h : next)
          best_live = std::max(best_live, length_normalised(h, static_cast<size_t>(max_length)));
        const auto& done_hyps = finished[b];
        const double last_kept =
            done_hyps.size() >= n_best ? done_hyps[n_best - 1].score : -std::numeric_limits<double>::infinity();
        const bool sentence_done = next.empty() || last_kept >= best_live;
        // Keep the beam rectangular: pad it with dead copies of its first row.
        while (static_cast<int64_t>(next.size()) < beam) {
          next.push_back(Hypothesis{{}, -std::numeric_limits<double>::infinity()});
          next_rows.push_back(first_row);
          next_tokens.push_back(data::pad_id);
        }
        hyps = std::move(next);
        if (sentence_done) continue;  // its rows leave the batch
        still_searching.push_back(static_cast<int64_t>(b));
        rows.insert(rows.end(), next_rows.begin(), next_rows.end());
        next_ids.insert(next_ids.end(), next_tokens.begin(), next_tokens.end());
      }
      return 0;
    });
    searching = std::move(still_searching);
    if (searching.empty()) break;
    state.select(from_vector(rows, {static_cast<int64_t>(rows.size())}));
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

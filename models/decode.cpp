// Greedy search keeps one hypothesis per sentence; beam search keeps beam_size per sentence in one batch of
// B * beam_size rows and reorders the decoder state with DecoderState::select after every step. A finished
// hypothesis (it produced <eos>) is set aside with its normalised score; a sentence stops when its best
// finished hypothesis beats every live one or the length limit is reached.
#include "models/decode.h"

#include "models/data/tokenizer.h"
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gradformer::models {
namespace {

// The default stays within the positions the model's encodings cover (its configuration's max_length), so a
// long source cannot walk the decoder off the end of its table.
int64_t length_limit(const Seq2SeqModel& model, const Tensor& src, const DecodeOptions& options) {
  if (options.max_length > 0) return options.max_length;
  const int64_t positions = model.config().value("max_length", int64_t{0});
  const int64_t wanted = src.size(1) * 2 + 10;
  return positions > 0 ? std::min(wanted, positions) : wanted;
}

std::vector<std::vector<int64_t>> greedy(const Seq2SeqModel& model, const Tensor& src, int64_t max_length) {
  const int64_t batch = src.size(0);
  std::unique_ptr<DecoderState> state = model.start(src);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  Tensor last = full({batch}, static_cast<double>(data::bos_id), DType::i64);
  for (int64_t t = 0; t < max_length; ++t) {
    const Tensor next = argmax(model.step(*state, last), -1);  // (B)
    const int64_t* ids = next.data_ptr<int64_t>();
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      if (done[static_cast<size_t>(b)]) continue;
      if (ids[b] == data::eos_id)
        done[static_cast<size_t>(b)] = true;
      else
        out[static_cast<size_t>(b)].push_back(ids[b]);
      all_done = all_done && done[static_cast<size_t>(b)];
    }
    if (all_done) break;
    last = next;
  }
  return out;
}

struct Hypothesis {
  std::vector<int64_t> tokens;
  double score = 0.0;  // sum of log-probabilities
};

std::vector<std::vector<int64_t>> beam_search(const Seq2SeqModel& model, const Tensor& src, const DecodeOptions& options,
                                              int64_t max_length) {
  const int64_t batch = src.size(0), beam = options.beam_size;
  std::unique_ptr<DecoderState> state = model.start(src);
  // Replicate every source beam times: rows b*beam .. b*beam+beam-1 belong to sentence b.
  std::vector<int64_t> replicate;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < beam; ++k) replicate.push_back(b);
  state->select(from_vector(replicate, {batch * beam}));

  auto normalised = [&](const Hypothesis& h, size_t length) {
    return h.score / std::pow(static_cast<double>(std::max<size_t>(length, 1)), options.length_penalty);
  };
  std::vector<std::vector<Hypothesis>> live(static_cast<size_t>(batch), std::vector<Hypothesis>(static_cast<size_t>(beam)));
  // Only the first copy of each sentence starts live, so the first step does not pick the same token beam times.
  for (auto& hyps : live)
    for (size_t k = 1; k < hyps.size(); ++k) hyps[k].score = -std::numeric_limits<double>::infinity();
  std::vector<Hypothesis> best(static_cast<size_t>(batch));
  std::vector<double> best_score(static_cast<size_t>(batch), -std::numeric_limits<double>::infinity());
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int64_t> last_ids(static_cast<size_t>(batch * beam), data::bos_id);

  for (int64_t t = 0; t < max_length; ++t) {
    const Tensor logp = model.step(*state, from_vector(last_ids, {batch * beam})).to(DType::f64).contiguous();
    const int64_t vocab = logp.size(1);
    const double* lp = logp.data_ptr<double>();
    std::vector<int64_t> rows, next_ids;
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      auto& hyps = live[static_cast<size_t>(b)];
      // Candidates: every live hypothesis extended by every token; keep the 2·beam best (enough to refill the
      // beam even if beam of them end with <eos>).
      std::vector<std::tuple<double, int64_t, int64_t>> candidates;  // score, hypothesis, token
      for (int64_t k = 0; k < beam; ++k) {
        const double base = hyps[static_cast<size_t>(k)].score;
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
          const double s = normalised(h, h.tokens.size() + 1);
          if (s > best_score[static_cast<size_t>(b)]) {
            best_score[static_cast<size_t>(b)] = s;
            best[static_cast<size_t>(b)] = h;
          }
          continue;
        }
        h.tokens.push_back(v);
        next.push_back(std::move(h));
        rows.push_back(b * beam + k);
        next_ids.push_back(v);
      }
      // A sentence is done when no live hypothesis can still beat its best finished one: with scores that only
      // fall, the best live score normalised at the most favourable length bounds them all.
      double best_live = -std::numeric_limits<double>::infinity();
      for (const Hypothesis& h : next) best_live = std::max(best_live, normalised(h, static_cast<size_t>(max_length)));
      if (next.empty() || best_score[static_cast<size_t>(b)] >= best_live) done[static_cast<size_t>(b)] = true;
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
    state->select(from_vector(rows, {batch * beam}));
    last_ids = std::move(next_ids);
  }
  std::vector<std::vector<int64_t>> out;
  for (int64_t b = 0; b < batch; ++b) {
    if (std::isfinite(best_score[static_cast<size_t>(b)])) {
      out.push_back(best[static_cast<size_t>(b)].tokens);
      continue;
    }
    // Out of length before any hypothesis ended: the best live one.
    const auto& hyps = live[static_cast<size_t>(b)];
    out.push_back(std::max_element(hyps.begin(), hyps.end(), [](const Hypothesis& x, const Hypothesis& y) {
                    return x.score < y.score;
                  })->tokens);
  }
  return out;
}

}  // namespace

void check_decode_options(const DecodeOptions& options) {
  if (options.beam_size < 1 || options.beam_size > max_beam_size)
    fail<ValueError>("translate", "beam size {} is outside 1..{}", options.beam_size, max_beam_size);
}

std::vector<std::vector<int64_t>> translate(const Seq2SeqModel& model, const Tensor& src, const DecodeOptions& options) {
  if (src.dim() != 2 || src.dtype() != DType::i64)
    fail<ShapeError>("translate", "src must be an i64 (B, S) tensor, got {} {}", dtype_name(src.dtype()),
                     shape_str(src.shape()));
  check_decode_options(options);
  NoGradGuard no_grad;
  const int64_t max_length = length_limit(model, src, options);
  return options.beam_size == 1 ? greedy(model, src, max_length) : beam_search(model, src, options, max_length);
}

}  // namespace gradformer::models

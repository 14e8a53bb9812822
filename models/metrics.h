// Corpus-level translation metrics that reproduce sacreBLEU 2.x defaults: BLEU with the 13a tokenizer and
// exponential smoothing, chrF2 (character 6-grams, whitespace removed), and the exact-match rate.
// Inputs are detokenised strings, as sacreBLEU expects. Not sentence-level BLEU (that needs effective
// order) and not lowercased BLEU (Python's Unicode lowercasing is not reproduced here).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::metrics {

// mteval-v13a tokenisation as sacreBLEU's `tokenizer_13a` does it: entity unescaping, punctuation split off
// except "." and "," next to digits, then a split on (Unicode) whitespace.
std::vector<std::string> tokenize_13a(std::string_view line);

enum class BleuSmoothing {
  none,  // an order with no match gets precision 0, so the score is 0
  exp,   // mteval's NIST smoothing: the k-th order without a match gets 100 / (2^k * total); sacreBLEU's default
};

struct BleuScore {
  double score = 0.0;                     // 0..100
  std::array<double, 4> precisions{};     // percentages, smoothed
  std::array<size_t, 4> counts{};         // clipped n-gram matches
  std::array<size_t, 4> totals{};         // hypothesis n-grams
  double bp = 0.0;                        // brevity penalty
  double ratio = 0.0;                     // hyp_len / ref_len
  size_t hyp_len = 0;
  size_t ref_len = 0;

  // "BLEU = 34.20 65.1/40.2/27.3/19.4 (BP = 0.981 ratio = 0.981 hyp_len = 1234 ref_len = 1258)"
  std::string format() const;
};

// One reference per hypothesis. Throws ValueError when the counts differ.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
                      BleuSmoothing smoothing = BleuSmoothing::exp);

// Several reference streams, each as long as `hypotheses` (sacreBLEU's `[[refs1...], [refs2...]]` layout):
// n-gram counts are clipped by the maximum over references, the reference length is the closest one.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& reference_streams,
                      BleuSmoothing smoothing = BleuSmoothing::exp);

struct ChrfScore {
  double score = 0.0;  // 0..100
  std::string format() const;  // "chrF2 = 61.58"
};

// chrF with beta 2 over character 1..6-grams (Unicode code points) with all whitespace removed; statistics are
// summed over the corpus before the F-score, and precision/recall are averaged over the orders that occur.
ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

// Fraction (0..1) of hypotheses equal to their reference byte for byte; 0 for an empty corpus.
double exact_match(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

}  // namespace gradformer::metrics

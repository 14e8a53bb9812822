// BLEU, chrF and exact match as sacreBLEU 2.x computes them by default; see metrics.h for what is covered.
// The 13a rules are written as explicit left-to-right scans that make the same non-overlapping matches as
// Python's re.sub over the regexes of mteval-v13a.pl.
#include "models/metrics.h"

#include "autograd/error.h"
#include "models/data/utf8.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace gradformer::metrics {
namespace {

using NgramCounts = std::unordered_map<std::string, size_t>;

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_dot_or_comma(char c) { return c == '.' || c == ','; }

// The first 13a regex's class: ASCII punctuation and space except ' , - . (the others get split off).
bool splits_off(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return (u >= '{' && u <= '~') || (u >= '[' && u <= '`') || (u >= ' ' && u <= '&') || (u >= '(' && u <= '+') ||
         (u >= ':' && u <= '@') || u == '/';
}

std::vector<std::string> split_python_whitespace(std::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  for (const std::string_view unit : data::utf8_units(text)) {
    if (data::is_python_space(unit)) {
      if (!current.empty()) tokens.push_back(std::move(current));
      current.clear();
    } else {
      current += unit;
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

std::string_view rstrip_python(std::string_view text) {
  std::vector<std::string_view> units = data::utf8_units(text);
  size_t keep = text.size();
  while (!units.empty() && data::is_python_space(units.back())) {
    keep -= units.back().size();
    units.pop_back();
  }
  return text.substr(0, keep);
}

// n-grams of orders 1..4 keyed by their tokens joined with a space (tokens never contain one).
NgramCounts count_ngrams(const std::vector<std::string>& tokens) {
  NgramCounts counts;
  for (size_t start = 0; start < tokens.size(); ++start) {
    std::string key;
    for (size_t n = 1; n <= 4 && start + n <= tokens.size(); ++n) {
      if (n > 1) key += ' ';
      key += tokens[start + n - 1];
      ++counts[key];
    }
  }
  return counts;
}

size_t ngram_order(const std::string& key) { return 1 + static_cast<size_t>(std::count(key.begin(), key.end(), ' ')); }

}  // namespace

std::vector<std::string> tokenize_13a(std::string_view line) {
  std::string text(line);
  replace_all(text, "<skipped>", "");
  replace_all(text, "-\n", "");
  replace_all(text, "\n", " ");
  replace_all(text, "&quot;", "\"");
  replace_all(text, "&amp;", "&");
  replace_all(text, "&lt;", "<");
  replace_all(text, "&gt;", ">");
  text = " " + text + " ";

  std::string step;
  for (const char c : text) {
    if (splits_off(c)) {
      step += ' ', step += c, step += ' ';
    } else {
      step += c;
    }
  }
  text.swap(step);
  step.clear();
  // "([^0-9])([\.,])" -> "\1 \2 "
  for (size_t i = 0; i < text.size(); ++i) {
    if (i + 1 < text.size() && !is_digit(text[i]) && is_dot_or_comma(text[i + 1])) {
      step += text[i], step += ' ', step += text[i + 1], step += ' ';
      ++i;
    } else {
      step += text[i];
    }
  }
  text.swap(step);
  step.clear();
  // "([\.,])([^0-9])" -> " \1 \2"
  for (size_t i = 0; i < text.size(); ++i) {
    if (i + 1 < text.size() && is_dot_or_comma(text[i]) && !is_digit(text[i + 1])) {
      step += ' ', step += text[i], step += ' ', step += text[i + 1];
      ++i;
    } else {
      step += text[i];
    }
  }
  text.swap(step);
  step.clear();
  // "([0-9])(-)" -> "\1 \2 "
  for (size_t i = 0; i < text.size(); ++i) {
    if (i + 1 < text.size() && is_digit(text[i]) && text[i + 1] == '-') {
      step += text[i], step += ' ', step += '-', step += ' ';
      ++i;
    } else {
      step += text[i];
    }
  }
  return split_python_whitespace(step);
}

std::string BleuScore::format() const {
  return fmt::format("BLEU = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
                     score, precisions[0], precisions[1], precisions[2], precisions[3], bp, ratio, hyp_len,
                     ref_len);
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
                      BleuSmoothing smoothing) {
  return corpus_bleu(hypotheses, std::vector<std::vector<std::string>>{references}, smoothing);
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& reference_streams, BleuSmoothing smoothing) {
  if (reference_streams.empty()) fail<ValueError>("corpus_bleu", "no reference stream");
  for (size_t r = 0; r < reference_streams.size(); ++r) {
    if (reference_streams[r].size() != hypotheses.size()) {
      fail<ValueError>("corpus_bleu", "{} hypotheses but reference stream {} has {} lines", hypotheses.size(), r,
                       reference_streams[r].size());
    }
  }
  BleuScore result;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const std::vector<std::string> hyp_tokens = tokenize_13a(rstrip_python(hypotheses[i]));
    NgramCounts ref_counts;
    size_t closest_len = 0;
    bool have_len = false;
    for (const auto& stream : reference_streams) {
      const std::vector<std::string> ref_tokens = tokenize_13a(rstrip_python(stream[i]));
      for (const auto& [key, count] : count_ngrams(ref_tokens)) ref_counts[key] = std::max(ref_counts[key], count);
      // The closest length wins; on a tie the shorter reference does, as in sacreBLEU.
      const size_t len = ref_tokens.size();
      const auto diff = [&](size_t a) { return a > hyp_tokens.size() ? a - hyp_tokens.size() : hyp_tokens.size() - a; };
      if (!have_len || diff(len) < diff(closest_len) || (diff(len) == diff(closest_len) && len < closest_len)) {
        closest_len = len;
        have_len = true;
      }
    }
    result.hyp_len += hyp_tokens.size();
    result.ref_len += closest_len;
    for (size_t n = 1; n <= 4; ++n) {
      if (hyp_tokens.size() >= n) result.totals[n - 1] += hyp_tokens.size() - n + 1;
    }
    for (const auto& [key, count] : count_ngrams(hyp_tokens)) {
      const auto found = ref_counts.find(key);
      if (found != ref_counts.end()) result.counts[ngram_order(key) - 1] += std::min(count, found->second);
    }
  }

  result.ratio = result.ref_len > 0 ? static_cast<double>(result.hyp_len) / static_cast<double>(result.ref_len) : 0.0;
  if (result.hyp_len < result.ref_len) {
    result.bp = result.hyp_len > 0
                    ? std::exp(1.0 - static_cast<double>(result.ref_len) / static_cast<double>(result.hyp_len))
                    : 0.0;
  } else {
    result.bp = 1.0;
  }
  if (std::all_of(result.counts.begin(), result.counts.end(), [](size_t c) { return c == 0; })) return result;

  double smooth = 1.0;
  for (size_t n = 0; n < 4; ++n) {
    if (result.totals[n] == 0) break;  // later precisions stay 0 and drive the score to 0
    if (result.counts[n] == 0) {
      if (smoothing == BleuSmoothing::exp) {
        smooth *= 2.0;
        result.precisions[n] = 100.0 / (smooth * static_cast<double>(result.totals[n]));
      }
    } else {
      result.precisions[n] = 100.0 * static_cast<double>(result.counts[n]) / static_cast<double>(result.totals[n]);
    }
  }
  double log_sum = 0.0;
  for (const double p : result.precisions) {
    // sacreBLEU's my_log maps 0 to -9999999999 rather than -inf; exp() of the mean is then 0 either way.
    log_sum += p > 0.0 ? std::log(p) : -9999999999.0;
  }
  result.score = result.bp * std::exp(log_sum / 4.0);
  return result;
}

std::string ChrfScore::format() const { return fmt::format("chrF2 = {:.2f}", score); }

ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size()) {
    fail<ValueError>("corpus_chrf", "{} hypotheses but {} references", hypotheses.size(), references.size());
  }
  constexpr size_t order = 6;
  constexpr double beta_squared = 4.0;
  // Per order: hypothesis n-grams, reference n-grams, matches.
  std::array<std::array<size_t, 3>, order> stats{};
  const auto char_ngrams = [](const std::string& text, size_t n) {
    std::vector<std::string_view> units;
    for (const std::string_view unit : data::utf8_units(text)) {
      if (!data::is_python_space(unit)) units.push_back(unit);
    }
    std::unordered_map<std::string, size_t> counts;
    for (size_t start = 0; start + n <= units.size(); ++start) {
      std::string key;
      for (size_t k = 0; k < n; ++k) key += units[start + k];
      ++counts[key];
    }
    return counts;
  };
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t n = 1; n <= order; ++n) {
      const auto hyp = char_ngrams(hypotheses[i], n);
      const auto ref = char_ngrams(references[i], n);
      for (const auto& [key, count] : hyp) {
        stats[n - 1][0] += count;
        const auto found = ref.find(key);
        if (found != ref.end()) stats[n - 1][2] += std::min(count, found->second);
      }
      for (const auto& entry : ref) stats[n - 1][1] += entry.second;
    }
  }
  double avg_precision = 0.0, avg_recall = 0.0;
  size_t effective_order = 0;
  for (const auto& [n_hyp, n_ref, n_match] : stats) {
    if (n_hyp > 0 && n_ref > 0) {
      avg_precision += static_cast<double>(n_match) / static_cast<double>(n_hyp);
      avg_recall += static_cast<double>(n_match) / static_cast<double>(n_ref);
      ++effective_order;
    }
  }
  ChrfScore result;
  if (effective_order == 0) return result;
  avg_precision /= static_cast<double>(effective_order);
  avg_recall /= static_cast<double>(effective_order);
  if (avg_precision + avg_recall > 0.0) {
    result.score = 100.0 * (1.0 + beta_squared) * avg_precision * avg_recall /
                   (beta_squared * avg_precision + avg_recall);
  }
  return result;
}

double exact_match(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size()) {
    fail<ValueError>("exact_match", "{} hypotheses but {} references", hypotheses.size(), references.size());
  }
  if (hypotheses.empty()) return 0.0;
  size_t equal = 0;
  for (size_t i = 0; i < hypotheses.size(); ++i) equal += hypotheses[i] == references[i];
  return static_cast<double>(equal) / static_cast<double>(hypotheses.size());
}

}  // namespace gradformer::metrics

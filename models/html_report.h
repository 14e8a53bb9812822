// Pages to open in a browser, each one self-contained HTML file (its data embedded as JSON, its script and style
// inline, a Content-Security-Policy that forbids every fetch), so it works opened from disk with no network:
// - the attention explorer of gradformer-translate --attention-html: a sentence, attention kind (encoder self,
//   decoder self, cross), layer and head selector over one weight matrix per choice, hover and click on tokens,
//   a colour scale with its values, the n-best list;
// - the training report gradformer-train rewrites at every validation (report.html beside loss.svg): loss,
//   perplexity, BLEU, chrF, learning rate and tokens/s over steps with hover values and a log-scale toggle, the
//   run's configuration, the machine and the best checkpoint.
// Not here: writing the files (nn/output_file.h), the static SVG pictures (models/svg.h).
#pragma once

#include "models/seq2seq.h"
#include "models/svg.h"
#include "models/task.h"
#include "models/translation.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace gradformer::models {

// One translated sentence with the attention the model paid while producing its best hypothesis.
struct SentenceAttention {
  size_t line = 0;  // 0-based position in the input
  std::string source;
  std::vector<std::string> source_tokens;   // with <eos>: the keys of cross-attention
  std::vector<std::string> target_inputs;   // <bos> and the hypothesis: the keys of decoder self-attention
  std::vector<std::string> target_outputs;  // the hypothesis and <eos>: the rows of cross and decoder self-attention
  std::vector<ScoredTranslation> n_best;    // best first; n_best.front() is the one attended
  std::vector<AttentionMap> maps;
};

// Runs `model` over `source` (cut to max_source_tokens) and the best of `n_best` (its tokens) to collect every
// attention map it has. n_best must not be empty.
SentenceAttention attend_sentence(const Seq2SeqModel& model, const TextCodec& codec, size_t line,
                                  const std::string& source, std::vector<ScoredTranslation> n_best,
                                  size_t max_source_tokens);

struct AttentionPageInfo {
  std::string title;       // shown as the heading, e.g. the checkpoint's path
  nlohmann::json model;    // the model's configuration, shown under the heading
  bool show_n_best = false;  // --n-best was given: list each sentence's hypotheses with their scores
};

// The explorer over `sentences` (at least one). Weights are written rounded to 5 decimals.
std::string attention_html(const std::vector<SentenceAttention>& sentences, const AttentionPageInfo& info);

struct BestCheckpoint {
  std::string path;
  int64_t step = 0;
  double valid_loss = 0;  // per target token
};

// What the training report shows; every curve is (step, value).
struct TrainingReport {
  std::string title;  // the output directory
  // Per target token. Perplexity is exp of the NLLs; the label-smoothed loss (what training optimised, empty
  // without smoothing) has none that means anything.
  Curve train_nll, valid_nll, smoothed_loss;
  Curve bleu, chrf, learning_rate, tokens_per_second;
  nlohmann::json config;   // shown as a table of settings
  nlohmann::json machine;  // as machine_description gives it
  std::optional<BestCheckpoint> best;
  int64_t step = 0;  // the step the report was written at
};

// The CPU (model name from /proc/cpuinfo, "unknown" where there is none), the threads the kernels use, the
// precision products run in, and the number of processes of a data-parallel run.
nlohmann::json machine_description(DType precision, int64_t processes);

// Curves longer than max_points points are thinned to every k-th point (and the last), so that a long run's
// report stays a few hundred kilobytes.
std::string training_html(const TrainingReport& report, size_t max_points = 2000);

}  // namespace gradformer::models

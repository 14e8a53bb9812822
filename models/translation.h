// Translating and scoring a corpus of sentences, text in and text out, with a model and its TextCodec: what
// gradformer-translate, the trainer's validation, gradformer-train's test and the tests share, so that they cut,
// batch and score alike. Not decoding itself (models/decode.h) and not the metrics (models/metrics.h).
#pragma once

#include "models/decode.h"
#include "models/metrics.h"
#include "models/seq2seq.h"
#include "models/task.h"

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace gradformer::models {

struct CorpusOptions {
  DecodeOptions decode;
  size_t batch_size = 64;         // sentences read and decoded together
  size_t max_source_tokens = 0;   // longer sources are cut to their first tokens; 0: as many as the model's positions hold
};

struct CorpusReport {
  size_t sentences = 0;          // read, blank ones included
  size_t translated = 0;         // not blank, so given to the model
  size_t truncated = 0;          // of those, cut to max_source_tokens
  size_t max_source_tokens = 0;  // the limit applied (the model's when the options said 0)
};

// Where sentences come from: stores the next one in its argument and returns true, or returns false at the end.
using SentenceSource = std::function<bool(std::string&)>;
// A detokenised hypothesis with its scores (models/decode.h's ScoredHypothesis).
struct ScoredTranslation {
  std::string text;
  std::vector<int64_t> tokens;  // the ids text was detokenised from, without <bos> and <eos>
  double log_prob = 0.0;
  double score = 0.0;
};
// Receives one batch's translations in input order, each sentence's decode.n_best hypotheses best first (a blank
// sentence has one, empty, scored 0); `first` is the index of n_best[0] among all sentences.
using TranslationSink =
    std::function<void(size_t first, const std::vector<std::vector<ScoredTranslation>>& n_best)>;

// Reads up to batch_size sentences, translates them, hands the translations to `sink`, and only then reads on,
// so a program that writes what its sink receives answers batch by batch. A blank sentence (only whitespace) is
// not given to the model and translates to an empty line, so that translation n always belongs to sentence n (as
// in Marian and fairseq). The caller puts the models in eval mode. Throws ValueError before reading anything for
// decoding options check_decode_options refuses, a batch size of 0, or a max_source_tokens the models' positions
// cannot hold (a source of n tokens takes n + 1 positions, with <eos>).
CorpusReport translate_corpus(const ModelEnsemble& models, const TextCodec& codec, const SentenceSource& next,
                              const TranslationSink& sink, const CorpusOptions& options = {});
// The same with one model over sentences held in memory; returns the best translation of each source.
std::vector<std::string> translate_corpus(const Seq2SeqModel& model, const TextCodec& codec,
                                          const std::vector<std::string>& sources, const CorpusOptions& options = {},
                                          CorpusReport* report = nullptr);

struct TranslationScores {
  metrics::BleuScore bleu;
  metrics::ChrfScore chrf;
  double exact_match = 0.0;  // 0..1
};

// A raw reference line as the codec writes its translations: tokenised and detokenised again ("der Hund ." comes
// back as "der Hund."), so that a corpus's spacing convention is not counted as an error, nor shown as one.
std::string normalise_reference(const TextCodec& codec, const std::string& line);

// BLEU, chrF and exact match of detokenised translations against raw reference lines. The references go through
// the codec's tokenise/detokenise round first, as the translations did, so that spacing conventions of a corpus
// ("der Hund ." against "der Hund.") do not count as errors. ValueError when the counts differ.
TranslationScores score_translations(const TextCodec& codec, const std::vector<std::string>& translations,
                                     const std::vector<std::string>& references);

}  // namespace gradformer::models

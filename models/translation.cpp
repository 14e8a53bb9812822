#include "models/translation.h"

#include "autograd/error.h"

#include <limits>

namespace gradformer::models {
namespace {

bool blank(const std::string& line) { return line.find_first_not_of(" \t\r\f\v") == std::string::npos; }

size_t source_token_limit(const ModelEnsemble& models, size_t requested) {
  const int64_t positions = ensemble_positions(models);
  if (positions <= 0) return requested == 0 ? std::numeric_limits<size_t>::max() : requested;
  if (requested == 0) return static_cast<size_t>(positions - 1);
  if (requested >= static_cast<size_t>(positions))
    fail<ValueError>("translate_corpus", "max_source_tokens {} does not fit the model's {} positions (one more is "
                     "needed for <eos>); at most {}", requested, positions, positions - 1);
  return requested;
}

}  // namespace

CorpusReport translate_corpus(const ModelEnsemble& models, const TextCodec& codec, const SentenceSource& next,
                              const TranslationSink& sink, const CorpusOptions& options) {
  check_decode_options(options.decode);
  if (options.batch_size == 0) fail<ValueError>("translate_corpus", "batch size must be at least 1");
  CorpusReport report;
  report.max_source_tokens = source_token_limit(models, options.max_source_tokens);
  std::vector<std::string> batch;
  for (bool more = true; more;) {
    batch.clear();
    // No read past a full batch: an interactive user gets the answer before typing the next line.
    for (std::string line; batch.size() < options.batch_size && (more = next(line));) batch.push_back(std::move(line));
    if (batch.empty()) break;
    std::vector<std::vector<int64_t>> sources;
    std::vector<size_t> rows;  // the batch position of each of sources
    for (size_t i = 0; i < batch.size(); ++i) {
      if (blank(batch[i])) continue;
      bool cut = false;
      sources.push_back(codec.encode_source(batch[i], report.max_source_tokens, &cut));
      report.truncated += cut;
      rows.push_back(i);
    }
    std::vector<std::vector<ScoredTranslation>> translations(batch.size(), std::vector<ScoredTranslation>(1));
    if (!sources.empty()) {
      const auto outputs = decode(models, make_source_batch(sources), options.decode);
      for (size_t k = 0; k < rows.size(); ++k) {
        auto& n_best = translations[rows[k]];
        n_best.clear();
        for (const ScoredHypothesis& h : outputs[k]) n_best.push_back({codec.decode(h.tokens), h.tokens, h.log_prob, h.score});
      }
    }
    sink(report.sentences, translations);
    report.sentences += batch.size();
    report.translated += sources.size();
  }
  return report;
}

std::vector<std::string> translate_corpus(const Seq2SeqModel& model, const TextCodec& codec,
                                          const std::vector<std::string>& sources, const CorpusOptions& options,
                                          CorpusReport* report) {
  std::vector<std::string> translations;
  translations.reserve(sources.size());
  size_t read = 0;
  const CorpusReport done = translate_corpus(
      {model}, codec,
      [&](std::string& line) {
        if (read == sources.size()) return false;
        line = sources[read++];
        return true;
      },
      [&](size_t, const std::vector<std::vector<ScoredTranslation>>& batch) {
        for (const auto& n_best : batch) translations.push_back(n_best.front().text);
      },
      options);
  if (report != nullptr) *report = done;
  return translations;
}

std::string normalise_reference(const TextCodec& codec, const std::string& line) {
  return codec.tokenizer().detokenize(codec.tokenizer().tokenize(line));
}

TranslationScores score_translations(const TextCodec& codec, const std::vector<std::string>& translations,
                                     const std::vector<std::string>& references) {
  std::vector<std::string> normalised;
  normalised.reserve(references.size());
  for (const std::string& line : references) normalised.push_back(normalise_reference(codec, line));
  return {metrics::corpus_bleu(translations, normalised), metrics::corpus_chrf(translations, normalised),
          metrics::exact_match(translations, normalised)};
}

}  // namespace gradformer::models

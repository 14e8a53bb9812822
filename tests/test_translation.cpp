// models::translate_corpus and models::score_translations (models/translation.h): the stream reads no further
// than one batch before handing it on, keeps input order and blank lines, hands on n-best lists whose first is
// the 1-best translation, cuts long sources by one rule, checks its options before reading; the scorer normalises
// references as the translations were.
#include "models/translation.h"
#include "models/zoo.h"
#include "tests/helpers.h"
#include "tests/model_helpers.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace gradformer;
using testing::message_of;

namespace {

// A transformer with random weights over the reverse task's vocabulary: what it says does not matter here, only
// that the stream gives each sentence's translation in its place.
struct Fixture {
  testing::EncodedTask task = testing::encode_task(data::make_reverse_task(5, 40, 0, 0), 16);
  std::shared_ptr<models::Seq2SeqModel> model;
  Fixture() {
    Generator gen(3);
    const nlohmann::json config =
        testing::tiny_transformer_config(static_cast<int64_t>(task.codec.vocabulary().size()), 0.0, 16, 16);
    model = models::make_model(config, gen);
    model->eval();
  }
};

std::vector<std::string> sample_sources(const Fixture& f) {
  std::vector<std::string> sources;
  for (size_t i = 0; i < 7; ++i) sources.push_back(f.task.splits.train[i].source);
  sources.insert(sources.begin() + 2, "");
  sources.insert(sources.begin() + 5, "  \t ");
  return sources;
}

}  // namespace

TEST_CASE("translate_corpus: hands on each batch before reading the next, in input order, blank lines empty") {
  const Fixture f;
  const std::vector<std::string> sources = sample_sources(f);
  std::vector<std::string> events, streamed;
  size_t read = 0;
  models::CorpusOptions options;
  options.batch_size = 3;
  const models::CorpusReport report = models::translate_corpus(
      {*f.model}, f.task.codec,
      [&](std::string& line) {
        if (read == sources.size()) return false;
        events.push_back("read");
        line = sources[read++];
        return true;
      },
      [&](size_t first, const std::vector<std::vector<models::ScoredTranslation>>& batch) {
        events.push_back("batch " + std::to_string(first));
        for (const auto& n_best : batch) {
          CHECK(n_best.size() == 1);
          streamed.push_back(n_best.front().text);
        }
      },
      options);
  CHECK(events == std::vector<std::string>{"read", "read", "read", "batch 0", "read", "read", "read", "batch 3",
                                           "read", "read", "read", "batch 6"});
  CHECK(report.sentences == 9);
  CHECK(report.translated == 7);
  CHECK(report.max_source_tokens == 15);  // the model's 16 positions, one kept for <eos>
  REQUIRE(streamed.size() == sources.size());
  CHECK(streamed[2].empty());
  CHECK(streamed[5].empty());

  // Batching does not change what a sentence translates to (padding is masked), and the in-memory form agrees.
  options.batch_size = 1;
  CHECK(models::translate_corpus(*f.model, f.task.codec, sources, options) == streamed);
  options.batch_size = 64;
  CHECK(models::translate_corpus(*f.model, f.task.codec, sources, options) == streamed);

  // Length-sorted batches: three batches of two read at once, decoded shortest first, handed on in input order.
  options.batch_size = 2;
  options.length_sorted_batches = 3;
  std::vector<size_t> firsts;
  std::vector<std::string> sorted;
  read = 0;
  models::translate_corpus(
      {*f.model}, f.task.codec,
      [&](std::string& line) {
        if (read == sources.size()) return false;
        line = sources[read++];
        return true;
      },
      [&](size_t first, const std::vector<std::vector<models::ScoredTranslation>>& batch) {
        firsts.push_back(first);
        for (const auto& n_best : batch) sorted.push_back(n_best.front().text);
      },
      options);
  CHECK(firsts == std::vector<size_t>{0, 6});
  CHECK(sorted == streamed);
  options.length_sorted_batches = 0;
  CHECK_THROWS_AS(models::translate_corpus(*f.model, f.task.codec, sources, options), ValueError);
}

TEST_CASE("translate_corpus: n-best lists in input order, the best first and equal to the 1-best translation") {
  const Fixture f;
  const std::vector<std::string> sources = sample_sources(f);
  models::CorpusOptions options;
  options.batch_size = 4;
  options.decode.beam_size = 4;
  options.decode.max_length = 8;
  const std::vector<std::string> best = models::translate_corpus(*f.model, f.task.codec, sources, options);
  options.decode.n_best = 3;
  std::vector<std::vector<models::ScoredTranslation>> lists;
  models::translate_corpus(
      {*f.model}, f.task.codec,
      [&, read = size_t{0}](std::string& line) mutable {
        if (read == sources.size()) return false;
        line = sources[read++];
        return true;
      },
      [&](size_t first, const std::vector<std::vector<models::ScoredTranslation>>& batch) {
        CHECK(first == lists.size());
        lists.insert(lists.end(), batch.begin(), batch.end());
      },
      options);
  REQUIRE(lists.size() == sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    CAPTURE(i);
    const bool is_blank = i == 2 || i == 5;
    CHECK(lists[i].size() == (is_blank ? 1 : 3));
    CHECK(lists[i].front().text == best[i]);
  }
  CHECK(lists[2].front().text.empty());
  CHECK(lists[2].front().log_prob == 0.0);
}

TEST_CASE("translate_corpus: one truncation rule, and bad options refused before any input is read") {
  const Fixture f;
  const std::vector<std::string> sources = sample_sources(f);
  models::CorpusOptions options;
  options.max_source_tokens = 2;
  models::CorpusReport report;
  models::translate_corpus(*f.model, f.task.codec, sources, options, &report);
  size_t longer = 0;
  for (const std::string& s : sources) longer += f.task.codec.tokenizer().tokenize(s).size() > 2;
  CHECK(longer > 0);
  CHECK(report.truncated == longer);
  CHECK(report.max_source_tokens == 2);

  bool read = false;
  const models::SentenceSource never_read = [&](std::string&) { return read = true; };
  const models::TranslationSink ignore = [](size_t, const std::vector<std::vector<models::ScoredTranslation>>&) {};
  options = {};
  options.max_source_tokens = 16;
  CHECK(message_of<ValueError>([&] { models::translate_corpus({*f.model}, f.task.codec, never_read, ignore, options); }) ==
        "translate_corpus: max_source_tokens 16 does not fit the model's 16 positions (one more is needed for <eos>); "
        "at most 15");
  options = {};
  options.decode.beam_size = models::max_beam_size + 1;
  CHECK(message_of<ValueError>([&] { models::translate_corpus({*f.model}, f.task.codec, never_read, ignore, options); }) ==
        "translate: beam size 257 is outside 1..256");
  options = {};
  options.decode.beam_size = 4;
  options.decode.n_best = 5;
  CHECK(message_of<ValueError>([&] { models::translate_corpus({*f.model}, f.task.codec, never_read, ignore, options); }) ==
        "translate: n-best 5 is outside 1..4 (the beam size)");
  options = {};
  options.batch_size = 0;
  CHECK(message_of<ValueError>([&] { models::translate_corpus({*f.model}, f.task.codec, never_read, ignore, options); }) ==
        "translate_corpus: batch size must be at least 1");
  CHECK_FALSE(read);
}

TEST_CASE("score_translations: references are normalised as the translations were, counts must agree") {
  const Fixture f;
  // The word tokenizer splits punctuation off and its detokenizer joins it back: "a b ." and "a b." are one text.
  const models::TranslationScores scores = models::score_translations(f.task.codec, {"a b.", "c d"}, {"a b .", "c e"});
  CHECK(scores.exact_match == doctest::Approx(0.5));
  CHECK(scores.chrf.score > 0);
  CHECK(scores.bleu.hyp_len > 0);
  CHECK(message_of<ValueError>([&] { models::score_translations(f.task.codec, {"a"}, {"a", "b"}); }) ==
        "corpus_bleu: 1 hypotheses but reference stream 0 has 2 lines");
}

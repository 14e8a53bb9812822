// Decoding over every model of the zoo (models/decode.h), shrunk to tiny sizes with random weights in eval
// mode: cached step-by-step log-probabilities against teacher forcing on a padded batch, greedy against a
// reference loop over step(), beam search scoring at least as well as greedy, DecoderState::select against
// decoding the reordered batch from the start, n-best lists against teacher-forced rescoring, ensembles against
// their members, and translate()'s argument errors. Corpora, text in and text out,
// are tested in test_translation.cpp.
#include "models/data/tokenizer.h"
#include "models/decode.h"
#include "models/task.h"
#include "models/zoo.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

using namespace gradformer;
using gradformer::testing::message_of;
using testing::max_abs_difference;

namespace {

constexpr int64_t kVocab = 20;

struct ZooCase {
  std::string label;
  std::string name;
  std::string rnn_cell;
};

const std::vector<ZooCase>& zoo_cases() {
  static const std::vector<ZooCase> cases{{"rnn-attention gru", "rnn-attention", "gru"},
                                          {"rnn-attention lstm", "rnn-attention", "lstm"},
                                          {"attention-seq2seq", "attention-seq2seq", "gru"},
                                          {"transformer-tiny", "transformer-tiny", "gru"}};
  return cases;
}

// The named model at tiny sizes, dropout 0 unless asked, eval mode, weights from a seeded generator that ends with
// this function (the model keeps no generator). Two Transformer layers and two attention blocks, so a cache
// indexed by the wrong layer would show.
std::shared_ptr<models::Seq2SeqModel> tiny_model(const ZooCase& c, uint64_t seed = 11, double dropout = 0.0) {
  models::ModelOptions options;
  options.vocab_size = kVocab;
  options.dropout = dropout;
  options.rnn_cell = c.rnn_cell;
  options.max_length = 64;
  nlohmann::json config = models::model_config(c.name, options);
  if (c.name == "rnn-attention") {
    config["embedding_dim"] = 8;
    config["hidden_size"] = 12;
  } else if (c.name == "attention-seq2seq") {
    config["d_model"] = 16;
    config["d_ff"] = 32;
    config["blocks"] = 2;
  } else {
    config["d_model"] = 16;
    config["heads"] = 2;
    config["d_ff"] = 32;
    config["layers"] = 2;
  }
  Generator gen(seed);
  std::shared_ptr<models::Seq2SeqModel> model = models::make_model(config, gen);
  model->eval();
  return model;
}

// Raises <eos> in the output projection's bias (the only parameter of shape [V]): without it the random models
// never end a sentence within the length limit, and cut-off outputs are no finished hypotheses to compare.
void favour_eos(models::Seq2SeqModel& model, double amount) {
  for (const auto& [name, p] : model.named_parameters()) {
    if (p.shape() != Shape{kVocab}) continue;
    std::vector<float> bias = p.to_vector<float>();
    bias[data::eos_id] += static_cast<float>(amount);
    p.detach().copy_(from_vector(bias, {kVocab}));
  }
}

std::shared_ptr<models::Seq2SeqModel> tiny_model_favouring_eos(const ZooCase& c, double boost) {
  auto model = tiny_model(c);
  favour_eos(*model, boost);
  return model;
}

// Every zoo case with two <eos> boosts: with 1 most sentences end at once; with 0.5 some run a few tokens.
std::vector<std::pair<ZooCase, double>> cases_with_boosts() {
  std::vector<std::pair<ZooCase, double>> out;
  for (double boost : {0.5, 1.0})
    for (const ZooCase& c : zoo_cases()) out.emplace_back(c, boost);
  return out;
}

// Two sources of different lengths (the second padded), ending with <eos>.
Tensor two_sources() { return models::make_source_batch({{5, 6, 7, 8, 9, data::eos_id}, {10, 11, 12, data::eos_id}}); }

// Three sources of three lengths, (B, S).
Tensor three_sources() {
  return models::make_source_batch({{5, 6, 7, 8, 9, data::eos_id}, {10, 11, 12, data::eos_id}, {19, 4, data::eos_id}});
}

Tensor ids(const std::vector<int64_t>& values) { return from_vector(values, {static_cast<int64_t>(values.size())}); }

// Column t of a (B, T) id tensor as a (B) tensor.
Tensor column(const Tensor& x, int64_t t) { return reshape(slice(x, 1, t, t + 1), {x.size(0)}).contiguous(); }

// Sum of log-probabilities of tokens (then <eos> when finished) under teacher forcing for source row `row` of
// src, divided by length^penalty as decode.cpp's beam search does.
double normalised_score(const models::Seq2SeqModel& model, const Tensor& src, int64_t row, const std::vector<int64_t>& tokens,
                        bool finished, double length_penalty) {
  NoGradGuard no_grad;
  std::vector<int64_t> tgt_in{data::bos_id}, tgt_out = tokens;
  tgt_in.insert(tgt_in.end(), tokens.begin(), tokens.end());
  if (finished)
    tgt_out.push_back(data::eos_id);
  else
    tgt_in.pop_back();
  if (tgt_out.empty()) return 0.0;
  const Tensor one_src = models::select_rows(src, ids({row}));                                           // (1, S)
  const Tensor logp = log_softmax(model.forward(one_src, from_vector(tgt_in, {1, static_cast<int64_t>(tgt_in.size())})), -1)
                          .to(DType::f64)
                          .contiguous();                                                            // (1, T, V)
  const double* lp = logp.data_ptr<double>();
  double score = 0;
  for (size_t t = 0; t < tgt_out.size(); ++t) score += lp[static_cast<int64_t>(t) * kVocab + tgt_out[t]];
  return score / std::pow(static_cast<double>(tgt_out.size()), length_penalty);
}

}  // namespace

TEST_CASE("decode: cached step-by-step log-probabilities equal teacher forcing on a padded batch") {
  for (const ZooCase& c : zoo_cases()) {
    CAPTURE(c.label);
    const auto model = tiny_model(c);
    NoGradGuard no_grad;
    const Tensor src = two_sources();  // (B, S)
    const Tensor tgt_in = from_vector(std::vector<int64_t>{data::bos_id, 4, 5, 6, 7, 8, data::bos_id, 9, 9, 13, 3, 19},
                                      {2, 6});                 // (B, T)
    const Tensor expected = log_softmax(model->forward(src, tgt_in), -1);  // (B, T, V)
    CHECK(expected.shape() == Shape{2, 6, kVocab});
    std::unique_ptr<models::DecoderState> state = model->start(src);
    for (int64_t t = 0; t < tgt_in.size(1); ++t) {
      CAPTURE(t);
      const Tensor logp = model->step(*state, column(tgt_in, t));  // (B, V)
      CHECK(logp.shape() == Shape{2, kVocab});
      CHECK(max_abs_difference(logp, reshape(slice(expected, 1, t, t + 1), {2, kVocab})) < 1e-5);
    }
  }
}

TEST_CASE("decode: greedy follows the argmax of step() and beam search scores at least as well") {
  const Tensor src = three_sources();
  int compared = 0;  // sentences where greedy finished, so the scores compare like with like
  for (const auto& [c, boost] : cases_with_boosts()) {
    CAPTURE(c.label);
    CAPTURE(boost);
    const auto model = tiny_model_favouring_eos(c, boost);
    models::DecodeOptions greedy_options;
    greedy_options.max_length = 16;
    const auto greedy = models::translate(*model, src, greedy_options);
    REQUIRE(greedy.size() == 3);

    // Beam size 1 is greedy; check it against a loop over step() one sentence at a time (no padding).
    for (int64_t b = 0; b < 3; ++b) {
      NoGradGuard no_grad;
      const Tensor one = models::select_rows(src, ids({b}));
      // Strip the padding: a single sentence has none.
      const auto row = one.to_vector<int64_t>();
      std::vector<int64_t> unpadded;
      for (int64_t id : row)
        if (id != data::pad_id) unpadded.push_back(id);
      const Tensor alone = models::make_source_batch({unpadded});
      std::unique_ptr<models::DecoderState> state = model->start(alone);
      std::vector<int64_t> tokens;
      int64_t last = data::bos_id;
      for (int64_t t = 0; t < greedy_options.max_length; ++t) {
        last = argmax(model->step(*state, ids({last})), -1).to_vector<int64_t>()[0];
        if (last == data::eos_id) break;
        tokens.push_back(last);
      }
      CHECK(greedy[static_cast<size_t>(b)] == tokens);
    }

    models::DecodeOptions one_beam = greedy_options;
    one_beam.beam_size = 1;
    CHECK(models::translate(*model, src, one_beam) == greedy);

    models::DecodeOptions beam_options = greedy_options;
    beam_options.beam_size = 4;
    const auto beam = models::translate(*model, src, beam_options);
    REQUIRE(beam.size() == 3);
    for (int64_t b = 0; b < 3; ++b) {
      CAPTURE(b);
      const auto& g = greedy[static_cast<size_t>(b)];
      const auto& h = beam[static_cast<size_t>(b)];
      const auto limit = static_cast<size_t>(beam_options.max_length);
      const bool greedy_finished = g.size() < limit, beam_finished = h.size() < limit;
      const double greedy_score = normalised_score(*model, src, b, g, greedy_finished, beam_options.length_penalty);
      const double beam_score = normalised_score(*model, src, b, h, beam_finished, beam_options.length_penalty);
      CAPTURE(greedy_score);
      CAPTURE(beam_score);
      CAPTURE(g.size());
      CAPTURE(h.size());
      // A greedy output cut off at the length limit is no finished hypothesis: beam search rightly prefers any
      // finished one to it, whatever the scores.
      if (greedy_finished) {
        CHECK(beam_finished);
        CHECK(beam_score >= greedy_score - 1e-4);
        ++compared;
      } else if (!beam_finished) {
        CHECK(beam_score >= greedy_score - 1e-4);
      }
    }
  }
  CHECK(compared >= 10);
}

TEST_CASE("decode: a beam-4 n-best list holds 4 distinct hypotheses best first, scored as teacher forcing rescores them") {
  const Tensor src = three_sources();
  int rescored = 0;  // finished hypotheses checked against teacher forcing
  for (const auto& [c, boost] : cases_with_boosts()) {
    CAPTURE(c.label);
    CAPTURE(boost);
    const auto model = tiny_model_favouring_eos(c, boost);
    models::DecodeOptions options;
    options.beam_size = 4;
    options.length_penalty = 0.6;
    options.max_length = 16;
    const auto best = models::translate(*model, src, options);
    options.n_best = 4;
    const auto lists = models::decode({*model}, src, options);
    REQUIRE(lists.size() == 3);
    for (int64_t b = 0; b < 3; ++b) {
      CAPTURE(b);
      const auto& list = lists[static_cast<size_t>(b)];
      REQUIRE(list.size() == 4);
      CHECK(list.front().tokens == best[static_cast<size_t>(b)]);
      for (size_t i = 0; i < list.size(); ++i) {
        CAPTURE(i);
        const bool finished = list[i].tokens.size() < static_cast<size_t>(options.max_length);
        for (size_t j = 0; j < i; ++j) CHECK(list[j].tokens != list[i].tokens);
        if (i > 0 && finished) {
          // Finished hypotheses come first, by score; one cut off at the length limit never precedes them.
          CHECK(list[i - 1].tokens.size() < static_cast<size_t>(options.max_length));
          CHECK(list[i - 1].score >= list[i].score);
        }
        const double log_prob = normalised_score(*model, src, b, list[i].tokens, finished, 0.0);
        CHECK(list[i].log_prob == doctest::Approx(log_prob).epsilon(1e-4));
        CHECK(list[i].score == doctest::Approx(normalised_score(*model, src, b, list[i].tokens, finished,
                                                                 options.length_penalty)).epsilon(1e-4));
        rescored += finished;
      }
    }
  }
  CHECK(rescored >= 60);
}

TEST_CASE("decode: an ensemble of one model, or of a model with itself, decodes as the model alone") {
  const Tensor src = three_sources();
  for (const auto& [c, boost] : cases_with_boosts()) {
    CAPTURE(c.label);
    CAPTURE(boost);
    const auto model = tiny_model_favouring_eos(c, boost);
    for (const int64_t beam : {1, 4}) {
      CAPTURE(beam);
      models::DecodeOptions options;
      options.beam_size = beam;
      options.n_best = beam;
      options.max_length = 16;
      const auto alone = models::decode({*model}, src, options);
      const auto twice = models::decode({*model, *model}, src, options);
      std::vector<std::vector<int64_t>> best;
      REQUIRE(twice.size() == alone.size());
      for (size_t b = 0; b < alone.size(); ++b) {
        best.push_back(alone[b].front().tokens);
        REQUIRE(twice[b].size() == alone[b].size());
        for (size_t i = 0; i < alone[b].size(); ++i) {
          CHECK(twice[b][i].tokens == alone[b][i].tokens);
          CHECK(twice[b][i].log_prob == alone[b][i].log_prob);
          CHECK(twice[b][i].score == alone[b][i].score);
        }
      }
      options.n_best = 1;
      CHECK(models::translate(*model, src, options) == best);
    }
  }
}

TEST_CASE("decode: an ensemble of two models follows the average of their log-probabilities") {
  const ZooCase& c = zoo_cases().back();
  // No <eos> boost: the sentences run long, so a step that did not average would show in many tokens.
  const auto first = tiny_model(c, 11), second = tiny_model(c, 12);
  const Tensor src = two_sources();
  models::DecodeOptions options;
  options.max_length = 12;
  const auto ensemble = models::decode({*first, *second}, src, options);
  NoGradGuard no_grad;
  std::unique_ptr<models::DecoderState> state_first = first->start(src), state_second = second->start(src);
  std::vector<std::vector<int64_t>> expected(2);
  std::vector<bool> done(2, false);
  Tensor last = ids({data::bos_id, data::bos_id});
  for (int64_t t = 0; t < options.max_length; ++t) {
    const Tensor average = (first->step(*state_first, last) + second->step(*state_second, last)) * 0.5;
    last = argmax(average, -1);
    const auto next = last.to_vector<int64_t>();
    for (size_t b = 0; b < 2; ++b) {
      if (next[b] == data::eos_id) done[b] = true;
      if (!done[b]) expected[b].push_back(next[b]);
    }
  }
  CHECK(models::translate(*first, src, options) != models::translate(*second, src, options));
  for (size_t b = 0; b < 2; ++b) CHECK(ensemble[b].front().tokens == expected[b]);
}

TEST_CASE("decode: DecoderState::select reorders and repeats rows consistently") {
  const std::vector<std::vector<int64_t>> sources{{5, 6, 7, 8, 9, data::eos_id}, {10, 11, 12, data::eos_id}, {19, 4, data::eos_id}};
  const std::vector<int64_t> rows{2, 0, 0, 1};
  for (const ZooCase& c : zoo_cases()) {
    CAPTURE(c.label);
    const auto model = tiny_model(c);
    NoGradGuard no_grad;
    // Two steps on the batch, then select, then a third step.
    std::unique_ptr<models::DecoderState> state = model->start(models::make_source_batch(sources));
    model->step(*state, ids({data::bos_id, data::bos_id, data::bos_id}));
    model->step(*state, ids({4, 13, 7}));
    state->select(ids(rows));
    const Tensor selected = model->step(*state, ids({17, 5, 6, 9}));  // (4, V)

    // The same three steps on the reordered batch from the start.
    std::vector<std::vector<int64_t>> reordered;
    for (int64_t r : rows) reordered.push_back(sources[static_cast<size_t>(r)]);
    std::unique_ptr<models::DecoderState> direct = model->start(models::make_source_batch(reordered));
    model->step(*direct, ids({data::bos_id, data::bos_id, data::bos_id, data::bos_id}));
    model->step(*direct, ids({7, 4, 4, 13}));
    const Tensor expected = model->step(*direct, ids({17, 5, 6, 9}));  // (4, V)
    CHECK(selected.shape() == Shape{4, kVocab});
    CHECK(max_abs_difference(selected, expected) < 1e-5);
  }
}

TEST_CASE("decode: translate rejects a source that is not i64 (B, S), a beam size outside 1..max_beam_size, an n-best above it") {
  const auto model = tiny_model(zoo_cases().back());
  CHECK(message_of<ShapeError>([&] { models::translate(*model, full({2, 3}, 4.0)); }) ==
        "translate: src must be an i64 (B, S) tensor, got f32 [2, 3]");
  CHECK(message_of<ShapeError>([&] { models::translate(*model, ids({4, 5, data::eos_id})); }) ==
        "translate: src must be an i64 (B, S) tensor, got i64 [3]");
  models::DecodeOptions options;
  options.beam_size = 0;
  CHECK(message_of<ValueError>([&] { models::translate(*model, two_sources(), options); }) ==
        "translate: beam size 0 is outside 1..256");
  // A huge beam would only exhaust memory (--beam 100000 grew to 14.5 GB before it was stopped).
  options.beam_size = 100000;
  CHECK(message_of<ValueError>([&] { models::translate(*model, two_sources(), options); }) ==
        "translate: beam size 100000 is outside 1..256");
  options.beam_size = 4;
  options.n_best = 5;
  CHECK(message_of<ValueError>([&] { models::translate(*model, two_sources(), options); }) ==
        "translate: n-best 5 is outside 1..4 (the beam size)");
  options.n_best = 1;
  CHECK(message_of<ValueError>([&] { models::decode({}, two_sources(), options); }) ==
        "translate: an ensemble needs at least one model");
}

TEST_CASE("decode: a zoo model keeps no generator; in training its dropout draws from the thread's current one") {
  for (const ZooCase& c : zoo_cases()) {
    CAPTURE(c.label);
    const auto model = tiny_model(c, 11, 0.3);
    model->train();
    NoGradGuard no_grad;
    const Tensor src = two_sources();
    const auto logits_with_masks_from = [&](uint64_t seed) {
      Generator masks(seed);
      const GeneratorGuard guard(masks);
      return model->forward(src, src);
    };
    const Tensor first = logits_with_masks_from(1);
    CHECK(max_abs_difference(logits_with_masks_from(1), first) == 0.0);
    CHECK(max_abs_difference(logits_with_masks_from(2), first) > 0.0);
  }
}

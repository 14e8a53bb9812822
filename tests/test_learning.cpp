// End to end in-process: a small Transformer trained by models::Trainer on the `reverse` task (the Annotated
// Transformer's sanity check) and decoded greedily must reverse held-out sequences exactly. This is the test
// that the parts fit together: data, codec, zoo, trainer, decoding and exact match.
#include "models/decode.h"
#include "models/metrics.h"
#include "models/task.h"
#include "models/trainer.h"
#include "models/zoo.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace gradformer;

TEST_CASE("learning: a small Transformer learns to reverse sequences to >= 95% exact match") {
  // Under AddressSanitizer the same run would take minutes: there the model trains on shorter budgets and the
  // bar is lower, still far above what an untrained or a copying model reaches (0%).
  const bool small = testing::sanitized_build;
  const size_t train_size = 2000, test_size = 200;
  const int64_t steps = small ? 150 : 600;
  const double bar = small ? 0.3 : 0.95;

  const data::Splits splits = data::make_reverse_task(5, train_size, 0, test_size);
  models::TaskOptions task_options;
  const models::TextCodec codec = models::TextCodec::learn(splits.train, task_options);
  std::vector<models::Example> train;
  for (const auto& pair : splits.train) train.push_back(codec.encode(pair, 16));

  models::ModelOptions options;
  options.vocab_size = static_cast<int64_t>(codec.vocabulary().size());
  options.dropout = 0.0;
  options.max_length = 32;
  nlohmann::json config = models::model_config("transformer-tiny", options);
  config["d_model"] = 32;
  config["heads"] = 2;
  config["d_ff"] = 64;
  config["layers"] = 2;
  default_generator().manual_seed(7);
  const auto model = models::make_model(config);

  const testing::TempDir out("gradformer-test-learning");
  models::TrainConfig train_config;
  train_config.out_dir = out.str();
  train_config.max_steps = steps;
  train_config.max_tokens = 512;
  train_config.warmup_steps = 100;
  train_config.lr_factor = 2.0;
  train_config.label_smoothing = 0.0;
  train_config.valid_every = 0;
  models::Trainer trainer(*model, codec, train, {}, {}, train_config, config);
  trainer.run([](const models::StepStats&) {}, [](const models::ValidStats&) {});

  model->eval();
  std::vector<std::vector<int64_t>> sources;
  std::vector<std::string> references, hypotheses;
  for (const auto& pair : splits.test) {
    sources.push_back(codec.encode_source(pair.source, 16));
    references.push_back(pair.target);
  }
  for (const auto& ids : models::translate(*model, models::make_source_batch(sources))) hypotheses.push_back(codec.decode(ids));
  const double exact = metrics::exact_match(hypotheses, references);
  CAPTURE(hypotheses[0]);
  CAPTURE(references[0]);
  MESSAGE("reverse: exact match " << exact * 100 << "% after " << steps << " steps");
  CHECK(exact >= bar);
}

// The training loop of models/trainer.h on the copy task at tiny sizes: resumption from a checkpoint reproduces
// the uninterrupted run's losses bit for bit, the loss falls, a blow-up throws NumericalError naming the step
// while the last checkpoint stays loadable, and a NaN learning rate is refused up front.
#include "models/trainer.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

using namespace gradformer;
using testing::TempDir;

namespace {

// The copy task at 200 training and 20 validation pairs, word-tokenised, as ids.
struct CopyData {
  data::Splits splits;
  models::TextCodec codec;
  std::vector<models::Example> train, valid;
};

const CopyData& copy_data() {
  static const CopyData data = [] {
    data::Splits splits = data::make_copy_task(3, 200, 20, 0);
    models::TaskOptions options;
    options.tokenizer = "word";
    models::TextCodec codec = models::TextCodec::learn(splits.train, options);
    std::vector<models::Example> train, valid;
    for (const auto& pair : splits.train) train.push_back(codec.encode(pair, 64));
    for (const auto& pair : splits.valid) valid.push_back(codec.encode(pair, 64));
    return CopyData{std::move(splits), std::move(codec), std::move(train), std::move(valid)};
  }();
  return data;
}

nlohmann::json tiny_config(double dropout) {
  models::ModelOptions options;
  options.vocab_size = static_cast<int64_t>(copy_data().codec.vocabulary().size());
  options.dropout = dropout;
  options.max_length = 64;
  nlohmann::json config = models::model_config("transformer-tiny", options);
  config["d_model"] = 16;
  config["heads"] = 2;
  config["d_ff"] = 32;
  config["layers"] = 1;
  return config;
}

// Dropout and the initial weights both draw from default_generator(): reseeding it before building a model
// makes two runs start from the same state.
std::shared_ptr<models::Seq2SeqModel> fresh_model(const nlohmann::json& config) {
  default_generator().manual_seed(2024);
  return models::make_model(config, default_generator());
}

models::TrainConfig tiny_train_config(const std::string& out_dir, int64_t max_steps, int64_t valid_every) {
  models::TrainConfig config;
  config.out_dir = out_dir;
  config.max_steps = max_steps;
  config.max_tokens = 256;
  config.warmup_steps = 20;
  config.valid_every = valid_every;
  config.valid_bleu_sentences = 0;
  return config;
}

std::unique_ptr<models::Trainer> make_trainer(models::Seq2SeqModel& model, const nlohmann::json& model_config,
                                              models::TrainConfig config) {
  const CopyData& d = copy_data();
  return std::make_unique<models::Trainer>(model, d.codec, d.train, d.valid, d.splits.valid, std::move(config),
                                           model_config);
}

void ignore_step(const models::StepStats&) {}
void ignore_valid(const models::ValidStats&) {}

double mean_loss(const std::vector<std::pair<double, double>>& losses, size_t begin, size_t end) {
  double total = 0;
  for (size_t i = begin; i < end; ++i) total += losses[i].second;
  return total / static_cast<double>(end - begin);
}

}  // namespace

TEST_CASE("trainer: resuming from a checkpoint reproduces the uninterrupted run's losses exactly") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);

  // A: twelve steps straight through, validating (and checkpointing) at 6 and 12.
  const auto model_a = fresh_model(config);
  const auto a = make_trainer(*model_a, config, tiny_train_config(dir.str("a"), 12, 6));
  CHECK(a->run(ignore_step, ignore_valid) == models::StopReason::max_steps);
  REQUIRE(a->train_losses().size() == 12);

  // C: the same run stopped at step 6, leaving the checkpoint A overwrote.
  const auto model_c = fresh_model(config);
  const auto c = make_trainer(*model_c, config, tiny_train_config(dir.str("c"), 6, 6));
  CHECK(c->run(ignore_step, ignore_valid) == models::StopReason::max_steps);
  REQUIRE(c->train_losses().size() == 6);

  // B: a fresh model and trainer resumed from C's checkpoint, run on to step 12. The generator is moved on
  // first, so only the checkpoint can put it back where A had it.
  const auto model_b = fresh_model(config);
  randn({100});
  const auto b = make_trainer(*model_b, config, tiny_train_config(dir.str("b"), 12, 6));
  b->resume(dir.str("c/last.safetensors"));
  CHECK(b->step() == 6);
  CHECK(b->run(ignore_step, ignore_valid) == models::StopReason::max_steps);
  REQUIRE(b->train_losses().size() == 12);
  for (size_t i = 0; i < 12; ++i) {
    CAPTURE(i);
    CHECK(b->train_losses()[i].first == a->train_losses()[i].first);
    CHECK(b->train_losses()[i].second == a->train_losses()[i].second);
  }
  CHECK(b->valid_losses() == a->valid_losses());
}

TEST_CASE("trainer: the loss falls on the copy task") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.0);
  const auto model = fresh_model(config);
  models::TrainConfig train_config = tiny_train_config(dir.str(), 150, 75);
  train_config.warmup_steps = 40;
  const auto trainer = make_trainer(*model, config, train_config);
  const double valid_before = trainer->evaluate_loss(copy_data().valid);
  trainer->run(ignore_step, ignore_valid);
  const auto& losses = trainer->train_losses();
  REQUIRE(losses.size() == 150);
  const double first = mean_loss(losses, 0, 10), last = mean_loss(losses, 140, 150);
  CAPTURE(first);
  CAPTURE(last);
  CHECK(last < first - 0.5);
  CAPTURE(valid_before);
  CHECK(trainer->valid_losses().back().second < valid_before - 0.2);
}

TEST_CASE("trainer: a blow-up throws NumericalError naming the step and leaves the last checkpoint loadable") {
  // A learning rate of ~1e29 makes the weights explode; Adam with a float-overflowing one gives Inf and NaN.
  for (const double lr_factor : {1e30, 1e300}) {
    CAPTURE(lr_factor);
    const TempDir dir;
    const nlohmann::json config = tiny_config(0.1);

    // Four sane steps, checkpointed at 2 and 4.
    const auto model = fresh_model(config);
    const auto sane = make_trainer(*model, config, tiny_train_config(dir.str(), 4, 2));
    sane->run(ignore_step, ignore_valid);
    const std::string last = dir.str("last.safetensors");
    REQUIRE(std::filesystem::exists(last));

    // Then the wild learning rate into the same directory: the loss or the gradient stops being finite before
    // the next validation at step 8.
    models::TrainConfig wild = tiny_train_config(dir.str(), 20, 4);
    wild.lr_factor = lr_factor;
    const auto blown = make_trainer(*model, config, wild);
    blown->resume(last);
    std::string message;
    try {
      blown->run(ignore_step, ignore_valid);
    } catch (const NumericalError& e) {
      message = e.what();
    }
    CAPTURE(message);
    CHECK(blown->step() >= 4);
    CHECK(blown->step() < 8);
    CHECK(message.starts_with("train: step " + std::to_string(blown->step() + 1) + ": "));

    // The checkpoint is still the one from step 4, and it loads into a fresh model with finite weights.
    const auto reloaded = fresh_model(config);
    const nn::LoadedCheckpoint loaded = nn::load_checkpoint(last, *reloaded, nullptr);
    CHECK(loaded.state.step == 4);
    for (const Tensor& p : reloaded->parameters())
      for (double v : p.to_vector<double>()) REQUIRE(std::isfinite(v));
  }
}

TEST_CASE("trainer: a NaN learning rate is refused before training") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);
  const auto model = fresh_model(config);
  models::TrainConfig config_nan = tiny_train_config(dir.str(), 4, 2);
  config_nan.lr_factor = std::numeric_limits<double>::quiet_NaN();
  std::string message;
  try {
    make_trainer(*model, config, config_nan);
  } catch (const ValueError& e) {
    message = e.what();
  }
  CHECK(message == "Adam: lr = nan is outside [0, inf]");
}

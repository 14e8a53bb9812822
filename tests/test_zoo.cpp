// The errors of the zoo and of the task layer (models/zoo.h, models/task.h): unknown names list the known ones,
// malformed configurations and codecs name the key, a corpus without training pairs and an empty training set
// are refused. What the models compute is tested in test_decode.cpp and test_trainer.cpp.
#include "models/task.h"
#include "models/trainer.h"
#include "models/zoo.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

using namespace gradformer;
using testing::message_of;

TEST_CASE("zoo: unknown names and bad options are ValueErrors listing what is known") {
  models::ModelOptions options;
  options.vocab_size = 20;
  CHECK(message_of<ValueError>([&] { models::model_config("transformer-huge", options); }) ==
        "model: unknown model 'transformer-huge' (known: rnn-attention, attention-seq2seq, transformer-tiny, "
        "transformer-small, transformer-base)");
  options.rnn_cell = "rnn";
  CHECK(message_of<ValueError>([&] { models::model_config("rnn-attention", options); }) ==
        "model rnn-attention: cell 'rnn' is neither gru nor lstm");
  options.vocab_size = 3;
  CHECK(message_of<ValueError>([&] { models::model_config("transformer-tiny", options); }) ==
        "model transformer-tiny: vocabulary size 3 is too small");
}

TEST_CASE("zoo: a configuration with a missing or mistyped key is a FormatError naming the key") {
  models::ModelOptions options;
  options.vocab_size = 20;
  nlohmann::json config = models::model_config("transformer-tiny", options);
  config.erase("d_model");
  CHECK(message_of<FormatError>([&] { models::make_model(config); }).starts_with("model config: missing 'd_model' in {"));
  config = models::model_config("transformer-tiny", options);
  config["layers"] = "two";
  CHECK(message_of<FormatError>([&] { models::make_model(config); })
            .starts_with("model config: 'layers' has the wrong type: "));
  config["model"] = "transformer-huge";
  CHECK(message_of<ValueError>([&] { models::make_model(config); }).starts_with("model: unknown model 'transformer-huge'"));
}

TEST_CASE("task: unknown tasks and tokenizers, empty corpora and codec-less configs are refused") {
  const testing::TempDir dir;
  models::TaskOptions options;
  CHECK(message_of<ValueError>([&] { models::load_task("nope", options); }) ==
        "task: unknown task 'nope' (known: grammar, grammar-long, ding-sentences, ding-phrases, copy, reverse, "
        "tsv:PATH)");
  const std::string blank = dir.str("blank.tsv");
  std::ofstream(blank) << "\n  \n";
  CHECK(message_of<ValueError>([&] { models::load_task("tsv:" + blank, options); }) ==
        "task tsv:" + blank + ": the file holds no training pairs");
  CHECK(message_of<IOError>([&] { models::load_task("tsv:" + dir.str(), options); }) ==
        "tsv " + dir.str() + ": is a directory, not a file");

  options.tokenizer = "morse";
  CHECK(message_of<ValueError>([&] { models::TextCodec::learn({{"a", "b"}}, options); }) ==
        "tokenizer: unknown tokenizer 'morse' (known: word, char, bpe, spm)");
  CHECK(message_of<FormatError>([] { models::TextCodec::from_json(nlohmann::json::array()); }) ==
        "codec: expected an object with 'tokenizer' and 'vocabulary'");
  nlohmann::json config{{"model", "transformer-tiny"}};
  CHECK(message_of<FormatError>([&] { models::TextCodec::take_from_config(config, "run.safetensors"); }) ==
        "run.safetensors: the checkpoint holds no vocabulary (was it written by gradformer-train?)");
}

TEST_CASE("task: encode reports truncation of either side") {
  models::TaskOptions options;
  const models::TextCodec codec = models::TextCodec::learn({{"a b c", "d e"}}, options);
  bool cut = false;
  CHECK(codec.encode({"a b c", "d e"}, 2, &cut).source.size() == 3);  // two tokens and <eos>
  CHECK(cut);
  codec.encode({"a b", "d e c"}, 2, &cut);
  CHECK(cut);
  codec.encode({"a b", "d e"}, 2, &cut);
  CHECK_FALSE(cut);
  CHECK(codec.encode_source("a b c", 3, &cut).size() == 4);
  CHECK_FALSE(cut);
}

TEST_CASE("task: data settings survive JSON, and a damaged record is a FormatError naming the file") {
  models::DataSettings settings;
  settings.task = "tsv:/data/corpus.tsv";
  settings.options.tokenizer = "bpe";
  settings.options.bpe_merges = 123;
  settings.options.max_tokens = 40;
  settings.options.skip_bad_lines = true;
  CHECK(models::data_settings_from_json(models::to_json(settings), "run.safetensors") == settings);
  nlohmann::json damaged = models::to_json(settings);
  damaged["bpe_merges"] = "many";
  CHECK(message_of<FormatError>([&] { models::data_settings_from_json(damaged, "run.safetensors"); })
            .starts_with("run.safetensors: the checkpoint's data settings are unreadable: "));
}

TEST_CASE("trainer: an empty training set is refused before anything is written") {
  const testing::TempDir dir;
  models::TaskOptions task_options;
  const models::TextCodec codec = models::TextCodec::learn({{"a b", "b a"}}, task_options);
  models::ModelOptions options;
  options.vocab_size = static_cast<int64_t>(codec.vocabulary().size());
  const nlohmann::json config = models::model_config("transformer-tiny", options);
  const auto model = models::make_model(config);
  models::TrainConfig train_config;
  train_config.out_dir = dir.str("run");
  CHECK(message_of<ValueError>([&] { models::Trainer(*model, codec, {}, {}, {}, train_config, config); }) ==
        "train: the training set is empty");
  CHECK_FALSE(std::filesystem::exists(dir.str("run")));
}

TEST_CASE("zoo: a transformer built with a program's sublayers names them in its config, and needs them back") {
  models::ModelOptions options;
  options.vocab_size = 20;
  options.sublayers = "gated";
  nlohmann::json config = models::model_config("transformer-tiny", options);
  CHECK(config.at("sublayers") == "gated");
  config["layers"] = 1;
  const models::Sublayers gated{
      .name = "gated",
      .feed_forward = [](const nn::TransformerLayerOptions& o, Generator& gen) -> std::shared_ptr<nn::UnaryModule> {
        return std::make_shared<nn::FeedForward>(
            nn::FeedForwardOptions{.d_model = o.d_model, .dim_feedforward = 8, .activation = nn::Activation::silu},
            gen);
      }};
  Generator gen(1);
  const auto model = models::make_model(config, gated, gen);
  bool found = false;
  for (const auto& entry : model->named_parameters())
    found |= entry.first == "transformer.encoder.layers.0.feed_forward.linear1.weight";
  CHECK(found);
  CHECK(message_of<ValueError>([&] { models::make_model(config, gen); }) ==
        "model config: the model was built with the sublayers 'gated' of the program that trained it; build it with "
        "make_model(config, sublayers) from a program that defines them");
  config.erase("sublayers");
  CHECK(message_of<ValueError>([&] { models::make_model(config, gated, gen); }) ==
        "model config: sublayers 'gated' were given for a configuration that names none");
  options.sublayers = "gated";
  CHECK(message_of<ValueError>([&] { models::model_config("rnn-attention", options); }) ==
        "model rnn-attention: sublayers 'gated' are for the transformer-* models only");
}

// Helpers of the suites that train zoo models: a task's splits encoded once, and transformer-tiny cut down to
// sizes a test trains in seconds.
#pragma once

#include "models/task.h"
#include "models/zoo.h"

#include <utility>
#include <vector>

namespace gradformer::testing {

// Word-tokenised splits with the codec learned on their training part, sentences cut at max_tokens.
struct EncodedTask {
  data::Splits splits;
  models::TextCodec codec;
  std::vector<models::Example> train, valid;
};

inline EncodedTask encode_task(data::Splits splits, size_t max_tokens) {
  models::TaskOptions options;
  options.tokenizer = "word";
  models::TextCodec codec = models::TextCodec::learn(splits.train, options);
  std::vector<models::Example> train, valid;
  for (const auto& pair : splits.train) train.push_back(codec.encode(pair, max_tokens));
  for (const auto& pair : splits.valid) valid.push_back(codec.encode(pair, max_tokens));
  return EncodedTask{std::move(splits), std::move(codec), std::move(train), std::move(valid)};
}

// transformer-tiny with one layer, two heads, d_model as given and d_ff twice that.
inline nlohmann::json tiny_transformer_config(int64_t vocab_size, double dropout, int64_t max_length,
                                              int64_t d_model) {
  models::ModelOptions options;
  options.vocab_size = vocab_size;
  options.dropout = dropout;
  options.max_length = max_length;
  nlohmann::json config = models::model_config("transformer-tiny", options);
  config["d_model"] = d_model;
  config["heads"] = 2;
  config["d_ff"] = 2 * d_model;
  config["layers"] = 1;
  return config;
}

}  // namespace gradformer::testing

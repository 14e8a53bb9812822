// libFuzzer target for what a checkpoint's configuration drives: models::check_config_fits against the tensors a
// checkpoint holds, then models::make_model. Seeds (tests/fuzz/corpus/checkpoint_config/) are tiny configurations
// of each model of the zoo; the checkpoint each is checked against is the seed's own model's tensor shapes (made
// once, at start-up), so that a mutated size either fails the check or builds the model those tensors describe.
// Any input must either throw gradformer's typed Error (bad JSON is skipped) or build a model no larger than the
// file's tensors allow; any other exception, crash or allocation past the memory limit (run.sh passes
// -rss_limit_mb and -malloc_limit_mb) is a finding: the class of defect where `layers = 1000000` in a
// checkpoint's metadata grew a process to gigabytes.
#include "autograd/error.h"
#include "models/zoo.h"
#include "nn/module.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Shapes = std::map<std::string, std::vector<int64_t>>;

Shapes shapes_of(const gradformer::nn::Module& model) {
  Shapes shapes;
  for (const auto& [name, tensor] : model.state_dict()) shapes.emplace(name, tensor.shape());
  return shapes;
}

int64_t elements(const Shapes& shapes) {
  int64_t total = 0;
  for (const auto& entry : shapes) {
    int64_t count = 1;
    for (const int64_t size : entry.second) count *= size;
    total += count;
  }
  return total;
}

// The tensors of one tiny model of each kind: what the fuzzed configuration claims to describe.
const std::map<std::string, Shapes>& checkpoints() {
  static const std::map<std::string, Shapes> made = [] {
    std::map<std::string, Shapes> out;
    const char* seeds[] = {
        R"({"model":"transformer-tiny","vocab_size":12,"d_model":8,"heads":2,"d_ff":16,"layers":1,"dropout":0.1,)"
        R"("max_length":16,"pre_norm":false,"share_embeddings":false})",
        R"({"model":"attention-seq2seq","vocab_size":12,"d_model":8,"d_ff":16,"blocks":1,"dropout":0.1,"max_length":16})",
        R"({"model":"rnn-attention","vocab_size":12,"embedding_dim":8,"hidden_size":8,"cell":"gru","dropout":0.1,)"
        R"("max_length":16})"};
    for (const char* seed : seeds) {
      const nlohmann::json config = nlohmann::json::parse(seed);
      out.emplace(config.at("model").get<std::string>(), shapes_of(*gradformer::models::make_model(config)));
    }
    return out;
  }();
  return made;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json config =
      nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains("model") || !config["model"].is_string())
    return 0;
  const std::string model = config["model"].get<std::string>();
  // The transformer presets share one layout; any other name is checked against the transformer's tensors too.
  const auto kind = checkpoints().find(model.starts_with("transformer-") ? "transformer-tiny" : model);
  const Shapes& file = kind == checkpoints().end() ? checkpoints().at("transformer-tiny") : kind->second;
  try {
    gradformer::models::check_config_fits(config, file, "fuzz");
    const auto built = gradformer::models::make_model(config);
    // What the check lets through is the file's model, up to the tensors no size names (a shared embedding,
    // a final norm): never a model larger than a few times the file.
    if (elements(shapes_of(*built)) > 4 * elements(file) + 4096) std::abort();
  } catch (const gradformer::Error&) {
  }
  return 0;
}

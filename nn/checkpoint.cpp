// Checkpoints and weight files: Tensor ↔ safetensors record, what goes where in a checkpoint, and the checks
// that run before a load touches the model or optimizer.
#include "nn/checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <exception>
#include <set>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace gradformer::nn {
namespace {

constexpr std::string_view kFormat = "gradformer-checkpoint";
constexpr std::string_view kVersion = "1";
constexpr std::string_view kOptimizerPrefix = "optimizer.";
constexpr std::string_view kTrainingPrefix = "training.";
const std::string kGeneratorKey = "training.generator";
// Four xoshiro words, the has-spare flag, the spare normal: each bit-cast into one int64.
constexpr int64_t kGeneratorWords = 6;

safetensors::DType record_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return safetensors::DType::F32;
    case DType::f64: return safetensors::DType::F64;
    case DType::i64:
    case DType::boolean: return safetensors::DType::I64;
  }
  fail<DTypeError>("to_record", "unknown dtype");
}

DType tensor_dtype(safetensors::DType dtype) {
  switch (dtype) {
    case safetensors::DType::F32: return DType::f32;
    case safetensors::DType::F64: return DType::f64;
    case safetensors::DType::I64: return DType::i64;
  }
  fail<DTypeError>("from_record", "unknown dtype");
}

bool is_model_key(const std::string& key) {
  return !key.starts_with(kOptimizerPrefix) && !key.starts_with(kTrainingPrefix);
}

// nlohmann throws its own type_error for strings that are not UTF-8; callers expect our ValueError.
std::string dump_json(const nlohmann::json& value, std::string_view what) {
  try {
    return value.dump();
  } catch (const nlohmann::json::exception& error) {
    fail<ValueError>("save_checkpoint", "{} cannot be written as JSON: {}", what, error.what());
  }
}

safetensors::TensorRecord generator_record(const Generator::State& state) {
  std::vector<int64_t> words;
  for (uint64_t word : state.words) words.push_back(std::bit_cast<int64_t>(word));
  words.push_back(state.has_spare_normal ? 1 : 0);
  words.push_back(std::bit_cast<int64_t>(state.spare_normal));
  return safetensors::make_record<int64_t>({kGeneratorWords}, words);
}

Generator::State generator_state(const std::string& path, const safetensors::File& file) {
  const auto it = file.tensors.find(kGeneratorKey);
  if (it == file.tensors.end()) fail<CheckpointError>(path, "checkpoint has no '{}' tensor", kGeneratorKey);
  const safetensors::TensorRecord& record = it->second;
  if (record.dtype != safetensors::DType::I64 || record.shape != std::vector<int64_t>{kGeneratorWords})
    fail<CheckpointError>(path, "'{}' is {} {}, expected I64 [{}]", kGeneratorKey,
                          safetensors::dtype_name(record.dtype), shape_str(record.shape), kGeneratorWords);
  const std::vector<int64_t> words = safetensors::values<int64_t>(record, kGeneratorKey);
  Generator::State state;
  for (size_t i = 0; i < 4; ++i) state.words[i] = std::bit_cast<uint64_t>(words[i]);
  // xoshiro256** never leaves the all-zero state, and the seeding never enters it: such a file is corrupt.
  if (state.words == std::array<uint64_t, 4>{})
    fail<CheckpointError>(path, "'{}' holds the all-zero generator state, which no generator reaches",
                          kGeneratorKey);
  if (words[4] != 0 && words[4] != 1)
    fail<CheckpointError>(path, "'{}' has-spare flag is {}, not 0 or 1", kGeneratorKey, words[4]);
  state.has_spare_normal = words[4] == 1;
  state.spare_normal = std::bit_cast<double>(words[5]);
  return state;
}

const std::string& metadata_entry(const std::string& path, const safetensors::File& file, const std::string& key) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) fail<CheckpointError>(path, "checkpoint metadata has no \"{}\" entry", key);
  return it->second;
}

nlohmann::json parse_metadata_json(const std::string& path, const safetensors::File& file, const std::string& key) {
  nlohmann::json value = nlohmann::json::parse(metadata_entry(path, file, key), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) fail<CheckpointError>(path, "checkpoint metadata \"{}\" is not valid JSON", key);
  return value;
}

// The metadata and training state of a parsed checkpoint, with every check that needs no model.
LoadedCheckpoint read_metadata(const std::string& path, const safetensors::File& file) {
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != kFormat)
    fail<CheckpointError>(path, "has no gradformer training metadata (__metadata__ format is {}, expected \"{}\"); "
                                "a plain weights file loads with load_weights",
                          format == file.metadata.end() ? "absent" : fmt::format("\"{}\"", format->second), kFormat);
  const std::string& version = metadata_entry(path, file, "version");
  if (version != kVersion)
    fail<CheckpointError>(path, "checkpoint version \"{}\" is not supported (this build reads version {})", version,
                          kVersion);

  LoadedCheckpoint loaded;
  loaded.config = parse_metadata_json(path, file, "config");
  const nlohmann::json training = parse_metadata_json(path, file, "training");
  if (!training.is_object() || !training.contains("step") || !training["step"].is_number_integer() ||
      training["step"].get<int64_t>() < 0 || (training["step"].is_number_unsigned() &&
                                              training["step"].get<uint64_t>() > uint64_t{INT64_MAX}))
    fail<CheckpointError>(path, "checkpoint metadata \"training\" needs a non-negative integer \"step\", got {}",
                          training.dump());
  loaded.state.step = training["step"].get<int64_t>();
  if (training.contains("extra")) loaded.state.extra = training["extra"];
  loaded.state.generator = generator_state(path, file);

  for (const auto& entry : file.tensors) {
    if (entry.first.starts_with(kOptimizerPrefix)) loaded.has_optimizer = true;
    if (entry.first.starts_with(kTrainingPrefix) && entry.first != kGeneratorKey)
      fail<CheckpointError>(path, "unknown training tensor '{}'", entry.first);
  }
  if (loaded.has_optimizer && !file.metadata.contains("optimizer"))
    fail<CheckpointError>(path, "checkpoint holds optimizer tensors but no \"optimizer\" metadata naming its type");
  return loaded;
}

// Whether a record of `stored` dtype may be loaded into a tensor of `target` dtype.
bool loadable(safetensors::DType stored, DType target) {
  if (is_floating(target)) return stored != safetensors::DType::I64;
  return stored == safetensors::DType::I64;
}

// Tensors for every model key of `file`, checked against `model` (keys, shapes, dtypes) and converted to the
// model's dtypes; throws one CheckpointError listing every problem.
StateDict model_state(const std::string& path, const safetensors::File& file, const Module& model, bool strict,
                      bool skip_training_keys) {
  const StateDict targets = model.state_dict();
  std::vector<std::string> missing, unexpected, mismatched;
  StateDict dict;
  for (const auto& [name, target] : targets) {
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      missing.push_back(name);
      continue;
    }
    const safetensors::TensorRecord& record = it->second;
    if (record.shape != target.shape()) {
      mismatched.push_back(fmt::format("{}: checkpoint {}, model {}", name, shape_str(record.shape),
                                       shape_str(target.shape())));
    } else if (!loadable(record.dtype, target.dtype())) {
      mismatched.push_back(fmt::format("{}: checkpoint dtype {}, model {}", name,
                                       safetensors::dtype_name(record.dtype), dtype_name(target.dtype())));
    } else if (target.dtype() == DType::boolean) {
      const std::vector<int64_t> values = safetensors::values<int64_t>(record, name);
      if (std::any_of(values.begin(), values.end(), [](int64_t v) { return v != 0 && v != 1; }))
        mismatched.push_back(fmt::format("{}: bool buffer stored with values other than 0 and 1", name));
      else
        dict.emplace(name, from_record(record).to(DType::boolean));
    } else {
      dict.emplace(name, from_record(record));
    }
  }
  for (const auto& entry : file.tensors)
    if (!targets.contains(entry.first) && (!skip_training_keys || is_model_key(entry.first)))
      unexpected.push_back(entry.first);

  const std::vector<std::string> problems =
      describe_key_problems(missing, unexpected, mismatched, strict, "mismatched key(s)");
  if (!problems.empty())
    fail<CheckpointError>(path, "does not fit the {} model: {}", model.type_name(), fmt::join(problems, "; "));
  return dict;
}

}  // namespace

safetensors::TensorRecord to_record(const Tensor& tensor) {
  Tensor source = tensor.detach();
  if (source.dtype() == DType::boolean) source = source.to(DType::i64);
  source = source.contiguous();
  return safetensors::make_record(record_dtype(tensor.dtype()), source.shape(),
                                  source.numel() == 0 ? nullptr : source.raw_data());
}

Tensor from_record(const safetensors::TensorRecord& record) {
  Tensor out = empty(record.shape, tensor_dtype(record.dtype));
  const size_t expected = static_cast<size_t>(out.numel()) * dtype_size(out.dtype());
  if (record.data.size() != expected)
    fail<ValueError>("from_record", "shape {} of {} needs {} bytes, the record holds {}", shape_str(record.shape),
                     safetensors::dtype_name(record.dtype), expected, record.data.size());
  if (expected > 0) std::memcpy(out.raw_data(), record.data.data(), expected);
  return out;
}

void save_weights(const std::string& path, const Module& model, const std::map<std::string, std::string>& metadata) {
  safetensors::File file;
  file.metadata = metadata;
  file.metadata.emplace("format", "pt");
  for (const auto& [name, tensor] : model.state_dict()) file.tensors.emplace(name, to_record(tensor));
  safetensors::save_atomic(path, file);
}

void load_weights(const std::string& path, Module& model, bool strict) {
  const safetensors::File file = safetensors::load(path);
  const auto format = file.metadata.find("format");
  const bool checkpoint = format != file.metadata.end() && format->second == kFormat;
  const StateDict dict = model_state(path, file, model, strict, checkpoint);
  model.load_state_dict(dict, strict);
}

void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const TrainingState& state, const nlohmann::json& config) {
  safetensors::File file;
  for (const auto& [name, tensor] : model.state_dict()) {
    if (!is_model_key(name))
      fail<ValueError>("save_checkpoint", "model key '{}' starts with \"{}\" or \"{}\", which checkpoints reserve",
                       name, kOptimizerPrefix, kTrainingPrefix);
    file.tensors.emplace(name, to_record(tensor));
  }
  if (optimizer != nullptr) {
    for (const auto& [key, tensor] : optimizer->state_dict())
      file.tensors.emplace(fmt::format("{}{}", kOptimizerPrefix, key), to_record(tensor));
    file.metadata.emplace("optimizer", optimizer->type_name());
  }
  file.tensors.emplace(kGeneratorKey, generator_record(state.generator));

  file.metadata.emplace("format", kFormat);
  file.metadata.emplace("version", kVersion);
  file.metadata.emplace("config", dump_json(config, "config"));
  nlohmann::json training = {{"step", state.step}};
  if (!state.extra.is_null()) training["extra"] = state.extra;
  file.metadata.emplace("training", dump_json(training, "training state"));
  safetensors::save_atomic(path, file);
}

LoadedCheckpoint read_checkpoint_config(const std::string& path) {
  return read_metadata(path, safetensors::load(path));
}

LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer) {
  const safetensors::File file = safetensors::load(path);
  LoadedCheckpoint loaded = read_metadata(path, file);
  const StateDict model_dict = model_state(path, file, model, /*strict=*/true, /*skip_training_keys=*/true);

  StateDict optimizer_dict;
  if (optimizer != nullptr) {
    if (!loaded.has_optimizer)
      fail<CheckpointError>(path, "checkpoint holds no optimizer state to load into the {}; pass no optimizer to "
                                  "start a fresh one", optimizer->type_name());
    const std::string& saved_type = file.metadata.at("optimizer");
    if (saved_type != optimizer->type_name())
      fail<CheckpointError>(path, "checkpoint holds {} state, cannot load it into {}", saved_type,
                            optimizer->type_name());
    for (const auto& [key, record] : file.tensors)
      if (key.starts_with(kOptimizerPrefix))
        optimizer_dict.emplace(key.substr(kOptimizerPrefix.size()), from_record(record));
  }

  // Optimizer::load_state_dict checks everything before it replaces any state, and the model's dict has been
  // checked above with the rules Module::load_state_dict applies; should the model load throw regardless, the
  // optimizer goes back to its previous state so that the caller never sees one loaded without the other.
  if (optimizer != nullptr) {
    const StateDict previous = optimizer->state_dict();
    try {
      optimizer->load_state_dict(optimizer_dict);
    } catch (const StateDictError& error) {
      fail<CheckpointError>(path, "optimizer state does not fit: {}", error.what());
    }
    try {
      model.load_state_dict(model_dict, /*strict=*/true);
    } catch (...) {
      optimizer->load_state_dict(previous);
      throw;
    }
  } else {
    model.load_state_dict(model_dict, /*strict=*/true);
  }
  return loaded;
}

}  // namespace gradformer::nn

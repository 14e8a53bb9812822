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
#include <filesystem>
#include <optional>
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
    case DType::i64: return safetensors::DType::I64;
    case DType::boolean: return safetensors::DType::BOOL;
    case DType::bf16: return safetensors::DType::BF16;  // the same two bytes per element as our storage
  }
  fail<DTypeError>("to_record", "unknown dtype");
}

// The tensor dtype that holds every value of a stored dtype exactly (see from_record).
DType tensor_dtype(safetensors::DType dtype) {
  if (dtype == safetensors::DType::BOOL) return DType::boolean;
  if (dtype == safetensors::DType::F64) return DType::f64;
  return safetensors::is_floating(dtype) ? DType::f32 : DType::i64;
}

template <class T>
Tensor tensor_of(const std::vector<T>& values, const Shape& shape) {
  Tensor out = empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(out.raw_data(), values.data(), values.size() * sizeof(T));
  return out;
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
    if (is_model_key(entry.first)) loaded.model_shapes.emplace(entry.first, entry.second.shape);
    if (entry.first.starts_with(kOptimizerPrefix)) loaded.has_optimizer = true;
    if (entry.first.starts_with(kTrainingPrefix) && entry.first != kGeneratorKey)
      fail<CheckpointError>(path, "unknown training tensor '{}'", entry.first);
  }
  if (file.metadata.contains("optimizers")) {
    const nlohmann::json types = parse_metadata_json(path, file, "optimizers");
    if (!types.is_object() || types.empty())
      fail<CheckpointError>(path, "checkpoint metadata \"optimizers\" must map names to type names, got {}",
                            types.dump());
    for (const auto& item : types.items()) {
      if (!item.value().is_string())
        fail<CheckpointError>(path, "checkpoint metadata \"optimizers\" gives '{}' the type {}, not a name",
                              item.key(), item.value().dump());
      loaded.optimizer_types.emplace(item.key(), item.value().get<std::string>());
    }
  }
  if (loaded.has_optimizer && !file.metadata.contains("optimizer") && loaded.optimizer_types.empty())
    fail<CheckpointError>(path, "checkpoint holds optimizer tensors but no \"optimizer\" metadata naming its type");
  return loaded;
}

// Whether a record of `stored` dtype may be loaded into a tensor of `target` dtype (see checkpoint.h).
bool loadable(safetensors::DType stored, DType target) {
  return is_floating(target) == safetensors::is_floating(stored);
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
      const std::vector<int64_t> values = safetensors::values_as<int64_t>(record, name);
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
  const Tensor source = tensor.detach().contiguous();
  return safetensors::make_record(record_dtype(tensor.dtype()), source.shape(),
                                  source.numel() == 0 ? nullptr : source.raw_data());
}

Tensor from_record(const safetensors::TensorRecord& record) {
  switch (tensor_dtype(record.dtype)) {
    case DType::f32: return tensor_of(safetensors::values_as<float>(record, "from_record"), record.shape);
    case DType::f64: return tensor_of(safetensors::values_as<double>(record, "from_record"), record.shape);
    case DType::i64: return tensor_of(safetensors::values_as<int64_t>(record, "from_record"), record.shape);
    case DType::boolean: break;
    case DType::bf16: fail<DTypeError>("from_record", "tensor_dtype never reads a record as bf16");
  }
  const std::vector<int64_t> values = safetensors::values_as<int64_t>(record, "from_record");
  if (std::any_of(values.begin(), values.end(), [](int64_t v) { return v != 0 && v != 1; }))
    fail<ValueError>("from_record", "a BOOL record holds bytes other than 0 and 1");
  return tensor_of(values, record.shape).to(DType::boolean);
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

namespace {

// Everything of a checkpoint but the optimizers' tensors and metadata.
safetensors::File checkpoint_file(const Module& model, const TrainingState& state, const nlohmann::json& config,
                                  const CheckpointWriteOptions& options) {
  safetensors::File file;
  for (const auto& [name, tensor] : model.state_dict()) {
    if (!is_model_key(name))
      fail<ValueError>("save_checkpoint", "model key '{}' starts with \"{}\" or \"{}\", which checkpoints reserve",
                       name, kOptimizerPrefix, kTrainingPrefix);
    safetensors::TensorRecord record = to_record(tensor);
    if (options.model_in_bfloat16 && is_floating(tensor.dtype())) record = safetensors::to_bfloat16(record, name);
    file.tensors.emplace(name, std::move(record));
  }
  file.tensors.emplace(kGeneratorKey, generator_record(state.generator));

  file.metadata.emplace("format", kFormat);
  file.metadata.emplace("version", kVersion);
  file.metadata.emplace("config", dump_json(config, "config"));
  nlohmann::json training = {{"step", state.step}};
  if (!state.extra.is_null()) training["extra"] = state.extra;
  file.metadata.emplace("training", dump_json(training, "training state"));
  return file;
}

void add_optimizer_tensors(safetensors::File& file, const std::string& prefix, const optim::Optimizer& optimizer) {
  for (const auto& [key, tensor] : optimizer.state_dict())
    file.tensors.emplace(fmt::format("{}{}", prefix, key), to_record(tensor));
}

template <class Named>
void check_optimizer_names(std::string_view where, const Named& optimizers) {
  std::set<std::string> seen;
  for (const auto& [name, optimizer] : optimizers) {
    if (name.empty() || name.find('.') != std::string::npos)
      fail<ValueError>(where, "optimizer name '{}' must be non-empty and contain no '.'", name);
    if (!seen.insert(name).second) fail<ValueError>(where, "optimizer name '{}' is given twice", name);
    if (optimizer == nullptr) fail<ValueError>(where, "optimizer '{}' is a null pointer", name);
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const TrainingState& state, const nlohmann::json& config, const CheckpointWriteOptions& options) {
  safetensors::File file = checkpoint_file(model, state, config, options);
  if (optimizer != nullptr) {
    add_optimizer_tensors(file, std::string(kOptimizerPrefix), *optimizer);
    file.metadata.emplace("optimizer", optimizer->type_name());
  }
  safetensors::save_atomic(path, file);
}

void save_checkpoint(const std::string& path, const Module& model, const NamedOptimizers& optimizers,
                     const TrainingState& state, const nlohmann::json& config, const CheckpointWriteOptions& options) {
  check_optimizer_names("save_checkpoint", optimizers);
  safetensors::File file = checkpoint_file(model, state, config, options);
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, optimizer] : optimizers) {
    add_optimizer_tensors(file, fmt::format("{}{}.", kOptimizerPrefix, name), *optimizer);
    types[name] = optimizer->type_name();
  }
  if (!optimizers.empty()) file.metadata.emplace("optimizers", dump_json(types, "optimizer names"));
  safetensors::save_atomic(path, file);
}

std::string run_id_of(const std::string& path) {
  const std::map<std::string, std::string> metadata = safetensors::load_metadata(path);
  const auto training = metadata.find("training");
  if (training == metadata.end()) return "";
  const nlohmann::json parsed = nlohmann::json::parse(training->second, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("extra") || !parsed["extra"].is_object()) return "";
  const nlohmann::json& extra = parsed["extra"];
  return extra.contains("run_id") && extra["run_id"].is_string() ? extra["run_id"].get<std::string>() : "";
}

LoadedCheckpoint read_checkpoint_config(const std::string& path) {
  return read_metadata(path, safetensors::load(path));
}

namespace {

std::vector<std::string> optimizer_names(const LoadedCheckpoint& loaded) {
  std::vector<std::string> names;
  for (const auto& entry : loaded.optimizer_types) names.push_back(entry.first);
  return names;
}

// An optimizer to load and where its tensors are: "optimizer." for a checkpoint's only one, "optimizer.<name>."
// for one of several.
struct OptimizerSlot {
  std::string label;   // "the Adam" or "optimizer 'encoder'", for messages
  std::string prefix;
  std::string saved_type;
  optim::Optimizer* optimizer;
};

// Loads every slot's optimizer and then the model, all or nothing: everything is checked first
// (Optimizer::load_state_dict checks before it replaces any state, and the model's dict has been checked with the
// rules Module::load_state_dict applies); should a later load throw regardless, the optimizers loaded so far go
// back to their previous state, so that the caller never sees one loaded without the others.
void load_all(const std::string& path, const safetensors::File& file, Module& model, const StateDict& model_dict,
              const std::vector<OptimizerSlot>& slots) {
  std::vector<StateDict> dicts;
  for (const OptimizerSlot& slot : slots) {
    if (slot.saved_type != slot.optimizer->type_name())
      fail<CheckpointError>(path, "checkpoint holds {} state for {}, cannot load it into {}", slot.saved_type,
                            slot.label, slot.optimizer->type_name());
    StateDict dict;
    for (const auto& [key, record] : file.tensors)
      if (key.starts_with(slot.prefix)) dict.emplace(key.substr(slot.prefix.size()), from_record(record));
    dicts.push_back(std::move(dict));
  }
  std::vector<StateDict> previous;
  try {
    for (size_t i = 0; i < slots.size(); ++i) {
      previous.push_back(slots[i].optimizer->state_dict());
      try {
        slots[i].optimizer->load_state_dict(dicts[i]);
      } catch (const StateDictError& error) {
        fail<CheckpointError>(path, "optimizer state of {} does not fit: {}", slots[i].label, error.what());
      }
    }
    model.load_state_dict(model_dict, /*strict=*/true);
  } catch (...) {
    // The one whose load threw is unchanged; restoring it too is harmless.
    for (size_t i = 0; i < previous.size(); ++i) slots[i].optimizer->load_state_dict(previous[i]);
    throw;
  }
}

}  // namespace

LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer) {
  const safetensors::File file = safetensors::load(path);
  LoadedCheckpoint loaded = read_metadata(path, file);
  const StateDict model_dict = model_state(path, file, model, /*strict=*/true, /*skip_training_keys=*/true);

  std::vector<OptimizerSlot> slots;
  if (optimizer != nullptr) {
    if (!loaded.has_optimizer)
      fail<CheckpointError>(path, "checkpoint holds no optimizer state to load into the {} (a decoding checkpoint: "
                                  "BF16 or averaged); resume from a training checkpoint such as last.safetensors, or "
                                  "pass no optimizer to start a fresh one", optimizer->type_name());
    if (!loaded.optimizer_types.empty())
      fail<CheckpointError>(path, "checkpoint holds {} optimizers by name ({}); load them with load_checkpoint(path, "
                                  "model, {{{{name, optimizer}}, ...}})", loaded.optimizer_types.size(),
                            fmt::join(optimizer_names(loaded), ", "));
    slots.push_back({fmt::format("the {}", optimizer->type_name()), std::string(kOptimizerPrefix),
                     file.metadata.at("optimizer"), optimizer});
  }
  load_all(path, file, model, model_dict, slots);
  return loaded;
}

LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, const NamedMutableOptimizers& optimizers) {
  check_optimizer_names("load_checkpoint", optimizers);
  const safetensors::File file = safetensors::load(path);
  LoadedCheckpoint loaded = read_metadata(path, file);
  const StateDict model_dict = model_state(path, file, model, /*strict=*/true, /*skip_training_keys=*/true);

  if (loaded.optimizer_types.empty())
    fail<CheckpointError>(path, "checkpoint holds {}; load it with load_checkpoint(path, model, optimizer)",
                          loaded.has_optimizer ? fmt::format("one optimizer ({}), not several by name",
                                                             file.metadata.at("optimizer"))
                                               : std::string("no optimizer state"));
  std::vector<std::string> given;
  for (const auto& entry : optimizers) given.push_back(entry.first);
  const std::vector<std::string> saved = optimizer_names(loaded);  // sorted, as the map is
  std::sort(given.begin(), given.end());
  if (given != saved)
    fail<CheckpointError>(path, "checkpoint holds the optimizers {}, but {} were given", fmt::join(saved, ", "),
                          given.empty() ? std::string("none") : fmt::format("{}", fmt::join(given, ", ")));
  std::vector<OptimizerSlot> slots;
  for (const auto& [name, optimizer] : optimizers)
    slots.push_back({fmt::format("optimizer '{}'", name), fmt::format("{}{}.", kOptimizerPrefix, name),
                     loaded.optimizer_types.at(name), optimizer});
  load_all(path, file, model, model_dict, slots);
  return loaded;
}

namespace {

// The output of average_checkpoints must not replace an input or, unless asked, any existing file.
void check_average_output(const std::vector<std::string>& inputs, const std::string& output, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(output, error);
  if (!fs::exists(status)) return;
  if (const std::optional<std::string> input = same_file_as(output, inputs))
    fail<IOError>(output, "is also an input ({}); averaging never writes over an input", *input);
  if (!fs::is_regular_file(status)) fail<IOError>(output, "exists and is not a regular file");
  if (!overwrite) fail<IOError>(output, "already exists; pass --overwrite to replace it");
}

// What the caller should hear about the inputs: checkpoints of several runs (averaging is meant for the last
// few of one), and files given more than once (they weigh more than the others).
std::vector<std::string> average_input_warnings(const std::vector<std::string>& inputs) {
  std::vector<std::string> warnings;
  std::set<std::string> runs;
  for (const std::string& input : inputs) runs.insert(run_id_of(input));
  if (runs.size() > 1)
    warnings.push_back(fmt::format("the inputs come from {} different training runs (run ids {}); averaging is "
                                   "meant for checkpoints of one run", runs.size(), fmt::join(runs, ", ")));
  for (size_t i = 0; i < inputs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (same_file_as(inputs[i], {inputs[j]})) {
        warnings.push_back(fmt::format("{} is the same file as {}: it counts twice in the mean", inputs[i], inputs[j]));
        break;
      }
  return warnings;
}

// The first top-level config key (in key order) whose value differs between the two configs, or "" if none.
std::string first_config_difference(const nlohmann::json& a, const nlohmann::json& b) {
  if (!a.is_object() || !b.is_object()) return a == b ? "" : "(the whole config)";
  std::set<std::string> keys;
  for (const auto& item : a.items()) keys.insert(item.key());
  for (const auto& item : b.items()) keys.insert(item.key());
  for (const std::string& key : keys)
    if (!a.contains(key) || !b.contains(key) || a[key] != b[key]) return key;
  return "";
}

std::set<std::string> model_keys(const safetensors::File& file) {
  std::set<std::string> keys;
  for (const auto& entry : file.tensors)
    if (is_model_key(entry.first)) keys.insert(entry.first);
  return keys;
}

// Throws the CheckpointError for the first model key (in key order) that `other` does not hold as `first` does.
void check_same_model(const std::string& first_path, const safetensors::File& first, const std::string& other_path,
                      const safetensors::File& other) {
  const std::set<std::string> first_keys = model_keys(first), other_keys = model_keys(other);
  std::set<std::string> keys = first_keys;
  keys.insert(other_keys.begin(), other_keys.end());
  for (const std::string& key : keys) {
    const auto where = [&] { return fmt::format("{} and {} are checkpoints of different models", first_path, other_path); };
    if (!first_keys.contains(key) || !other_keys.contains(key))
      fail<CheckpointError>(where(), "'{}' is only in {}", key, first_keys.contains(key) ? first_path : other_path);
    const safetensors::TensorRecord& a = first.tensors.at(key);
    const safetensors::TensorRecord& b = other.tensors.at(key);
    if (a.shape != b.shape)
      fail<CheckpointError>(where(), "'{}' has shape {} in the first, {} in the second", key, shape_str(a.shape),
                            shape_str(b.shape));
    if (safetensors::is_floating(a.dtype) != safetensors::is_floating(b.dtype))
      fail<CheckpointError>(where(), "'{}' is {} in the first, {} in the second", key,
                            safetensors::dtype_name(a.dtype), safetensors::dtype_name(b.dtype));
    if (!safetensors::is_floating(a.dtype) &&
        safetensors::values_as<int64_t>(a, key) != safetensors::values_as<int64_t>(b, key))
      fail<CheckpointError>(where(), "'{}' ({}) holds other values; integer and bool tensors are not averaged", key,
                            safetensors::dtype_name(a.dtype));
  }
}

// The mean, in the dtype average_checkpoints documents.
safetensors::TensorRecord mean_record(const std::vector<double>& sum, size_t count,
                                      const safetensors::TensorRecord& first, const std::string& key) {
  std::vector<double> mean(sum.size());
  std::transform(sum.begin(), sum.end(), mean.begin(), [count](double x) { return x / static_cast<double>(count); });
  if (first.dtype == safetensors::DType::F64) return safetensors::make_record<double>(first.shape, mean);
  const std::vector<float> narrowed(mean.begin(), mean.end());
  safetensors::TensorRecord record = safetensors::make_record<float>(first.shape, narrowed);
  return first.dtype == safetensors::DType::BF16 ? safetensors::to_bfloat16(record, key) : record;
}

}  // namespace

AverageReport average_checkpoints(const std::vector<std::string>& inputs, const std::string& output, bool overwrite) {
  if (inputs.empty()) fail<ValueError>("average_checkpoints", "no input checkpoints");
  check_average_output(inputs, output, overwrite);

  safetensors::File first = safetensors::load(inputs[0]);
  const LoadedCheckpoint first_loaded = read_metadata(inputs[0], first);
  std::map<std::string, std::vector<double>> sums;
  for (const std::string& key : model_keys(first)) {
    const safetensors::TensorRecord& record = first.tensors.at(key);
    if (safetensors::is_floating(record.dtype)) sums.emplace(key, safetensors::values_as<double>(record, key));
  }
  for (size_t i = 1; i < inputs.size(); ++i) {
    const safetensors::File other = safetensors::load(inputs[i]);
    const LoadedCheckpoint loaded = read_metadata(inputs[i], other);
    const std::string differing = first_config_difference(first_loaded.config, loaded.config);
    if (!differing.empty())
      fail<CheckpointError>(fmt::format("{} and {} are checkpoints of different models", inputs[0], inputs[i]),
                            "config key '{}' differs", differing);
    check_same_model(inputs[0], first, inputs[i], other);
    for (auto& [key, sum] : sums) {
      const std::vector<double> values = safetensors::values_as<double>(other.tensors.at(key), key);
      for (size_t j = 0; j < sum.size(); ++j) sum[j] += values[j];
    }
  }

  AverageReport report;
  report.warnings = average_input_warnings(inputs);
  safetensors::File averaged;
  for (const std::string& key : model_keys(first)) {
    const auto sum = sums.find(key);
    averaged.tensors.emplace(key, sum == sums.end() ? first.tensors.at(key)
                                                    : mean_record(sum->second, inputs.size(), first.tensors.at(key), key));
  }
  averaged.tensors.emplace(kGeneratorKey, first.tensors.at(kGeneratorKey));
  averaged.metadata = {{"format", std::string(kFormat)},
                       {"version", std::string(kVersion)},
                       {"config", first.metadata.at("config")},
                       {"training", dump_json({{"step", first_loaded.state.step},
                                               {"extra", {{"averaged_from", inputs}}}},
                                              "training state")}};
  safetensors::save_atomic(output, averaged, overwrite ? Replace::existing : Replace::never);
  report.tensors = sums.size();
  return report;
}

}  // namespace gradformer::nn

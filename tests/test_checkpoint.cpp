// Tests for nn/checkpoint: Tensor ↔ record conversion, bit-exact resumption (weights, Adam state, generator),
// config and training JSON, rejection of every truncation and of seeded mutations without touching the model,
// files of other models, plain weights files, and a failed save leaving the previous file loadable.
// The byte format and the rename/fsync mechanics are tested in test_safetensors.cpp.
#include <doctest/doctest.h>

#include <unistd.h>

#include <bit>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "autograd/error.h"
#include "autograd/generator.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "ops/ops.h"
#include "tests/helpers.h"

namespace st = gradformer::safetensors;
using namespace gradformer;
using nn::CheckpointError;

namespace {

// Two Linear layers and a bool buffer (stored as BOOL). other_names registers the same shapes under other
// names, as a different model would.
class TinyNet : public nn::Module {
 public:
  TinyNet(int64_t in, int64_t hidden, int64_t out, Generator& gen, bool other_names = false) {
    first_ = register_module(other_names ? "encoder" : "fc1", std::make_shared<nn::Linear>(in, hidden, true, gen));
    second_ = register_module(other_names ? "decoder" : "fc2", std::make_shared<nn::Linear>(hidden, out, true, gen));
    register_buffer("mask", from_vector<bool>({true, false, true}, {3}));
  }
  std::string type_name() const override { return "TinyNet"; }
  Tensor forward(const Tensor& x) const { return second_->forward(tanh(first_->forward(x))); }  // (B, in) -> (B, out)

 private:
  std::shared_ptr<nn::Linear> first_, second_;
};

void train_step(TinyNet& model, optim::Optimizer& optimizer, Generator& data) {
  const Tensor x = randn({5, 4}, data);  // (B, in)
  optimizer.zero_grad();
  sum(tanh(model.forward(x))).backward();
  optimizer.step();
}

// Every tensor of a state dict as bytes, so that comparisons are bit-exact (NaN included).
std::map<std::string, st::TensorRecord> records(const nn::StateDict& dict) {
  std::map<std::string, st::TensorRecord> out;
  for (const auto& [name, tensor] : dict) out.emplace(name, nn::to_record(tensor));
  return out;
}

struct ScratchDirectory {
  std::filesystem::path path;
  explicit ScratchDirectory(const std::string& tag)
      : path(std::filesystem::temp_directory_path() / ("gradformer-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDirectory() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const CheckpointError& error) {
    return error.what();
  }
  FAIL("no CheckpointError thrown");
  return {};
}

const nlohmann::json kConfig = {{"model", "tiny"}, {"sizes", {4, 6, 3}}, {"vocabulary", {"<pad>", "a", "b"}}};

// A model trained for two Adam steps and saved with its optimizer and data generator to `path`.
struct Saved {
  Generator init{1}, data{7};
  TinyNet model{4, 6, 3, init};
  optim::Adam adam{model.parameters(), {.lr = 0.01, .weight_decay = 0.1}};
  nn::TrainingState state;

  explicit Saved(const std::string& path) {
    train_step(model, adam, data);
    train_step(model, adam, data);
    state.step = 2;
    state.generator = data.state();
    state.extra = {{"epoch", 1}, {"batch", 17}, {"best_valid_loss", 0.625}, {"losses", {1.5, 1.25}}};
    nn::save_checkpoint(path, model, &adam, state, kConfig);
  }
};

}  // namespace

TEST_CASE("checkpoint: records round trip f32, f64, i64, bool, bf16 and strided tensors") {
  Generator gen(3);
  const Tensor f32 = randn({2, 3}, gen);
  const Tensor f64 = randn({4}, gen, DType::f64);
  const Tensor i64 = from_vector<int64_t>({-5, 0, int64_t{1} << 40}, {3});
  CHECK(nn::from_record(nn::to_record(f32)).to_vector<float>() == f32.to_vector<float>());
  CHECK(nn::from_record(nn::to_record(f64)).to_vector<double>() == f64.to_vector<double>());
  CHECK(nn::from_record(nn::to_record(i64)).to_vector<int64_t>() == i64.to_vector<int64_t>());

  const st::TensorRecord mask = nn::to_record(from_vector<bool>({true, false, true, true}, {2, 2}));
  CHECK(mask.dtype == st::DType::BOOL);
  CHECK(mask.data.size() == 4);
  CHECK(st::values_as<int64_t>(mask, "mask") == std::vector<int64_t>{1, 0, 1, 1});
  CHECK(nn::from_record(mask).dtype() == DType::boolean);
  CHECK(nn::from_record(mask).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 1});

  const Tensor transposed = f32.as_strided({3, 2}, {1, 3}, 0);  // (3, 2) view of a (2, 3) tensor
  const Tensor back = nn::from_record(nn::to_record(transposed));
  CHECK(back.shape() == Shape{3, 2});
  CHECK(back.to_vector<float>() == transposed.to_vector<float>());
  CHECK(nn::from_record(nn::to_record(scalar_tensor(2.5, DType::f64))).item() == 2.5);

  // A bf16 tensor is stored as BF16, its own bytes, and read back widened to f32 exactly.
  const Tensor rounded = f32.to(DType::bf16);
  const st::TensorRecord half = nn::to_record(rounded);
  CHECK(half.dtype == st::DType::BF16);
  CHECK(half.data.size() == 2 * 6);
  CHECK(nn::from_record(half).dtype() == DType::f32);
  CHECK(nn::from_record(half).to_vector<float>() == rounded.to(DType::f32).to_vector<float>());
}

TEST_CASE("checkpoint: resuming is bit-exact for weights, Adam state and the generator; JSON round trips") {
  ScratchDirectory dir("ckpt-resume");
  const std::string path = dir.file("run.safetensors");
  Saved saved(path);

  const nn::LoadedCheckpoint header = nn::read_checkpoint_config(path);
  CHECK(header.config == kConfig);
  CHECK(header.has_optimizer);

  Generator other_init(99);
  TinyNet resumed(4, 6, 3, other_init);
  optim::Adam resumed_adam(resumed.parameters(), {.lr = 0.01, .weight_decay = 0.1});
  const nn::LoadedCheckpoint loaded = nn::load_checkpoint(path, resumed, &resumed_adam);
  CHECK(loaded.config == kConfig);
  CHECK(loaded.has_optimizer);
  CHECK(loaded.state.step == 2);
  CHECK(loaded.state.extra == saved.state.extra);
  CHECK(loaded.state.generator == saved.data.state());
  CHECK(records(resumed.state_dict()) == records(saved.model.state_dict()));
  CHECK(records(resumed_adam.state_dict()) == records(saved.adam.state_dict()));
  CHECK(resumed_adam.step_count() == 2);

  Generator resumed_data(0);
  resumed_data.set_state(loaded.state.generator);
  train_step(saved.model, saved.adam, saved.data);
  train_step(resumed, resumed_adam, resumed_data);
  CHECK(records(resumed.state_dict()) == records(saved.model.state_dict()));
  CHECK(records(resumed_adam.state_dict()) == records(saved.adam.state_dict()));
  for (int i = 0; i < 5; ++i) CHECK(resumed_data.normal() == saved.data.normal());
}

TEST_CASE("checkpoint: a generator with a cached normal and a model without optimizer round trip") {
  ScratchDirectory dir("ckpt-spare");
  const std::string path = dir.file("spare.safetensors");
  Generator init(5), data(11);
  TinyNet model(4, 6, 3, init);
  data.normal();  // Box-Muller makes two normals; the second waits in the state
  nn::TrainingState state;
  state.generator = data.state();
  REQUIRE(state.generator.has_spare_normal);
  nn::save_checkpoint(path, model, nullptr, state, kConfig);

  TinyNet other(4, 6, 3, init);
  const nn::LoadedCheckpoint loaded = nn::load_checkpoint(path, other, nullptr);
  CHECK_FALSE(loaded.has_optimizer);
  CHECK(loaded.state.generator == state.generator);
  CHECK(loaded.state.extra.is_null());
  Generator restored(0);
  restored.set_state(loaded.state.generator);
  CHECK(restored.normal() == data.normal());

  optim::Adam adam(other.parameters());
  const std::string message = message_of([&] { nn::load_checkpoint(path, other, &adam); });
  CHECK(message.find(path) == 0);
  CHECK(message.find("no optimizer state") != std::string::npos);
}

TEST_CASE("checkpoint: state of another optimizer type is rejected") {
  ScratchDirectory dir("ckpt-opt");
  const std::string path = dir.file("run.safetensors");
  Saved saved(path);
  Generator init(2);
  TinyNet model(4, 6, 3, init);
  const auto before = records(model.state_dict());
  optim::SGD sgd(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  const std::string message = message_of([&] { nn::load_checkpoint(path, model, &sgd); });
  CHECK(message.find("Adam") != std::string::npos);
  CHECK(message.find("SGD") != std::string::npos);
  CHECK(records(model.state_dict()) == before);

  // Same type, but parameters the state was not made for: the optimizer's own check, and still no change.
  Generator init2(4);
  TinyNet small(4, 6, 3, init2);
  const auto small_before = records(small.state_dict());
  optim::Adam adam_on_fewer({small.parameters()[0]});
  CHECK_THROWS_AS(nn::load_checkpoint(path, small, &adam_on_fewer), CheckpointError);
  CHECK(records(small.state_dict()) == small_before);
  CHECK(adam_on_fewer.step_count() == 0);
}

TEST_CASE("checkpoint: every truncated prefix is rejected and leaves model and optimizer unchanged") {
  ScratchDirectory dir("ckpt-trunc");
  const std::string path = dir.file("run.safetensors"), cut = dir.file("cut.safetensors");
  Saved saved(path);
  const std::vector<char> bytes = read_all(path);
  REQUIRE(bytes.size() > 100);

  Generator init(8);
  TinyNet model(4, 6, 3, init);
  optim::Adam adam(model.parameters());
  const auto model_before = records(model.state_dict());
  const auto adam_before = records(adam.state_dict());
  int rejected = 0;
  for (size_t size = 0; size < bytes.size(); ++size) {
    write_all(cut, {bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size)});
    try {
      nn::load_checkpoint(cut, model, &adam);
    } catch (const Error&) {
      ++rejected;
    }
    if (records(model.state_dict()) != model_before || records(adam.state_dict()) != adam_before) {
      FAIL("prefix of ", size, " bytes changed the model or optimizer");
    }
  }
  CHECK(rejected == static_cast<int>(bytes.size()));
}

TEST_CASE("checkpoint: 300 seeded mutations either load faithfully or throw Error without touching the model") {
  ScratchDirectory dir("ckpt-mutate");
  const std::string path = dir.file("run.safetensors"), mutated = dir.file("mutated.safetensors");
  Saved saved(path);
  const std::vector<char> bytes = read_all(path);
  uint64_t header_size = 0;
  for (size_t i = 8; i-- > 0;) header_size = header_size << 8 | static_cast<unsigned char>(bytes[i]);
  REQUIRE(header_size + 8 < bytes.size());
  // Bytes that keep JSON well-formed often enough to reach the checks behind the parser.
  const std::string interesting = "0123456789\"{}[],:.-eE FIabcdefgnorstuvx\\";

  Generator init(8), mutations(2024);
  TinyNet model(4, 6, 3, init);
  optim::Adam adam(model.parameters());
  // The baseline each trial starts from, and that a rejected trial must leave in place: the saved checkpoint.
  nn::load_checkpoint(path, model, &adam);
  const auto model_before = records(model.state_dict());
  const auto adam_before = records(adam.state_dict());
  int loaded = 0, thrown = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<char> copy = bytes;
    const uint64_t edits = 1 + mutations.below(3);
    for (uint64_t e = 0; e < edits; ++e) {
      // Half in the header, where the structure is; half in the data buffer, where values only change.
      const size_t at = static_cast<size_t>(mutations.below(2) == 0
                                                ? mutations.below(header_size + 8)
                                                : header_size + 8 + mutations.below(copy.size() - header_size - 8));
      copy[at] = mutations.below(2) == 0 ? static_cast<char>(mutations.below(256))
                                         : interesting[mutations.below(interesting.size())];
    }
    write_all(mutated, copy);
    try {
      const nn::LoadedCheckpoint result = nn::load_checkpoint(mutated, model, &adam);
      ++loaded;
      // Loaded: model and optimizer hold exactly the file's tensors (the bool mask from BOOL, optimizer
      // state in the parameters' dtype).
      const st::File file = st::load(mutated);
      for (const auto& [name, record] : records(model.state_dict())) CHECK(file.tensors.at(name) == record);
      for (const auto& [key, tensor] : adam.state_dict()) {
        const Tensor stored = nn::from_record(file.tensors.at("optimizer." + key));
        // Optimizer::load_state_dict reads the step count through double, so only counts up to 2^53 are exact.
        if (key == "step")
          CHECK(stored.item() == tensor.item());
        else
          CHECK(nn::to_record(stored.to(tensor.dtype())) == nn::to_record(tensor));
      }
      CHECK(result.state.step >= 0);
      nn::load_checkpoint(path, model, &adam);
    } catch (const Error&) {
      ++thrown;
      if (records(model.state_dict()) != model_before || records(adam.state_dict()) != adam_before) {
        FAIL("rejected mutation ", trial, " changed the model or optimizer");
      }
    }
  }
  MESSAGE("mutations: ", loaded, " loaded, ", thrown, " rejected");
  CHECK(loaded + thrown == 300);
  CHECK(loaded > 30);
  CHECK(thrown > 100);
}

TEST_CASE("checkpoint: a model of other sizes is rejected naming the key and both shapes") {
  ScratchDirectory dir("ckpt-shape");
  const std::string path = dir.file("run.safetensors");
  Saved saved(path);
  Generator init(3);
  TinyNet narrower(4, 5, 3, init);
  optim::Adam adam(narrower.parameters());
  const auto before = records(narrower.state_dict());
  const std::string message = message_of([&] { nn::load_checkpoint(path, narrower, &adam); });
  CHECK(message.find(path) == 0);
  CHECK(message.find("fc1.weight: checkpoint [6, 4], model [5, 4]") != std::string::npos);
  CHECK(message.find("fc2.weight: checkpoint [3, 6], model [3, 5]") != std::string::npos);
  CHECK(records(narrower.state_dict()) == before);
  CHECK(adam.step_count() == 0);
  CHECK_THROWS_AS(nn::load_weights(path, narrower, /*strict=*/false), CheckpointError);
}

TEST_CASE("checkpoint: a model with other parameter names is rejected listing the keys") {
  ScratchDirectory dir("ckpt-names");
  const std::string path = dir.file("run.safetensors");
  Saved saved(path);
  Generator init(3);
  TinyNet other(4, 6, 3, init, /*other_names=*/true);
  const auto before = records(other.state_dict());
  const std::string message = message_of([&] { nn::load_checkpoint(path, other, nullptr); });
  CHECK(message.find(path) == 0);
  CHECK(message.find("4 missing key(s): decoder.bias, decoder.weight, encoder.bias, encoder.weight") !=
        std::string::npos);
  CHECK(message.find("4 unexpected key(s): fc1.bias, fc1.weight, fc2.bias, fc2.weight") != std::string::npos);
  CHECK(message.find("optimizer.") == std::string::npos);  // optimizer and training tensors are not model keys
  CHECK(records(other.state_dict()) == before);
}

TEST_CASE("checkpoint: plain weights load with load_weights, not with load_checkpoint") {
  ScratchDirectory dir("ckpt-weights");
  const std::string weights = dir.file("model.safetensors"), run = dir.file("run.safetensors");
  Saved saved(run);
  nn::save_weights(weights, saved.model, {{"source", "test"}});
  const st::File file = st::load(weights);
  CHECK(file.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"source", "test"}});
  CHECK(file.tensors.size() == saved.model.state_dict().size());

  Generator init(6);
  TinyNet model(4, 6, 3, init);
  nn::load_weights(weights, model);
  CHECK(records(model.state_dict()) == records(saved.model.state_dict()));

  const std::string message = message_of([&] { nn::load_checkpoint(weights, model, nullptr); });
  CHECK(message.find(weights) == 0);
  CHECK(message.find("has no gradformer training metadata") != std::string::npos);
  CHECK_THROWS_AS(nn::read_checkpoint_config(weights), CheckpointError);

  // A checkpoint is a weights file too: load_weights skips its optimizer and training tensors.
  TinyNet from_run(4, 6, 3, init);
  nn::load_weights(run, from_run);
  CHECK(records(from_run.state_dict()) == records(saved.model.state_dict()));

  // Non-strict loads what matches; strict names what is missing.
  st::File partial = file;
  partial.tensors.erase("fc2.bias");
  st::save_atomic(weights, partial);
  TinyNet lenient(4, 6, 3, init);
  nn::load_weights(weights, lenient, /*strict=*/false);
  CHECK(nn::to_record(lenient.state_dict().at("fc1.weight")) == file.tensors.at("fc1.weight"));
  CHECK(message_of([&] { nn::load_weights(weights, lenient); }).find("1 missing key(s): fc2.bias") !=
        std::string::npos);

  // An f64 model takes f32 weights; an I64 tensor does not go into a float parameter.
  TinyNet wide(4, 6, 3, init);
  wide.to(DType::f64);
  nn::load_weights(run, wide);
  CHECK(wide.state_dict().at("fc1.weight").to_vector<float>() ==
        saved.model.state_dict().at("fc1.weight").to_vector<float>());
  partial.tensors["fc2.bias"] = st::make_record<int64_t>({3}, std::vector<int64_t>{1, 2, 3});
  st::save_atomic(weights, partial);
  CHECK(message_of([&] { nn::load_weights(weights, wide); }).find("fc2.bias: checkpoint dtype I64, model f64") !=
        std::string::npos);
}

TEST_CASE("checkpoint: every stored dtype loads converted to the model's, as load_state_dict does") {
  ScratchDirectory dir("ckpt-dtypes");
  const std::string weights = dir.file("model.safetensors");
  Generator init(4);
  TinyNet source(4, 6, 3, init);
  st::File file;
  for (const auto& [name, tensor] : source.state_dict()) file.tensors.emplace(name, nn::to_record(tensor));
  // What Hugging Face files hold: half-precision weights, an F64 bias, the mask as U8 (or as I64 0/1, as files
  // written before BOOL was supported hold it).
  file.tensors["fc1.weight"] = st::to_bfloat16(file.tensors.at("fc1.weight"), "fc1.weight");
  const std::vector<float> fc2_weight = source.state_dict().at("fc2.weight").to_vector<float>();
  std::vector<uint16_t> halves;
  for (const float value : fc2_weight) {
    // float → binary16 for values of magnitude in [2^-14, 2): keep 10 mantissa bits (truncating is fine here:
    // the test checks the read side, against the float the half holds).
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    const uint32_t exponent = ((bits >> 23) & 0xFF) - 127 + 15;
    REQUIRE(exponent > 0);
    REQUIRE(exponent < 16);
    halves.push_back(static_cast<uint16_t>(((bits >> 16) & 0x8000) | (exponent << 10) | ((bits >> 13) & 0x3FF)));
  }
  file.tensors["fc2.weight"] = st::make_record(st::DType::F16, {3, 6}, halves.data());
  file.tensors["fc1.bias"] =
      st::make_record<double>({6}, source.state_dict().at("fc1.bias").to_vector<double>());
  const std::vector<uint8_t> mask_bytes = {0, 1, 1};
  file.tensors["mask"] = st::make_record(st::DType::U8, {3}, mask_bytes.data());
  st::save_atomic(weights, file);

  TinyNet model(4, 6, 3, init);
  nn::load_weights(weights, model);
  const nn::StateDict loaded = model.state_dict();
  CHECK(loaded.at("fc1.weight").to_vector<float>() == st::values_as<float>(file.tensors.at("fc1.weight"), "w"));
  std::vector<float> from_halves;
  for (const uint16_t half : halves) from_halves.push_back(st::float_from_float16(half));
  CHECK(loaded.at("fc2.weight").to_vector<float>() == from_halves);
  CHECK(loaded.at("fc1.bias").to_vector<float>() == source.state_dict().at("fc1.bias").to_vector<float>());
  CHECK(loaded.at("mask").dtype() == DType::boolean);
  CHECK(loaded.at("mask").to_vector<int64_t>() == std::vector<int64_t>{0, 1, 1});

  file.tensors["mask"] = st::make_record<int64_t>({3}, std::vector<int64_t>{1, 1, 0});
  st::save_atomic(weights, file);
  nn::load_weights(weights, model);
  CHECK(model.state_dict().at("mask").to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0});
  file.tensors["mask"] = st::make_record<int64_t>({3}, std::vector<int64_t>{1, 2, 0});
  st::save_atomic(weights, file);
  CHECK(message_of([&] { nn::load_weights(weights, model); }).find("mask: bool buffer stored with values other than 0 "
                                                                   "and 1") != std::string::npos);

  // Floating and integer do not mix, whichever the width.
  file.tensors["mask"] = st::make_record(st::DType::U8, {3}, mask_bytes.data());
  const std::vector<int32_t> ints(6, 1);
  file.tensors["fc1.bias"] = st::make_record(st::DType::I32, {6}, ints.data());
  st::save_atomic(weights, file);
  const nn::StateDict before = model.state_dict();
  CHECK(message_of([&] { nn::load_weights(weights, model); }).find("fc1.bias: checkpoint dtype I32, model f32") !=
        std::string::npos);
  CHECK(records(model.state_dict()) == records(before));
}

TEST_CASE("checkpoint: a bfloat16 checkpoint holds rounded model tensors, no optimizer, and half the bytes") {
  ScratchDirectory dir("ckpt-bf16");
  const std::string full = dir.file("last.safetensors"), half = dir.file("best.safetensors");
  Saved saved(full);
  nn::save_checkpoint(half, saved.model, nullptr, saved.state, kConfig, {.model_in_bfloat16 = true});
  const st::File file = st::load(half);
  for (const auto& [name, tensor] : saved.model.state_dict()) {
    CAPTURE(name);
    CHECK(file.tensors.at(name).dtype == (name == "mask" ? st::DType::BOOL : st::DType::BF16));
  }
  for (const auto& entry : file.tensors) CHECK_FALSE(entry.first.starts_with("optimizer."));

  Generator init(9);
  TinyNet model(4, 6, 3, init);
  const nn::LoadedCheckpoint loaded = nn::load_checkpoint(half, model, nullptr);
  CHECK(loaded.config == kConfig);
  CHECK(loaded.state.step == saved.state.step);
  CHECK_FALSE(loaded.has_optimizer);
  for (const std::string name : {"fc1.weight", "fc2.bias"}) {
    std::vector<float> rounded;
    for (const float value : saved.model.state_dict().at(name).to_vector<float>())
      rounded.push_back(st::float_from_bfloat16(st::bfloat16_from_float(value)));
    CHECK(model.state_dict().at(name).to_vector<float>() == rounded);
  }
  // Resuming needs the optimizer state that only the f32 checkpoint keeps.
  optim::Adam adam(model.parameters(), {.lr = 0.01});
  CHECK(message_of([&] { nn::load_checkpoint(half, model, &adam); }) ==
        half + ": checkpoint holds no optimizer state to load into the Adam (a decoding checkpoint: BF16 or averaged); "
               "resume from a training checkpoint such as last.safetensors, or pass no optimizer to start a fresh one");

  // Half the model bytes: compare with a full-precision checkpoint that also lacks the optimizer.
  const std::string plain = dir.file("plain.safetensors");
  nn::save_checkpoint(plain, saved.model, nullptr, saved.state, kConfig);
  size_t model_bytes_full = 0, model_bytes_half = 0;
  const st::File plain_file = st::load(plain);
  for (const auto& [name, tensor] : saved.model.state_dict()) {
    model_bytes_full += plain_file.tensors.at(name).data.size();
    model_bytes_half += file.tensors.at(name).data.size();
  }
  CHECK(model_bytes_half == (model_bytes_full - 3) / 2 + 3);  // the 3 mask bytes stay
}

namespace {

// A TinyNet checkpoint whose weights come from `seed`, saved with an Adam state and `config`.
void save_tiny(const std::string& path, uint64_t seed, const nlohmann::json& config = kConfig,
               bool other_names = false) {
  Generator init(seed);
  TinyNet model(4, 6, 3, init, other_names);
  optim::Adam adam(model.parameters(), {.lr = 0.01});
  nn::TrainingState state;
  state.step = static_cast<int64_t>(seed) * 100;
  state.generator = init.state();
  nn::save_checkpoint(path, model, &adam, state, config);
}

}  // namespace

TEST_CASE("checkpoint: averaging takes the element-wise mean in f64 and keeps config, step and generator") {
  ScratchDirectory dir("ckpt-average");
  const std::vector<std::string> inputs = {dir.file("a.safetensors"), dir.file("b.safetensors"),
                                           dir.file("c.safetensors")};
  for (size_t i = 0; i < inputs.size(); ++i) save_tiny(inputs[i], i + 1);
  const std::string output = dir.file("avg.safetensors");
  CHECK(nn::average_checkpoints(inputs, output, false).tensors == 4);  // two weights, two biases; the mask is copied

  const st::File averaged = st::load(output);
  std::vector<st::File> files;
  for (const std::string& input : inputs) files.push_back(st::load(input));
  for (const std::string name : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
    CAPTURE(name);
    std::vector<double> mean(st::values<float>(files[0].tensors.at(name), name).size());
    for (const st::File& file : files) {
      const std::vector<float> values = st::values<float>(file.tensors.at(name), name);
      for (size_t j = 0; j < mean.size(); ++j) mean[j] += values[j];
    }
    std::vector<float> expected;
    for (const double sum : mean) expected.push_back(static_cast<float>(sum / 3.0));
    CHECK(averaged.tensors.at(name).dtype == st::DType::F32);
    CHECK(st::values<float>(averaged.tensors.at(name), name) == expected);
  }
  CHECK(averaged.tensors.at("mask") == files[0].tensors.at("mask"));
  for (const auto& entry : averaged.tensors) CHECK_FALSE(entry.first.starts_with("optimizer."));
  CHECK_FALSE(averaged.metadata.contains("optimizer"));

  const nn::LoadedCheckpoint loaded = nn::read_checkpoint_config(output);
  CHECK(loaded.config == kConfig);
  CHECK(loaded.state.step == 100);
  CHECK(loaded.state.extra == nlohmann::json{{"averaged_from", inputs}});
  CHECK(loaded.state.generator == nn::read_checkpoint_config(inputs[0]).state.generator);
  Generator init(5);
  TinyNet model(4, 6, 3, init);
  nn::load_checkpoint(output, model, nullptr);

  // BF16 inputs give a BF16 average.
  const std::string half = dir.file("half.safetensors"), half_average = dir.file("half-avg.safetensors");
  nn::save_checkpoint(half, model, nullptr, loaded.state, kConfig, {.model_in_bfloat16 = true});
  nn::average_checkpoints({half, half}, half_average, false);
  CHECK(st::load(half_average).tensors.at("fc1.weight") == st::load(half).tensors.at("fc1.weight"));
}

TEST_CASE("checkpoint: averaging refuses different models naming the first mismatched key, and never overwrites") {
  ScratchDirectory dir("ckpt-average-bad");
  const std::string a = dir.file("a.safetensors"), b = dir.file("b.safetensors"), out = dir.file("avg.safetensors");
  save_tiny(a, 1);
  const auto refused = [&](const std::vector<std::string>& inputs) {
    const std::string message = message_of([&] { nn::average_checkpoints(inputs, out, false); });
    CHECK_FALSE(std::filesystem::exists(out));
    return message;
  };
  save_tiny(b, 2, kConfig, /*other_names=*/true);
  CHECK(refused({a, b}) == a + " and " + b + " are checkpoints of different models: 'decoder.bias' is only in " + b);
  save_tiny(b, 2, {{"model", "tiny"}, {"sizes", {4, 6, 4}}, {"vocabulary", {"<pad>", "a", "b"}}});
  CHECK(refused({a, b}) == a + " and " + b + " are checkpoints of different models: config key 'sizes' differs");

  // Same config, other shapes, or another mask: still other models.
  Generator init(3);
  TinyNet wider(4, 7, 3, init);
  nn::TrainingState state;
  state.generator = init.state();
  nn::save_checkpoint(b, wider, nullptr, state, kConfig);
  CHECK(refused({a, b}) == a + " and " + b + " are checkpoints of different models: 'fc1.bias' has shape [6] in the "
                           "first, [7] in the second");
  st::File file = st::load(a);
  const std::vector<uint8_t> other_mask = {0, 0, 1};
  file.tensors["mask"] = st::make_record(st::DType::BOOL, {3}, other_mask.data());
  st::save_atomic(b, file);
  CHECK(refused({a, b}) == a + " and " + b + " are checkpoints of different models: 'mask' (BOOL) holds other "
                           "values; integer and bool tensors are not averaged");
  const std::string plain = dir.file("plain.safetensors");
  nn::save_weights(plain, wider);
  CHECK(refused({a, plain}).starts_with(plain + ": has no gradformer training metadata"));

  // The output: never an input, never an existing file without overwrite.
  save_tiny(b, 2);
  const std::vector<char> before = read_all(b);
  CHECK(testing::message_of<IOError>([&] { nn::average_checkpoints({a, b}, b, true); }) ==
        b + ": is also an input (" + b + "); averaging never writes over an input");
  write_all(out, {'x'});
  CHECK(testing::message_of<IOError>([&] { nn::average_checkpoints({a, b}, out, false); }) ==
        out + ": already exists; pass --overwrite to replace it");
  CHECK(read_all(out) == std::vector<char>{'x'});
  CHECK(read_all(b) == before);
  nn::average_checkpoints({a, b}, out, true);
  CHECK(nn::read_checkpoint_config(out).config == kConfig);
  CHECK(testing::message_of<IOError>([&] { nn::average_checkpoints({a}, dir.file(""), true); }).find("is not a regular "
                                                                                                   "file") !=
        std::string::npos);
}

TEST_CASE("checkpoint: a save that fails leaves the previous file loadable") {
  ScratchDirectory dir("ckpt-atomic");
  const std::string path = dir.file("run.safetensors");
  Saved saved(path);
  const std::vector<char> before = read_all(path);

  // A config string that is not UTF-8 cannot be written: the save fails after the tensors were converted.
  const nlohmann::json bad_config = {{"model", std::string("tiny\xff")}};
  CHECK_THROWS_AS(nn::save_checkpoint(path, saved.model, &saved.adam, saved.state, bad_config), ValueError);
  // A metadata value that is not UTF-8 is rejected by the safetensors writer.
  CHECK_THROWS_AS(nn::save_weights(path, saved.model, {{"note", "\xfe"}}), ValueError);
  // A directory that does not exist: the write itself fails.
  CHECK_THROWS_AS(nn::save_weights(dir.file("missing/run.safetensors"), saved.model), IOError);

  CHECK(read_all(path) == before);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator{}) == 1);
  Generator init(12);
  TinyNet model(4, 6, 3, init);
  optim::Adam adam(model.parameters());
  CHECK(nn::load_checkpoint(path, model, &adam).config == kConfig);
  CHECK(records(model.state_dict()) == records(saved.model.state_dict()));
}

TEST_CASE("checkpoint: metadata problems are CheckpointErrors naming the entry") {
  ScratchDirectory dir("ckpt-meta");
  const std::string path = dir.file("run.safetensors");
  Saved saved(path);
  const st::File good = st::load(path);
  const auto rejected_with = [&](st::File file) {
    st::save_atomic(path, file);
    return message_of([&] { nn::read_checkpoint_config(path); });
  };
  st::File file = good;
  file.metadata["version"] = "2";
  CHECK(rejected_with(file).find("checkpoint version \"2\" is not supported") != std::string::npos);
  file = good;
  file.metadata["config"] = "{not json";
  CHECK(rejected_with(file).find("\"config\" is not valid JSON") != std::string::npos);
  file = good;
  file.metadata["training"] = R"({"step": -1})";
  CHECK(rejected_with(file).find("non-negative integer \"step\"") != std::string::npos);
  file = good;
  file.tensors.erase("training.generator");
  CHECK(rejected_with(file).find("no 'training.generator' tensor") != std::string::npos);
  file = good;
  file.tensors["training.generator"] = st::make_record<int64_t>({6}, std::vector<int64_t>{1, 2, 3, 4, 7, 0});
  CHECK(rejected_with(file).find("has-spare flag is 7") != std::string::npos);
  file = good;
  file.metadata.erase("optimizer");
  CHECK(rejected_with(file).find("no \"optimizer\" metadata") != std::string::npos);
}

TEST_CASE("checkpoint: several optimizers by name, with their parameter groups, round-trip all or nothing") {
  const testing::TempDir dir;
  const std::string path = dir.str("two.safetensors");
  Generator gen(5), data(6);
  TinyNet model(4, 3, 2, gen);
  const auto params = model.named_parameters();
  optim::AdamW first({params[0].second}, {.lr = 0.01});
  first.add_param_group({params[1].second}, {.lr = 0.02, .weight_decay = 0.0});
  optim::SGD second({params[2].second, params[3].second}, {.lr = 0.1, .momentum = 0.9});
  for (int step = 0; step < 2; ++step) {
    first.zero_grad();
    train_step(model, second, data);  // zero_grad, backward, second.step()
    first.step();
  }
  first.set_lr(0.005);
  nn::save_checkpoint(path, model, nn::NamedOptimizers{{"first", &first}, {"second", &second}}, {.step = 2},
                      {{"model", "tiny"}});
  const st::File file = st::load(path);
  CHECK(file.metadata.at("optimizers") == R"({"first":"AdamW","second":"SGD"})");
  CHECK(file.tensors.contains("optimizer.first.param_groups.1.lr"));
  CHECK(file.tensors.contains("optimizer.second.state.0.momentum_buffer"));
  CHECK(nn::read_checkpoint_config(path).optimizer_types.size() == 2);

  Generator other(9);
  TinyNet loaded(4, 3, 2, other);
  const auto loaded_params = loaded.named_parameters();
  optim::AdamW loaded_first({loaded_params[0].second}, {.lr = 1.0});
  loaded_first.add_param_group({loaded_params[1].second});
  optim::SGD loaded_second({loaded_params[2].second, loaded_params[3].second}, {.lr = 0.1, .momentum = 0.9});
  nn::load_checkpoint(path, loaded, nn::NamedMutableOptimizers{{"second", &loaded_second}, {"first", &loaded_first}});
  CHECK(records(loaded_first.state_dict()) == records(first.state_dict()));
  CHECK(records(loaded_second.state_dict()) == records(second.state_dict()));
  CHECK(loaded_first.param_groups()[1].lr == doctest::Approx(0.01));
  CHECK(records(loaded.state_dict()) == records(model.state_dict()));

  // The wrong names, the one-optimizer form, or an optimizer that does not fit: refused, nothing changed.
  Generator fresh(11);
  TinyNet untouched(4, 3, 2, fresh);
  const auto before = records(untouched.state_dict());
  const auto p = untouched.named_parameters();
  optim::AdamW a({p[0].second});
  a.add_param_group({p[1].second});
  optim::SGD b({p[2].second, p[3].second}, {.lr = 0.1, .momentum = 0.9});
  CHECK(testing::message_of<CheckpointError>([&] {
          nn::load_checkpoint(path, untouched, nn::NamedMutableOptimizers{{"first", &a}});
        }) == path + ": checkpoint holds the optimizers first, second, but first were given");
  CHECK(testing::message_of<CheckpointError>([&] { nn::load_checkpoint(path, untouched, &a); })
            .starts_with(path + ": checkpoint holds 2 optimizers by name (first, second); load them with"));
  optim::AdamW one_group({p[0].second, p[1].second});
  const auto a_before = records(one_group.state_dict());
  CHECK(testing::message_of<CheckpointError>([&] {
          nn::load_checkpoint(path, untouched, nn::NamedMutableOptimizers{{"first", &one_group}, {"second", &b}});
        }).find("optimizer state of optimizer 'first' does not fit") != std::string::npos);
  CHECK(records(untouched.state_dict()) == before);
  CHECK(records(one_group.state_dict()) == a_before);
  CHECK(testing::message_of<ValueError>([&] {
          nn::save_checkpoint(path, model, nn::NamedOptimizers{{"a.b", &first}}, {}, {});
        }) == "save_checkpoint: optimizer name 'a.b' must be non-empty and contain no '.'");

  // A one-optimizer checkpoint is refused by the named form.
  const std::string single = dir.str("one.safetensors");
  nn::save_checkpoint(single, model, &second, {}, {});
  CHECK(testing::message_of<CheckpointError>([&] {
          nn::load_checkpoint(single, untouched, nn::NamedMutableOptimizers{{"second", &b}});
        }) == single + ": checkpoint holds one optimizer (SGD), not several by name; load it with "
                       "load_checkpoint(path, model, optimizer)");
}

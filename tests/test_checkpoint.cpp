// Tests for nn/checkpoint: Tensor ↔ record conversion, bit-exact resumption (weights, Adam state, generator),
// config and training JSON, rejection of every truncation and of seeded mutations without touching the model,
// files of other models, plain weights files, and a failed save leaving the previous file loadable.
// The byte format and the rename/fsync mechanics are tested in test_safetensors.cpp.
#include <doctest/doctest.h>

#include <unistd.h>

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

namespace st = gradformer::safetensors;
using namespace gradformer;
using nn::CheckpointError;

namespace {

// Two Linear layers and a bool buffer (stored as I64 0/1). other_names registers the same shapes under other
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

TEST_CASE("checkpoint: records round trip f32, f64, i64, bool and strided tensors") {
  Generator gen(3);
  const Tensor f32 = randn({2, 3}, gen);
  const Tensor f64 = randn({4}, gen, DType::f64);
  const Tensor i64 = from_vector<int64_t>({-5, 0, int64_t{1} << 40}, {3});
  CHECK(nn::from_record(nn::to_record(f32)).to_vector<float>() == f32.to_vector<float>());
  CHECK(nn::from_record(nn::to_record(f64)).to_vector<double>() == f64.to_vector<double>());
  CHECK(nn::from_record(nn::to_record(i64)).to_vector<int64_t>() == i64.to_vector<int64_t>());

  const st::TensorRecord mask = nn::to_record(from_vector<bool>({true, false, true, true}, {2, 2}));
  CHECK(mask.dtype == st::DType::I64);
  CHECK(st::values<int64_t>(mask, "mask") == std::vector<int64_t>{1, 0, 1, 1});

  const Tensor transposed = f32.as_strided({3, 2}, {1, 3}, 0);  // (3, 2) view of a (2, 3) tensor
  const Tensor back = nn::from_record(nn::to_record(transposed));
  CHECK(back.shape() == Shape{3, 2});
  CHECK(back.to_vector<float>() == transposed.to_vector<float>());
  CHECK(nn::from_record(nn::to_record(scalar_tensor(2.5, DType::f64))).item() == 2.5);
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
      // Loaded: model and optimizer hold exactly the file's tensors (the bool mask back from I64 0/1, optimizer
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

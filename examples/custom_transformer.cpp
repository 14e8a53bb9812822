// custom_transformer: a user's own feed-forward (SwiGLU) and norm (ScaleNorm) inside the zoo's transformer-tiny, as
// docs/writing-a-layer.md prints this file: both gradient-checked with nn::gradcheck_module, the model trained on
// the copy task by the library's trainer and rebuilt from its checkpoint. Uses the installed umbrella header only:
// the clean-room suite builds it outside the tree with `g++ -std=c++20 custom_transformer.cpp $(pkg-config
// --cflags --libs gradformer)`. Exits 0 when every check holds.
#include <gradformer/gradformer.h>

#include <fmt/core.h>

#include <cmath>
#include <filesystem>

using namespace gradformer;

// The gated feed-forward of Shazeer 2020, w2(silu(w1 x) · w3 x), in place of linear1, activation, linear2.
// Deriving from nn::UnaryModule (a forward of one tensor) is what lets a Transformer layer call it.
class SwiGLU : public nn::UnaryModule {
 public:
  SwiGLU(int64_t d_model, int64_t hidden, Generator& gen = current_generator()) {
    w1_ = register_module("w1", std::make_shared<nn::Linear>(d_model, hidden, false, gen));
    w3_ = register_module("w3", std::make_shared<nn::Linear>(d_model, hidden, false, gen));
    w2_ = register_module("w2", std::make_shared<nn::Linear>(hidden, d_model, false, gen));
  }
  std::string type_name() const override { return "SwiGLU"; }
  Tensor forward(const Tensor& x) const override {  // (B, T, D) -> (B, T, D)
    return with_forward_hooks(
        [this](const Tensor& input) { return w2_->forward(silu(w1_->forward(input)) * w3_->forward(input)); }, x);
  }

 private:
  std::shared_ptr<nn::Linear> w1_, w2_, w3_;
};

// ScaleNorm (Nguyen & Salazar 2019): g · x / ‖x‖ over the last axis, one learned scalar, in place of LayerNorm.
class ScaleNorm : public nn::UnaryModule {
 public:
  explicit ScaleNorm(int64_t d_model) {
    gain_ = register_parameter("gain", full({}, std::sqrt(static_cast<double>(d_model))));
  }
  std::string type_name() const override { return "ScaleNorm"; }
  Tensor forward(const Tensor& x) const override {  // (B, T, D) -> (B, T, D)
    return with_forward_hooks(
        [this](const Tensor& input) { return input * rsqrt(sum(input * input, {-1}, true) + 1e-5) * gain_; }, x);
  }

 private:
  Tensor gain_;
};

bool report(std::string_view what, bool passed, const std::string& detail) {
  fmt::print("{:<44} {}\n", what, passed ? "ok" : "FAILED: " + detail);
  return passed;
}

int main() {
  Generator gen(0);
  bool ok = true;

  // Both blocks: gradcheck_module checks the input and every parameter, in f64, contiguous and not.
  ScaleNorm norm(8);
  const nn::ModuleGradcheckReport norm_check = nn::gradcheck_module(
      norm, [&norm](const std::vector<Tensor>& x) { return norm.forward(x[0]); }, {randn({2, 3, 8}, gen)});
  ok &= report("ScaleNorm gradcheck_module", norm_check.passed, norm_check.failure);
  SwiGLU swiglu(8, 16, gen);
  const nn::ModuleGradcheckReport swiglu_check = nn::gradcheck_module(
      swiglu, [&swiglu](const std::vector<Tensor>& x) { return swiglu.forward(x[0]); }, {randn({2, 3, 8}, gen)});
  ok &= report(fmt::format("SwiGLU gradcheck_module ({} parameters)", swiglu_check.parameters.size()),
               swiglu_check.passed, swiglu_check.failure);

  // The zoo with both: the factories build every layer's feed-forward and norms; the name goes into the config
  // and so into every checkpoint, which says what to rebuild the model with.
  const models::Sublayers sublayers{
      .name = "swiglu-scalenorm",
      .feed_forward = [](const nn::TransformerLayerOptions& layer, Generator& g) -> std::shared_ptr<nn::UnaryModule> {
        return std::make_shared<SwiGLU>(layer.d_model, layer.dim_feedforward, g);
      },
      .norm = [](int64_t d_model) -> std::shared_ptr<nn::UnaryModule> { return std::make_shared<ScaleNorm>(d_model); }};

  const data::Splits splits = data::make_copy_task(3, 200, 20, 0);
  models::TaskOptions task;
  task.tokenizer = "word";
  const models::TextCodec codec = models::TextCodec::learn(splits.train, task);
  std::vector<models::Example> train, valid;
  for (const auto& pair : splits.train) train.push_back(codec.encode(pair, 64));
  for (const auto& pair : splits.valid) valid.push_back(codec.encode(pair, 64));

  models::ModelOptions options;
  options.vocab_size = static_cast<int64_t>(codec.vocabulary().size());
  options.dropout = 0.0;
  options.max_length = 64;
  options.sublayers = sublayers.name;
  nlohmann::json config = models::model_config("transformer-tiny", options);
  // transformer-tiny at a quarter of its width and one layer per stack, so that the run takes seconds.
  config["d_model"] = 32;
  config["d_ff"] = 64;
  config["heads"] = 2;
  config["layers"] = 1;
  const std::shared_ptr<models::Seq2SeqModel> model = models::make_model(config, sublayers, gen);

  const std::filesystem::path out = std::filesystem::temp_directory_path() / "gradformer-custom-transformer";
  std::filesystem::remove_all(out);
  models::TrainConfig training;
  training.out_dir = out.string();
  training.max_steps = 120;
  training.valid_every = 120;
  training.valid_bleu_sentences = 0;
  training.warmup_steps = 30;
  training.max_tokens = 256;
  models::Trainer trainer(*model, codec, train, valid, splits.valid, training, config);
  trainer.run([](const models::StepStats&) {}, [](const models::ValidStats&) {});
  const auto& losses = trainer.train_losses();  // (step, loss) per step
  double first = 0, last = 0;
  for (size_t i = 0; i < 10; ++i) {
    first += losses[i].second / 10;
    last += losses[losses.size() - 1 - i].second / 10;
  }
  ok &= report(fmt::format("trained 120 steps: loss {:.2f} -> {:.2f}", first, last), last < first - 0.5,
               "the mean loss of the last 10 steps is not 0.5 below that of the first 10");

  // The checkpoint round trip: the config names the sublayers, so the model is rebuilt with them.
  const std::string checkpoint = (out / "last.safetensors").string();
  const std::shared_ptr<models::Seq2SeqModel> reloaded =
      models::make_model(nn::read_checkpoint_config(checkpoint).config, sublayers, gen);
  nn::load_weights(checkpoint, *reloaded);
  model->eval();
  reloaded->eval();
  const Tensor src = from_vector<int64_t>({5, 6, 7, 2}, {1, 4}), tgt = from_vector<int64_t>({1, 5, 6}, {1, 3});
  ok &= report("checkpoint reloads into the same outputs",
               model->forward(src, tgt).to_vector<float>() == reloaded->forward(src, tgt).to_vector<float>(),
               "the reloaded model computes something else");
  std::filesystem::remove_all(out);
  return ok ? 0 : 1;
}

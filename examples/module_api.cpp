// module_api: the module and optimizer API a PyTorch user reaches for, as docs/writing-a-layer.md prints this
// file: forward hooks with removable handles (one that watches, one that replaces an output), requires_grad_ to
// freeze part of a model, parameter groups with their own learning rate and weight decay, and one checkpoint
// holding two optimizers that resumes to the same next step. Uses the installed umbrella header only: the
// clean-room suite builds it outside the tree with `g++ -std=c++20 module_api.cpp $(pkg-config --cflags --libs
// gradformer)`. Exits 0 when every check holds.
#include <gradformer/gradformer.h>

#include <fmt/core.h>

#include <filesystem>

using namespace gradformer;

// An encoder stack and a linear head: two parts, trained by two optimizers.
class Tagger : public nn::Module {
 public:
  explicit Tagger(Generator& gen) {
    const nn::TransformerLayerOptions layer{.d_model = 16, .nhead = 2, .dim_feedforward = 32, .dropout = 0.0};
    encoder = register_module("encoder", std::make_shared<nn::TransformerEncoder>(layer, 2, true, gen));
    head = register_module("head", std::make_shared<nn::Linear>(16, 4, true, gen));
  }
  std::string type_name() const override { return "Tagger"; }
  Tensor forward(const Tensor& x) const { return head->forward(encoder->forward(x)); }  // (B, T, 16) -> (B, T, 4)

  std::shared_ptr<nn::TransformerEncoder> encoder;
  std::shared_ptr<nn::Linear> head;
};

bool report(std::string_view what, bool passed) {
  fmt::print("{:<60} {}\n", what, passed ? "ok" : "FAILED");
  return passed;
}

// The encoder's parameters split as AdamW users do: weight decay on matrices, none on biases and norms.
std::pair<std::vector<Tensor>, std::vector<Tensor>> decay_split(const nn::Module& module) {
  std::vector<Tensor> decayed, not_decayed;
  for (const Tensor& p : module.parameters())
    if (p.requires_grad()) (p.dim() >= 2 ? decayed : not_decayed).push_back(p);
  return {decayed, not_decayed};
}

int main() {
  Generator gen(1);
  bool ok = true;
  Tagger model(gen);
  const Tensor x = randn({4, 5, 16}, gen), target = randn({4, 5, 4}, gen);

  // A forward hook on each encoder layer sees its inputs and output; remove() unregisters it.
  std::vector<std::string> seen;
  std::vector<nn::RemovableHandle> handles;
  for (const auto& [name, module] : model.named_modules())
    if (module->type_name() == "TransformerEncoderLayer")
      handles.push_back(module->register_forward_hook(
          [&seen, name](const nn::Module&, const std::vector<Tensor>& inputs, const Tensor& output) {
            seen.push_back(fmt::format("{}: {} -> {}", name, shape_str(inputs[0].shape()), shape_str(output.shape())));
            return std::optional<Tensor>{};
          }));
  model.forward(x);
  for (const std::string& line : seen) fmt::print("  hook saw {}\n", line);
  ok &= report("a forward hook saw both encoder layers", seen.size() == 2);
  for (nn::RemovableHandle& handle : handles) handle.remove();
  model.forward(x);
  ok &= report("after remove() the hooks are gone", seen.size() == 2);

  // A hook that returns a tensor replaces the output; a pre-hook may replace the inputs the same way.
  nn::RemovableHandle zero = model.encoder->register_forward_hook(
      [](const nn::Module&, const std::vector<Tensor>&, const Tensor& output) {
        return std::optional<Tensor>(output * 0.0);
      });
  const Tensor bias_only = model.forward(x);
  zero.remove();
  ok &= report("a hook's returned tensor replaces the output",
               bias_only.to_vector<float>() == model.head->forward(zeros({4, 5, 16})).to_vector<float>());

  // Freeze the first encoder layer: it gets no gradient, and no optimizer moves it.
  model.encoder->layers()[0]->requires_grad_(false);
  const Tensor frozen_before = model.encoder->layers()[0]->parameters()[0].clone();

  // Two optimizers: AdamW on the encoder in two parameter groups, SGD with momentum on the head.
  auto [decayed, not_decayed] = decay_split(*model.encoder);
  optim::AdamW encoder_optimizer(decayed, {.lr = 1e-2, .weight_decay = 0.1});
  encoder_optimizer.add_param_group(not_decayed, {.lr = 2e-2, .weight_decay = 0.0});
  optim::SGD head_optimizer(model.head->parameters(), {.lr = 0.05, .momentum = 0.9});

  auto train_step = [&](Tagger& m, optim::Optimizer& a, optim::Optimizer& b) {
    a.zero_grad();
    b.zero_grad();
    Tensor loss = mse_loss(m.forward(x), target);
    loss.backward();
    a.step();
    b.step();
    return loss.item<double>();
  };
  const double first = train_step(model, encoder_optimizer, head_optimizer);
  double last = first;
  for (int step = 1; step < 30; ++step) last = train_step(model, encoder_optimizer, head_optimizer);
  ok &= report(fmt::format("30 steps: loss {:.3f} -> {:.3f}", first, last), last < first);
  ok &= report("the frozen layer did not move",
               model.encoder->layers()[0]->parameters()[0].to_vector<float>() == frozen_before.to_vector<float>());
  // A schedule's set_lr keeps each group's ratio to group 0: 5e-3 for group 0 makes group 1 1e-2.
  encoder_optimizer.set_lr(5e-3);
  ok &= report("set_lr keeps the groups' ratio", encoder_optimizer.param_groups()[1].lr == 1e-2);

  // One checkpoint holds the model and both optimizers (groups, learning rates, moments) under their names.
  const std::string path = (std::filesystem::temp_directory_path() / "gradformer-module-api.safetensors").string();
  nn::save_checkpoint(path, model, nn::NamedOptimizers{{"encoder", &encoder_optimizer}, {"head", &head_optimizer}},
                      {.step = 30}, {{"model", "tagger"}});

  Generator other(99);
  Tagger resumed(other);
  resumed.encoder->layers()[0]->requires_grad_(false);
  auto [resumed_decayed, resumed_not_decayed] = decay_split(*resumed.encoder);
  optim::AdamW resumed_encoder(resumed_decayed, {.lr = 1e-2, .weight_decay = 0.1});
  resumed_encoder.add_param_group(resumed_not_decayed, {.lr = 2e-2, .weight_decay = 0.0});
  optim::SGD resumed_head(resumed.head->parameters(), {.lr = 0.05, .momentum = 0.9});
  nn::load_checkpoint(path, resumed, nn::NamedMutableOptimizers{{"encoder", &resumed_encoder}, {"head", &resumed_head}});
  std::filesystem::remove(path);
  ok &= report("the groups' learning rates came back", resumed_encoder.param_groups()[1].lr == 1e-2);
  train_step(model, encoder_optimizer, head_optimizer);
  train_step(resumed, resumed_encoder, resumed_head);
  ok &= report("the resumed step equals the uninterrupted one",
               resumed.forward(x).to_vector<float>() == model.forward(x).to_vector<float>());
  return ok ? 0 : 1;
}

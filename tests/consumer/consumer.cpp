// A program outside gradformer's tree, built against the installed library (pkg-config) or a meson subproject
// by the clean-room suite (tests/cleanroom/run.sh): it uses only the umbrella header and checks that a layer
// learns, that gradcheck runs, and that a checkpoint round-trips. Exits 0 and prints "consumer: ok" when all hold.
#include <gradformer/gradformer.h>

#include <fmt/core.h>

#include <cstdio>
#include <filesystem>

using namespace gradformer;

int main() {
  Generator gen(7);
  nn::Linear layer(3, 1, /*bias=*/true, gen);
  optim::Adam adam(layer.parameters(), {.lr = 0.05});
  const Tensor x = randn({64, 3}, gen);
  const Tensor target = matmul(x, from_vector<float>({1.0f, -2.0f, 0.5f}, {3, 1}));

  double first_loss = 0.0, last_loss = 0.0;
  for (int step = 0; step < 200; ++step) {
    adam.zero_grad();
    Tensor loss = mse_loss(layer.forward(x), target);
    loss.backward();
    adam.step();
    last_loss = loss.item<double>();
    if (step == 0) first_loss = last_loss;
  }
  if (!(last_loss < 0.01 * first_loss)) {
    fmt::print(stderr, "consumer: the loss went from {} to {}, not below 1% of its start\n", first_loss, last_loss);
    return 1;
  }

  const GradcheckReport report = gradcheck(
      [](const std::vector<Tensor>& in) { return tanh(matmul(in[0], in[1])); }, {randn({2, 3}, gen), randn({3, 2}, gen)});
  if (!report.passed) {
    fmt::print(stderr, "consumer: gradcheck failed: {}\n", report.failure);
    return 1;
  }

  const std::string path = (std::filesystem::temp_directory_path() / "gradformer-consumer.safetensors").string();
  nn::save_weights(path, layer);
  nn::Linear reloaded(3, 1);
  nn::load_weights(path, reloaded);
  std::filesystem::remove(path);
  if (reloaded.forward(x).to_vector<float>() != layer.forward(x).to_vector<float>()) {
    fmt::print(stderr, "consumer: the reloaded layer computes something else\n");
    return 1;
  }
  fmt::print("consumer: ok (loss {:.3g} -> {:.3g})\n", first_loss, last_loss);
  return 0;
}

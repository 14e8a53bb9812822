// nn::FlatParameters: parameters and gradients become views into two buffers, backward accumulates into the
// gradient buffer, zero_grad/set_grad/load_state_dict keep the views, and Adam training with clipping gives
// the same weights bit for bit as the same model not flattened.
#include "models/zoo.h"
#include "nn/flat_parameters.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "ops/ops.h"

#include "helpers.h"
#include "model_helpers.h"

#include <doctest/doctest.h>

using namespace gradformer;

namespace {

std::shared_ptr<models::Seq2SeqModel> small_transformer() {
  default_generator().manual_seed(7);
  return models::make_model(testing::tiny_transformer_config(12, 0.0, 16, 8), default_generator());
}

// Three Adam steps with gradient clipping on fixed token ids; the weights afterwards.
std::vector<std::vector<float>> train_three_steps(models::Seq2SeqModel& model) {
  const Tensor src = from_vector<int64_t>({3, 4, 5, 6, 7, 8, 9, 0}, {2, 4});
  const Tensor tgt_in = from_vector<int64_t>({1, 4, 5, 6, 1, 8, 9, 0}, {2, 4});
  const Tensor tgt_out = from_vector<int64_t>({4, 5, 6, 2, 8, 9, 2, 0}, {2, 4});
  optim::Adam adam(model.parameters(), {.lr = 1e-2});
  CrossEntropyOptions loss_options;
  loss_options.ignore_index = 0;
  loss_options.label_smoothing = 0.1;
  for (int step = 0; step < 3; ++step) {
    adam.zero_grad();
    const Tensor logits = model.forward(src, tgt_in);
    cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(tgt_out, {-1}), loss_options).backward();
    optim::clip_grad_norm_(model.parameters(), 0.5);
    adam.step();
  }
  std::vector<std::vector<float>> weights;
  for (const Tensor& p : model.parameters()) weights.push_back(p.to_vector<float>());
  return weights;
}

}  // namespace

TEST_CASE("flat parameters: data and grads are views into the two buffers") {
  nn::Linear a(3, 2), b(2, 5, false);
  const std::vector<Tensor> params{a.parameters()[0], a.parameters()[1], b.parameters()[0]};
  const std::vector<float> weight_before = params[0].to_vector<float>();
  nn::FlatParameters flat(params);
  CHECK(params[0].to_vector<float>() == weight_before);  // values move with the parameter
  CHECK(flat.numel() == 16 + 16 + 16);                   // each parameter padded to 64 bytes of f32
  for (const Tensor& p : params) {
    CHECK(p.storage() == flat.data().storage());
    CHECK(p.grad().storage() == flat.grad().storage());
    CHECK(reinterpret_cast<uintptr_t>(p.raw_data()) % 64 == 0);
  }
  flat.data().fill_(2.0);
  CHECK(params[2].at({4, 1}) == 2.0);
  params[1].set_at({1}, -3.0);
  CHECK(flat.data().at({17}) == -3.0);
  flat.check_intact("test");
}

TEST_CASE("flat parameters: backward fills the flat gradient buffer; zero_grad and set_grad keep the views") {
  nn::Linear layer(4, 3);
  nn::FlatParameters flat(layer);
  const Tensor x = randn({5, 4});
  sum(layer.forward(x)).backward();
  const Tensor bias_grad = flat.grad().as_strided({3}, {1}, 16);
  CHECK(bias_grad.to_vector<float>() == std::vector<float>{5, 5, 5});
  sum(layer.forward(x)).backward();  // accumulates
  CHECK(bias_grad.to_vector<float>() == std::vector<float>{10, 10, 10});
  layer.zero_grad();
  CHECK(testing::max_abs(flat.grad()) == 0.0);
  CHECK(layer.parameters()[1].grad().storage() == flat.grad().storage());
  layer.parameters()[1].set_grad(ones({3}));
  CHECK(bias_grad.to_vector<float>() == std::vector<float>{1, 1, 1});
  flat.zero_grad();
  CHECK(testing::max_abs(flat.grad()) == 0.0);
}

TEST_CASE("flat parameters: load_state_dict writes into the buffer; Module::to afterwards is reported") {
  nn::Linear source(2, 2), target(2, 2);
  nn::FlatParameters flat(target);
  target.load_state_dict(source.state_dict());
  CHECK(testing::max_abs_difference(flat.data().as_strided({2, 2}, {2, 1}, 0), source.parameters()[0]) == 0.0);
  target.to(DType::f64);
  CHECK(testing::message_of<ValueError>([&] { flat.check_intact("allreduce"); }) ==
        "allreduce: parameter 'weight' no longer lives in the flat buffers (converted with Module::to or given new "
        "storage after flattening?)");
}

TEST_CASE("flat parameters: mixed dtypes are refused") {
  nn::Linear a(2, 2), b(2, 2);
  b.to(DType::f64);
  CHECK(testing::message_of<DTypeError>([&] { nn::FlatParameters({a.parameters()[0], b.parameters()[0]}); }) ==
        "FlatParameters: parameter 1 ('weight') is f64, the first one is f32: one buffer holds one dtype");
}

TEST_CASE("flat parameters: Adam training gives the same weights bit for bit as without flattening") {
  const auto plain = small_transformer();
  const auto flattened = small_transformer();
  nn::FlatParameters flat(*flattened);
  CHECK(train_three_steps(*flattened) == train_three_steps(*plain));
}

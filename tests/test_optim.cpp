// Optimizers against hand-computed updates (one and two steps), gradient clipping, optimizer state dicts
// and the learning-rate schedules. Every update starts from p = [1, -2] with g = [0.5, 1] on step 1.
#include "nn/optim.h"
#include "nn/schedule.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numbers>

using namespace gradformer;
using gradformer::testing::message_of;
using doctest::Approx;

namespace {

Tensor parameter(std::vector<double> values, DType dtype = DType::f64) {
  Tensor p = from_vector(values, {static_cast<int64_t>(values.size())}).to(dtype);
  p.requires_grad_();
  return p;
}

void give_grad(Tensor p, std::vector<double> values) {
  p.set_grad(from_vector(values, {static_cast<int64_t>(values.size())}).to(p.dtype()));
}

// Runs one step with gradient g on every parameter of `opt` (all of shape [2]).
void step_with(optim::Optimizer& opt, std::vector<double> g) {
  for (const Tensor& p : opt.parameters()) give_grad(p, g);
  opt.step();
}

void check_values(const Tensor& t, std::vector<double> expected, double epsilon = 1e-12) {
  const std::vector<double> actual = t.to_vector<double>();
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) CHECK(actual[i] == Approx(expected[i]).epsilon(epsilon));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("SGD: plain steps") {
  const Tensor p = parameter({1, -2});
  optim::SGD sgd({p}, {.lr = 0.1});
  step_with(sgd, {0.5, 1});
  check_values(p, {0.95, -2.1});  // p − 0.1·g
  step_with(sgd, {0.5, 1});
  check_values(p, {0.9, -2.2});
  CHECK(sgd.step_count() == 2);
}

TEST_CASE("SGD: momentum with weight decay") {
  const Tensor p = parameter({1, -2});
  optim::SGD sgd({p}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1});
  // Step 1: d = g + 0.1·p = [0.6, 0.8]; buf = d; p = [1 − 0.06, −2 − 0.08] = [0.94, −2.08].
  step_with(sgd, {0.5, 1});
  check_values(p, {0.94, -2.08});
  // Step 2: d = [0.5 + 0.094, 1 − 0.208] = [0.594, 0.792]; buf = 0.9·[0.6, 0.8] + d = [1.134, 1.512];
  // p = [0.94 − 0.1134, −2.08 − 0.1512] = [0.8266, −2.2312].
  step_with(sgd, {0.5, 1});
  check_values(p, {0.8266, -2.2312});
}

TEST_CASE("SGD: nesterov") {
  const Tensor p = parameter({1, -2});
  optim::SGD sgd({p}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  // Step 1: buf = g = [0.5, 1]; d = g + 0.9·buf = [0.95, 1.9]; p = [0.905, −2.19].
  step_with(sgd, {0.5, 1});
  check_values(p, {0.905, -2.19});
  // Step 2: buf = 0.9·[0.5, 1] + g = [0.95, 1.9]; d = g + 0.9·buf = [1.355, 2.71]; p = [0.7695, −2.461].
  step_with(sgd, {0.5, 1});
  check_values(p, {0.7695, -2.461});
}

TEST_CASE("SGD: dampening leaves the first step alone") {
  const Tensor p = parameter({1, -2});
  optim::SGD sgd({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
  // Step 1: buf = g (no dampening on the first step): p = [0.95, −2.1].
  step_with(sgd, {0.5, 1});
  check_values(p, {0.95, -2.1});
  // Step 2: buf = 0.9·g + 0.5·g = [0.7, 1.4]; p = [0.88, −2.24].
  step_with(sgd, {0.5, 1});
  check_values(p, {0.88, -2.24});
}

TEST_CASE("Adam: one and two steps") {
  const Tensor p = parameter({1, -2});
  optim::Adam adam({p}, {.lr = 0.1});
  // Step 1: m = 0.1·g = [0.05, 0.1]; v = 0.001·g² = [0.00025, 0.001]; step_size = 0.1 / (1 − 0.9) = 1;
  // denom = sqrt(v) / sqrt(0.001) + 1e-8 = [0.5 + 1e-8, 1 + 1e-8]; p = [1 − 0.05/0.50000001, −2 − 0.1/1.00000001]
  // = [0.900000002, −2.099999999].
  step_with(adam, {0.5, 1});
  check_values(p, {0.900000002, -2.099999999});
  // Step 2 with g = [−0.5, 2]: m = 0.9·[0.05, 0.1] + 0.1·g = [−0.005, 0.29];
  // v = 0.999·[0.00025, 0.001] + 0.001·g² = [0.00049975, 0.004999]; bias corrections 1 − 0.9² = 0.19 and
  // 1 − 0.999² = 0.001999; step_size = 0.1 / 0.19 = 0.52631579; denom = [sqrt(0.25), sqrt(2.50075038)] + 1e-8
  // = [0.5, 1.58137610]; p = [0.900000002 + 0.52631579·0.005/0.5, −2.099999999 − 0.52631579·0.29/1.58137610]
  // = [0.905263159789, −2.196518200972].
  step_with(adam, {-0.5, 2});
  check_values(p, {0.905263159789, -2.196518200972});
}

TEST_CASE("Adam: weight decay is L2 added to the gradient") {
  const Tensor p = parameter({1, -2});
  optim::Adam adam({p}, {.lr = 0.1, .weight_decay = 0.1});
  // Step 1: g' = g + 0.1·p = [0.6, 0.8]; every first Adam step moves by lr·g'/(|g'| + eps): p ≈ [0.9, −2.1].
  step_with(adam, {0.5, 1});
  check_values(p, {0.900000001667, -2.09999999875});
  // Step 2 with g = [−0.5, 2]: g' = g + 0.1·[0.9, −2.1] = [−0.41, 1.79]; m = 0.09·[0.6, 0.8] + 0.1·g'
  // = [0.013, 0.251]; v = 0.000999·[0.36, 0.64] + 0.001·g'² = [0.00052774, 0.00384346];
  // p = p − (0.1/0.19)·m / (sqrt(v / 0.001999) + 1e-8) = [0.886683623065, −2.195272009587].
  step_with(adam, {-0.5, 2});
  check_values(p, {0.886683623065, -2.195272009587}, 1e-10);
}

TEST_CASE("AdamW: decoupled decay before the Adam update") {
  const Tensor p = parameter({1, -2});
  optim::AdamW adamw({p}, {.lr = 0.1, .weight_decay = 0.1});
  // Step 1: p·(1 − 0.1·0.1) = [0.99, −1.98], then Adam's first step [−0.099999998, −0.099999999]:
  // [0.890000002, −2.079999999].
  step_with(adamw, {0.5, 1});
  check_values(p, {0.890000002, -2.079999999});
  // Step 2: [0.890000002, −2.079999999]·0.99 = [0.881100002, −2.059199999], then the same Adam deltas as in
  // "Adam: one and two steps" (m and v do not see p): [+0.005263158, −0.096518202].
  step_with(adamw, {-0.5, 2});
  check_values(p, {0.886363159769, -2.155718200982}, 1e-10);
  CHECK(adamw.type_name() == "AdamW");
}

TEST_CASE("Adam: f32 follows f64") {
  const Tensor p32 = parameter({1, -2}, DType::f32), p64 = parameter({1, -2});
  optim::Adam a32({p32}, {.lr = 0.1}), a64({p64}, {.lr = 0.1});
  for (std::vector<double> g : {std::vector<double>{0.5, 1}, std::vector<double>{-0.5, 2}}) {
    step_with(a32, g);
    step_with(a64, g);
  }
  CHECK(p32.dtype() == DType::f32);
  check_values(p32, p64.to_vector<double>(), 1e-6);
}

TEST_CASE("optimizer state follows a parameter that Module::to converted after the first step") {
  struct Holder : nn::Module {
    explicit Holder(Tensor p) { weight = register_parameter("weight", std::move(p)); }
    Tensor weight;
  };
  Holder holder(parameter({1, -2}, DType::f32));
  const Tensor reference = parameter({1, -2}, DType::f32);
  optim::Adam adam(holder.parameters(), {.lr = 0.1}), reference_adam({reference}, {.lr = 0.1});
  step_with(adam, {0.5, 1});
  step_with(reference_adam, {0.5, 1});
  holder.to(DType::f64);
  step_with(adam, {-0.5, 2});
  step_with(reference_adam, {-0.5, 2});
  CHECK(holder.weight.dtype() == DType::f64);
  CHECK(adam.state_dict().at("state.0.exp_avg").dtype() == DType::f64);
  check_values(holder.weight, reference.to_vector<double>(), 1e-6);
}

TEST_CASE("optimizers skip parameters without a gradient and count steps per parameter") {
  const Tensor a = parameter({1, -2}), b = parameter({3, 4});
  optim::Adam adam({a, b}, {.lr = 0.1});
  give_grad(a, {0.5, 1});
  adam.step();
  check_values(b, {3, 4});
  nn::StateDict state = adam.state_dict();
  CHECK(state.contains("state.0.exp_avg"));
  CHECK(!state.contains("state.1.exp_avg"));
  // b's first update uses t = 1 although the optimizer has taken two steps, as PyTorch's per-parameter step.
  give_grad(b, {0.5, 1});
  adam.step();
  check_values(b, {2.900000002, 3.900000001});
  state = adam.state_dict();
  CHECK(state.at("step").item() == 2);
  CHECK(state.at("step").dtype() == DType::i64);
  CHECK(state.at("state.0.step").item() == 2);
  CHECK(state.at("state.1.step").item() == 1);
  adam.zero_grad();
  CHECK(!a.grad().defined());
}

TEST_CASE("optimizer state_dict round trip makes the next step identical") {
  const Tensor pa = parameter({1, -2}), pb = parameter({0, 0});
  optim::Adam a({pa}, {.lr = 0.1}), b({pb}, {.lr = 0.5});
  step_with(a, {0.5, 1});
  step_with(a, {-0.5, 2});
  a.set_lr(0.05);
  b.load_state_dict(a.state_dict());
  pb.detach().copy_(pa.detach());
  CHECK(b.lr() == 0.05);
  CHECK(b.step_count() == 2);
  // The loaded state is a copy, not a view of a's.
  CHECK(b.state_dict().at("state.0.exp_avg").storage() != a.state_dict().at("state.0.exp_avg").storage());
  step_with(a, {0.25, -1});
  step_with(b, {0.25, -1});
  CHECK(pa.to_vector<double>() == pb.to_vector<double>());
  CHECK(a.state_dict().at("state.0.exp_avg").to_vector<double>() ==
        b.state_dict().at("state.0.exp_avg").to_vector<double>());

  const Tensor sa = parameter({1, -2}), sb = parameter({1, -2});
  optim::SGD sgd_a({sa}, {.lr = 0.1, .momentum = 0.9}), sgd_b({sb}, {.lr = 0.1, .momentum = 0.9});
  step_with(sgd_a, {0.5, 1});
  sgd_b.load_state_dict(sgd_a.state_dict());
  sb.detach().copy_(sa.detach());
  step_with(sgd_a, {0.5, 1});
  step_with(sgd_b, {0.5, 1});
  CHECK(sa.to_vector<double>() == sb.to_vector<double>());
  CHECK(sgd_a.state_dict().contains("state.0.momentum_buffer"));
}

TEST_CASE("optimizer load_state_dict lists every problem and changes nothing") {
  const Tensor p = parameter({1, -2}), q = parameter({1, 2, 3});
  optim::Adam adam({p, q}, {.lr = 0.1});
  give_grad(p, {0.5, 1});
  give_grad(q, {1, 1, 1});
  adam.step();
  const nn::StateDict before = adam.state_dict();
  const std::vector<double> moments = before.at("state.0.exp_avg").to_vector<double>();

  nn::StateDict bad = before;
  bad.erase("lr");
  bad.erase("state.0.exp_avg_sq");
  bad["state.0.exp_avg"] = zeros({3}, DType::f64);
  bad["state.1.momentum_buffer"] = zeros({3});
  bad["state.7.exp_avg"] = zeros({2});
  bad["epoch"] = zeros({});
  const std::string m = message_of<nn::StateDictError>([&] { adam.load_state_dict(bad); });
  INFO(m);
  CHECK(m.starts_with("Adam.load_state_dict: "));
  CHECK(contains(m, "missing key 'lr'"));
  CHECK(contains(m, "missing key 'state.0.exp_avg_sq'"));
  CHECK(contains(m, "'state.0.exp_avg' has shape [3], parameter 0 ('') needs [2]"));
  CHECK(contains(m, "unexpected key 'state.1.momentum_buffer'"));
  CHECK(contains(m, "'state.7.exp_avg' refers to parameter 7, but there are 2"));
  CHECK(contains(m, "unexpected key 'epoch'"));
  CHECK(adam.state_dict().at("state.0.exp_avg").to_vector<double>() == moments);
  CHECK(adam.step_count() == 1);
}

TEST_CASE("optimizer argument errors") {
  const Tensor p = parameter({1, -2});
  CHECK(message_of<ValueError>([&] { optim::SGD({p}, {.lr = 0.1, .nesterov = true}); }) ==
        "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum 0 and dampening 0");
  CHECK(message_of<ValueError>([&] { optim::Adam({p}, {.lr = -1}); }) == "Adam: lr = -1 is outside [0, inf]");
  CHECK(message_of<ValueError>([&] { optim::AdamW({p}, {.beta2 = 1.0}); }) == "AdamW: beta2 = 1 is outside [0, 1)");
  CHECK(message_of<ValueError>([&] { optim::SGD({p, p}); }) == "SGD: parameter 1 ('') appears more than once");
  CHECK(message_of<ValueError>([&] { optim::SGD({p * 2.0}); }).starts_with("SGD: parameter 0 ('') is not a leaf"));
}

TEST_CASE("clip_grad_norm_ returns the norm and scales") {
  const Tensor a = parameter({0, 0}), b = parameter({0}), c = parameter({0});
  give_grad(a, {3, 4});
  give_grad(b, {12});
  // |[3, 4, 12]| = 13; max_norm 6.5 scales by 6.5 / (13 + 1e-6).
  CHECK(optim::clip_grad_norm_({a, b, c}, 6.5) == 13.0);
  const double scale = 6.5 / (13 + 1e-6);
  check_values(a.grad(), {3 * scale, 4 * scale});
  check_values(b.grad(), {12 * scale});
  CHECK(!c.grad().defined());
  // Below max_norm: returned, nothing scaled.
  CHECK(optim::clip_grad_norm_({a, b}, 100) == Approx(6.5));
  check_values(a.grad(), {3 * scale, 4 * scale});
  // A non-finite norm is returned and nothing is scaled.
  give_grad(a, {std::numeric_limits<double>::infinity(), 1});
  CHECK(std::isinf(optim::clip_grad_norm_({a, b}, 1)));
  CHECK(a.grad().at({1}) == 1);
  CHECK(b.grad().at({0}) == Approx(12 * scale));
}

TEST_CASE("schedules at given steps") {
  const nn::NoamSchedule noam(512, 4000, 2.0);
  // 2 · 512^-0.5 · min(step^-0.5, step · 4000^-1.5)
  CHECK(noam.lr(1) == Approx(2 / std::sqrt(512.0) * std::pow(4000.0, -1.5)));
  CHECK(noam.lr(1) == Approx(3.4938562e-7));
  CHECK(noam.lr(2000) == Approx(2 / std::sqrt(512.0) * 2000 * std::pow(4000.0, -1.5)));
  CHECK(noam.lr(4000) == Approx(2 / std::sqrt(512.0 * 4000)));  // the peak: 1.3975425e-3
  CHECK(noam.lr(4000) == Approx(1.3975425e-3));
  CHECK(noam.lr(16000) == Approx(noam.lr(4000) / 2));
  CHECK(noam.lr(0) == noam.lr(1));

  const nn::WarmupCosineSchedule cosine(1e-3, 10, 110, 1e-5);
  CHECK(cosine.lr(5) == Approx(5e-4));
  CHECK(cosine.lr(10) == Approx(1e-3));
  CHECK(cosine.lr(60) == Approx(1e-5 + 0.5 * (1e-3 - 1e-5)));  // cos(π/2) = 0
  CHECK(cosine.lr(35) == Approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + std::cos(std::numbers::pi / 4))));
  CHECK(cosine.lr(110) == Approx(1e-5));
  CHECK(cosine.lr(500) == Approx(1e-5));

  CHECK(nn::ConstantSchedule(3e-4).lr(12345) == 3e-4);
  CHECK_THROWS_AS(nn::NoamSchedule(0, 10), ValueError);
  CHECK_THROWS_AS(nn::WarmupCosineSchedule(1e-3, 10, 5), ValueError);
}

TEST_CASE("optimizer and schedule train a tiny regression") {
  // Fit y = x · [2, −1] + 0.5 with a learnt weight and bias.
  Generator gen(1);
  const Tensor x = randn({32, 2}, gen, DType::f64);
  const Tensor y = matmul(x, from_vector<double>({2, -1}, {2, 1})) + 0.5;
  const Tensor w = parameter({0, 0}), b = parameter({0});
  optim::Adam adam({w, b}, {.lr = 0.1});
  const nn::WarmupCosineSchedule schedule(0.1, 5, 200, 0.001);
  double first = 0, last = 0;
  for (int64_t step = 1; step <= 200; ++step) {
    adam.set_lr(schedule.lr(step));
    adam.zero_grad();
    const Tensor error = matmul(x, reshape(w, {2, 1})) + b - y;
    const Tensor loss = mean(error * error);
    loss.backward();
    optim::clip_grad_norm_({w, b}, 10.0);
    adam.step();
    (step == 1 ? first : last) = loss.item();
  }
  CHECK(last < 1e-3 * first);
  check_values(w, {2, -1}, 1e-2);
}

TEST_CASE("parameter groups: each group steps with its own options, as separate optimizers would") {
  const Tensor a = parameter({1, -2}), b = parameter({1, -2});
  optim::AdamW grouped({a}, {.lr = 0.1, .weight_decay = 0.01});
  CHECK(grouped.add_param_group({b}, {.lr = 0.02, .beta1 = 0.5, .weight_decay = 0.0}) == 1);
  const Tensor a_alone = parameter({1, -2}), b_alone = parameter({1, -2});
  optim::AdamW first({a_alone}, {.lr = 0.1, .weight_decay = 0.01});
  optim::AdamW second({b_alone}, {.lr = 0.02, .beta1 = 0.5, .weight_decay = 0.0});
  for (int step = 0; step < 3; ++step) {
    step_with(grouped, {0.5, 1});
    step_with(first, {0.5, 1});
    step_with(second, {0.5, 1});
  }
  CHECK(a.to_vector<double>() == a_alone.to_vector<double>());
  CHECK(b.to_vector<double>() == b_alone.to_vector<double>());
  CHECK(grouped.parameters().size() == 2);
  CHECK(grouped.param_groups().size() == 2);
  CHECK(grouped.options(1).beta1 == 0.5);

  // A group without options takes the constructor's; SGD's groups may differ in momentum.
  const Tensor c = parameter({1, -2}), d = parameter({1, -2});
  optim::SGD sgd({c}, {.lr = 0.1, .momentum = 0.9});
  sgd.add_param_group({d});
  CHECK(sgd.options(1).momentum == 0.9);
  CHECK(sgd.param_groups()[1].lr == 0.1);
}

TEST_CASE("parameter groups: set_lr keeps each group's ratio to group 0; set_lr(group, lr) sets one") {
  const Tensor a = parameter({1, -2}), b = parameter({1, -2});
  optim::Adam adam({a}, {.lr = 0.1});
  adam.add_param_group({b}, {.lr = 0.025});
  adam.set_lr(0.2);
  CHECK(adam.lr() == 0.2);
  CHECK(adam.param_groups()[1].lr == doctest::Approx(0.05));
  CHECK(adam.param_groups()[1].initial_lr == 0.025);
  adam.set_lr(1, 0.3);
  CHECK(adam.param_groups()[1].lr == 0.3);
  CHECK(message_of<IndexError>([&] { adam.set_lr(2, 0.1); }) == "Adam.set_lr: group 2 does not exist (2 groups)");
}

TEST_CASE("parameter groups: errors name the optimizer and the parameter") {
  const Tensor a = parameter({1, -2}), b = parameter({3});
  optim::Adam adam({a}, {.lr = 0.1});
  CHECK(message_of<ValueError>([&] { adam.add_param_group({a}); }) ==
        "Adam.add_param_group: parameter 0 ('') appears more than once (or is in another group already)");
  CHECK(message_of<ValueError>([&] { adam.add_param_group({}); }) == "Adam.add_param_group: the group has no parameters");
  CHECK(message_of<ValueError>([&] { adam.add_param_group({b}, {.beta1 = 1.5}); }) ==
        "Adam.add_param_group: beta1 = 1.5 is outside [0, 1)");
  optim::AdamW adamw({b});
  CHECK(message_of<ValueError>([&] { adamw.add_param_group({a}, {.lr = -1}); }) ==
        "AdamW.add_param_group: lr = -1 is outside [0, inf]");
  CHECK(adam.param_groups().size() == 1);
}

TEST_CASE("parameter groups: state_dict saves groups, learning rates and hyperparameters, and load restores them") {
  const Tensor a = parameter({1, -2}), b = parameter({0, 3});
  optim::SGD sgd({a}, {.lr = 0.1, .momentum = 0.9});
  sgd.add_param_group({b}, {.lr = 0.01, .momentum = 0.5, .weight_decay = 0.1, .nesterov = true});
  step_with(sgd, {0.5, 1});
  sgd.set_lr(0.2);
  const nn::StateDict dict = sgd.state_dict();
  CHECK(dict.at("param_groups.1.params").item() == 1);
  CHECK(dict.at("param_groups.1.lr").item() == doctest::Approx(0.02));
  CHECK(dict.at("param_groups.1.initial_lr").item() == 0.01);
  CHECK(dict.at("param_groups.1.momentum").item() == 0.5);
  CHECK(dict.at("param_groups.1.nesterov").item() == 1);

  const Tensor a2 = parameter({1, -2}), b2 = parameter({0, 3});
  optim::SGD other({a2}, {.lr = 1.0});  // other hyperparameters: the saved ones win, as in PyTorch
  other.add_param_group({b2});
  other.load_state_dict(dict);
  a2.detach().copy_(a.detach());
  b2.detach().copy_(b.detach());
  CHECK(other.options(1).momentum == 0.5);
  CHECK(other.options(1).nesterov);
  CHECK(other.param_groups()[1].lr == doctest::Approx(0.02));
  step_with(sgd, {0.25, -1});
  step_with(other, {0.25, -1});
  CHECK(a2.to_vector<double>() == a.to_vector<double>());
  CHECK(b2.to_vector<double>() == b.to_vector<double>());

  // A group of another size, or a missing group, is refused before anything changes.
  const Tensor c = parameter({1, -2}), d = parameter({1, 1}), e = parameter({2, 2});
  optim::SGD mismatched({c}, {.lr = 0.1, .momentum = 0.9});
  mismatched.add_param_group({d, e});
  const std::string m = message_of<nn::StateDictError>([&] { mismatched.load_state_dict(dict); });
  CHECK(contains(m, "parameter group 1 holds 2 parameters here, 1 in the state dict"));
  CHECK(mismatched.options(1).momentum == 0.9);
}

TEST_CASE("parameter groups: a state dict from before groups existed loads into one group") {
  const Tensor a = parameter({1, -2});
  optim::Adam adam({a}, {.lr = 0.1});
  step_with(adam, {0.5, 1});
  nn::StateDict legacy = adam.state_dict();
  std::erase_if(legacy, [](const auto& entry) { return entry.first.starts_with("param_groups."); });
  legacy["lr"] = scalar_tensor(0.05, DType::f64);
  const Tensor b = parameter({1, -2});
  optim::Adam loaded({b}, {.lr = 0.3});
  loaded.load_state_dict(legacy);
  CHECK(loaded.lr() == 0.05);
  CHECK(loaded.step_count() == 1);
  CHECK(loaded.state_dict().at("state.0.exp_avg").to_vector<double>() ==
        adam.state_dict().at("state.0.exp_avg").to_vector<double>());

  const Tensor c = parameter({1, -2}), d = parameter({1, -2});
  optim::Adam two({c}, {.lr = 0.1});
  two.add_param_group({d});
  CHECK(contains(message_of<nn::StateDictError>([&] { two.load_state_dict(legacy); }),
                 "no param_groups keys (one group, as saved before groups existed), but this optimizer has 2 groups"));
}

// nn::Module (names, state dicts, modes, dtype conversion, summary, forward hooks, requires_grad_) and nn::init
// (bounds and statistics).
#include "autograd/gradcheck.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/transformer.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

// y = x·W + b, the smallest layer with two parameters.
class Affine : public nn::Module {
 public:
  Affine(int64_t in, int64_t out) {
    weight_ = register_parameter("weight", nn::init::xavier_uniform_(empty({in, out})));
    bias_ = register_parameter("bias", nn::init::zeros_(empty({out})));
  }
  std::string type_name() const override { return "Affine"; }
  Tensor forward(const Tensor& x) const { return matmul(x, weight_) + bias_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

// Three levels: Net → Encoder → ModuleList → Affine, plus a buffer and a parameter at each level.
class Encoder : public nn::Module {
 public:
  Encoder(int64_t width, int64_t depth) {
    layers_ = register_module("layers", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < depth; ++i) layers_->push_back(std::make_shared<Affine>(width, width));
    scale_ = register_parameter("scale", ones({width}));
    mask_ = register_buffer("mask", zeros({width}, DType::boolean));
  }
  std::string type_name() const override { return "Encoder"; }
  Tensor forward(Tensor x) const {
    for (const auto& layer : *layers_) x = std::static_pointer_cast<Affine>(layer)->forward(x);
    return x * scale_;
  }
  const nn::ModuleList& layers() const { return *layers_; }

 private:
  std::shared_ptr<nn::ModuleList> layers_;
  Tensor scale_, mask_;
};

class Net : public nn::Module {
 public:
  explicit Net(int64_t width = 3, int64_t depth = 2) {
    encoder_ = register_module("encoder", std::make_shared<Encoder>(width, depth));
    head_ = register_module("head", std::make_shared<Affine>(width, 1));
    running_ = register_buffer("running", zeros({2}));
  }
  std::string type_name() const override { return "Net"; }
  Tensor forward(const Tensor& x) const { return head_->forward(encoder_->forward(x)); }
  Encoder& encoder() { return *encoder_; }
  Affine& head() { return *head_; }

 private:
  std::shared_ptr<Encoder> encoder_;
  std::shared_ptr<Affine> head_;
  Tensor running_;
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

}  // namespace

TEST_CASE("module: dotted names follow registration order through a ModuleList") {
  Net net;
  // Each module's own parameters first, then its children's, as PyTorch's named_parameters.
  const std::vector<std::string> expected{"encoder.scale",           "encoder.layers.0.weight",
                                          "encoder.layers.0.bias",   "encoder.layers.1.weight",
                                          "encoder.layers.1.bias",   "head.weight",
                                          "head.bias"};
  CHECK(names_of(net.named_parameters()) == expected);
  CHECK(names_of(net.named_buffers()) == std::vector<std::string>{"running", "encoder.mask"});
  CHECK(names_of(net.named_parameters(false)).empty());
  CHECK(names_of(net.encoder().named_parameters(false)) == std::vector<std::string>{"scale"});
  // The impl's name field carries the full name, set as each level was registered under its parent.
  for (const auto& [name, p] : net.named_parameters()) {
    CHECK(p.name() == name);
    CHECK(p.requires_grad());
  }
  std::vector<std::string> modules;
  for (const auto& [name, module] : net.named_modules()) modules.push_back(name + ":" + module->type_name());
  CHECK(modules == std::vector<std::string>{":Net", "encoder:Encoder", "encoder.layers:ModuleList",
                                            "encoder.layers.0:Affine", "encoder.layers.1:Affine", "head:Affine"});
  CHECK(std::as_const(net).named_modules().size() == 6);
  CHECK(net.children().size() == 2);
  CHECK(net.encoder().layers().size() == 2);
  CHECK(net.encoder().layers().at<Affine>(1)->weight().shape() == Shape{3, 3});
  CHECK(message_of<IndexError>([&] { net.encoder().layers()[2]; }) ==
        "ModuleList: index 2 is out of range for a list of 2 modules");
}

TEST_CASE("module: registration errors name the module and the name") {
  struct Twice : nn::Module {
    Twice() {
      register_parameter("w", zeros({2}));
      register_parameter("w", zeros({2}));
    }
    std::string type_name() const override { return "Twice"; }
  };
  CHECK(message_of<ValueError>([] { Twice(); }) == "Twice: cannot register parameter 'w': the name is already taken");
  struct Dotted : nn::Module {
    Dotted() { register_buffer("a.b", zeros({2})); }
  };
  CHECK(message_of<ValueError>([] { Dotted(); }) == "Module: buffer name 'a.b' must be non-empty and contain no '.'");
  struct Integer : nn::Module {
    Integer() { register_parameter("ids", arange(3)); }
  };
  CHECK(message_of<DTypeError>([] { Integer(); }) == "Module: parameter 'ids' must be f32 or f64, got i64");
}

TEST_CASE("module: tied weights are listed and counted once") {
  struct Tied : nn::Module {
    Tied() {
      a = register_module("a", std::make_shared<Affine>(2, 2));
      shared = register_parameter("shared", a->weight());
    }
    std::shared_ptr<Affine> a;
    Tensor shared;
  };
  Tied tied;
  // Own parameters come first, so the tied weight is listed under "shared" (PyTorch does the same).
  CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"shared", "a.bias"});
  CHECK(tied.parameter_count() == 6);
  CHECK(tied.state_dict().size() == 3);  // every name, as PyTorch
}

TEST_CASE("module: state_dict round trip between two instances") {
  Net a, b;
  CHECK(testing::max_abs_difference(a.head().weight(), b.head().weight()) > 0);  // different draws
  const nn::StateDict dict = a.state_dict();
  CHECK(dict.size() == 9);
  CHECK(dict.contains("encoder.layers.1.bias"));
  CHECK(dict.contains("encoder.mask"));
  CHECK(!dict.at("head.weight").requires_grad());
  b.load_state_dict(dict);
  for (const auto& [name, tensor] : b.state_dict()) CHECK(testing::max_abs_difference(tensor, dict.at(name)) == 0);
  const Tensor x = randn({4, 3});
  CHECK(testing::max_abs_difference(a.forward(x), b.forward(x)) == 0);
  // The load copied values: b's parameters keep their own storage.
  CHECK(b.head().weight().storage() != a.head().weight().storage());
  CHECK(b.head().weight().requires_grad());
}

TEST_CASE("module: load_state_dict converts dtypes") {
  Net a, b;
  nn::StateDict dict = a.state_dict();
  for (auto& [name, tensor] : dict)
    if (is_floating(tensor.dtype())) tensor = tensor.to(DType::f64);
  b.load_state_dict(dict);
  CHECK(b.head().weight().dtype() == DType::f32);
  CHECK(testing::max_abs_difference(a.head().weight(), b.head().weight()) == 0);
}

TEST_CASE("module: a strict load lists every problem in one message and changes nothing") {
  Net a, b;
  nn::StateDict dict = a.state_dict();
  dict.erase("head.bias");
  dict.erase("encoder.mask");
  dict["decoder.weight"] = zeros({2});
  dict["extra"] = zeros({1});
  dict["encoder.layers.0.weight"] = zeros({4, 3});
  dict["encoder.scale"] = zeros({});
  const nn::StateDict before = b.state_dict();
  std::vector<std::vector<double>> values;
  for (const auto& [name, tensor] : before) values.push_back(tensor.to_vector<double>());

  const std::string m = message_of<nn::StateDictError>([&] { b.load_state_dict(dict); });
  INFO(m);
  CHECK(m.starts_with("Net.load_state_dict: "));
  CHECK(contains(m, "2 missing key(s): head.bias, encoder.mask"));
  CHECK(contains(m, "2 unexpected key(s): decoder.weight, extra"));
  CHECK(contains(m, "2 shape mismatch(es)"));
  CHECK(contains(m, "encoder.layers.0.weight: state dict [4, 3], model [3, 3]"));
  CHECK(contains(m, "encoder.scale: state dict [], model [3]"));
  CHECK_THROWS_AS(b.load_state_dict(dict), Error);

  size_t i = 0;
  for (const auto& [name, tensor] : b.state_dict()) CHECK(tensor.to_vector<double>() == values[i++]);
}

TEST_CASE("module: a key problem lists the first eight names and counts the rest") {
  std::vector<std::string> missing;
  for (int i = 0; i < 89940; ++i) missing.push_back(fmt::format("layers.{}.weight", i));
  const std::vector<std::string> problems = nn::describe_key_problems(missing, {}, {}, true, "mismatch(es)");
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "89940 missing key(s): layers.0.weight, layers.1.weight, layers.2.weight, layers.3.weight, "
                       "layers.4.weight, layers.5.weight, layers.6.weight, layers.7.weight, ... and 89932 more");
}

TEST_CASE("module: a non-strict load skips missing and unexpected keys but not shape mismatches") {
  Net a, b;
  nn::StateDict dict{{"head.weight", a.head().weight().detach()}, {"unknown", zeros({5})}};
  b.load_state_dict(dict, false);
  CHECK(testing::max_abs_difference(a.head().weight(), b.head().weight()) == 0);
  CHECK(testing::max_abs_difference(a.head().bias(), b.head().bias()) == 0);  // both zeros_
  dict["encoder.scale"] = zeros({7});
  CHECK(contains(message_of<nn::StateDictError>([&] { b.load_state_dict(dict, false); }),
                 "encoder.scale: state dict [7], model [3]"));
}

TEST_CASE("module: to(f64) converts every handle in place, then the module gradchecks in f64") {
  Net net;
  const Tensor held = net.head().weight();  // a handle taken before the conversion
  const std::vector<double> before = held.to_vector<double>();
  net.to(DType::f64);
  for (const Tensor& p : net.parameters()) {
    CHECK(p.dtype() == DType::f64);
    CHECK(p.is_contiguous());
    CHECK(p.requires_grad());
  }
  CHECK(held.dtype() == DType::f64);
  CHECK(held.to_vector<double>() == before);  // f32 → f64 is exact
  for (const auto& [name, buffer] : net.named_buffers())
    CHECK(buffer.dtype() == (name == "encoder.mask" ? DType::boolean : DType::f64));

  const Tensor x = randn({4, 3}, default_generator(), DType::f64);
  CHECK(net.forward(x).dtype() == DType::f64);

  // Gradcheck over the parameters themselves: f64 leaves that require grad are perturbed and differentiated
  // in place, so the module's own forward sees them.
  const GradcheckReport report = gradcheck([&](const std::vector<Tensor>&) { return net.forward(x); }, net.parameters());
  CHECK_MESSAGE(report.passed, report.failure);
  CHECK(net.parameters()[0].is_leaf());
}

TEST_CASE("module: to() converts an existing gradient too") {
  Affine layer(2, 2);
  sum(layer.forward(ones({1, 2}))).backward();
  layer.to(DType::f64);
  CHECK(layer.weight().grad().dtype() == DType::f64);
  CHECK(layer.weight().grad().shape() == Shape{2, 2});
}

TEST_CASE("module: forward of the converted module has the module's gradient") {
  Net net;
  net.to(DType::f64);
  sum(net.forward(ones({2, 3}, DType::f64))).backward();
  for (const Tensor& p : net.parameters()) {
    REQUIRE(p.grad().defined());
    CHECK(p.grad().dtype() == DType::f64);
  }
  net.zero_grad();
  for (const Tensor& p : net.parameters()) CHECK(!p.grad().defined());
}

TEST_CASE("module: train and eval reach every descendant") {
  Net net;
  CHECK(net.is_training());
  net.eval();
  for (const auto& [name, module] : net.named_modules()) CHECK(!module->is_training());
  net.encoder().train();
  CHECK(!net.is_training());
  CHECK(net.encoder().layers()[0]->is_training());
  CHECK(!net.head().is_training());
  net.train();
  for (const auto& [name, module] : net.named_modules()) CHECK(module->is_training());
}

TEST_CASE("module: parameter_count and summary") {
  Net net(3, 2);
  // layers: 2 × (3·3 + 3) = 24, scale 3, head 3·1 + 1 = 4.
  CHECK(net.parameter_count() == 31);
  const std::string s = net.summary();
  CHECK(s.starts_with("Net\n"));
  CHECK(contains(s, "  (encoder): Encoder  [3 own parameters]\n"));
  CHECK(contains(s, "    (layers): ModuleList\n"));
  CHECK(contains(s, "      (1): Affine  [12 own parameters]\n"));
  CHECK(contains(s, "        weight: [3, 3] f32\n"));
  CHECK(contains(s, "    mask: [3] bool (buffer)\n"));
  CHECK(contains(s, "  (head): Affine  [4 own parameters]\n"));
  CHECK(contains(s, "Total parameters: 31\n"));
}

TEST_CASE("init: fans follow torch.nn.init._calculate_fan_in_and_fan_out") {
  const nn::init::Fans linear = nn::init::calculate_fan_in_and_fan_out(empty({5, 3}));
  CHECK(linear.fan_in == 3);
  CHECK(linear.fan_out == 5);
  const nn::init::Fans conv = nn::init::calculate_fan_in_and_fan_out(empty({4, 2, 3, 3}));
  CHECK(conv.fan_in == 18);
  CHECK(conv.fan_out == 36);
  CHECK(message_of<ValueError>([] { nn::init::xavier_uniform_(empty({4})); }) ==
        "init: fan in and fan out need a tensor of at least 2 dimensions, got shape [4]");
}

namespace {

struct Stats {
  double min, max, mean, stddev;
};

Stats stats_of(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  Stats s{v[0], v[0], 0, 0};
  for (double x : v) {
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
    s.mean += x;
  }
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = std::sqrt(s.stddev / static_cast<double>(v.size()));
  return s;
}

}  // namespace

TEST_CASE("init: bounds and statistics of each initialiser") {
  Generator gen(7);
  // 200 × 100 = 20,000 draws: the sample mean is within 4 standard errors with overwhelming probability.
  const Tensor t = empty({200, 100});

  Stats s = stats_of(nn::init::uniform_(t, -2, 3, gen));
  CHECK(s.min >= -2);
  CHECK(s.max <= 3);  // [-2, 3) in double can round up to 3 in f32
  CHECK(s.mean == doctest::Approx(0.5).epsilon(0.03));
  CHECK(s.stddev == doctest::Approx(5 / std::sqrt(12.0)).epsilon(0.02));

  s = stats_of(nn::init::normal_(t, 1.5, 0.5, gen));
  CHECK(s.mean == doctest::Approx(1.5).epsilon(0.01));
  CHECK(s.stddev == doctest::Approx(0.5).epsilon(0.02));

  // xavier_uniform_: a = gain · sqrt(6 / (100 + 200)) = 2 · 0.1414 = 0.2828.
  const double xavier_bound = 2 * std::sqrt(6.0 / 300);
  s = stats_of(nn::init::xavier_uniform_(t, 2.0, gen));
  CHECK(s.min >= -xavier_bound);
  CHECK(s.max <= xavier_bound);
  CHECK(s.max > 0.99 * xavier_bound);
  CHECK(s.stddev == doctest::Approx(xavier_bound / std::sqrt(3.0)).epsilon(0.02));

  s = stats_of(nn::init::xavier_normal_(t, 1.0, gen));
  CHECK(s.stddev == doctest::Approx(std::sqrt(2.0 / 300)).epsilon(0.02));

  // kaiming_uniform_ with a = sqrt(5): gain = sqrt(2 / 6), bound = gain · sqrt(3 / fan_in) = 1 / sqrt(100).
  s = stats_of(nn::init::kaiming_uniform_(t, std::sqrt(5.0), nn::init::FanMode::fan_in, gen));
  CHECK(s.min >= -0.1);
  CHECK(s.max <= 0.1);
  CHECK(s.max > 0.099);
  // fan_out = 200, a = 0: bound = sqrt(2) · sqrt(3 / 200).
  s = stats_of(nn::init::kaiming_uniform_(t, 0.0, nn::init::FanMode::fan_out, gen));
  CHECK(s.max <= std::sqrt(6.0 / 200));
  CHECK(s.max > 0.99 * std::sqrt(6.0 / 200));
  s = stats_of(nn::init::kaiming_normal_(t, 0.0, nn::init::FanMode::fan_in, gen));
  CHECK(s.stddev == doctest::Approx(std::sqrt(2.0 / 100)).epsilon(0.02));

  CHECK(stats_of(nn::init::constant_(t, 0.25)).min == 0.25);
  CHECK(stats_of(nn::init::zeros_(t)).max == 0);
  CHECK(stats_of(nn::init::ones_(t)).min == 1);
}

TEST_CASE("init: the same seed gives the same values, contiguous or not, f32 or f64") {
  Generator g1(3), g2(3), g3(3);
  const Tensor dense = empty({4, 5}, DType::f64);
  const Tensor strided = noncontiguous_copy(zeros({4, 5}, DType::f64));
  const Tensor single = empty({4, 5});
  nn::init::normal_(dense, 0, 1, g1);
  nn::init::normal_(strided, 0, 1, g2);
  nn::init::normal_(single, 0, 1, g3);
  CHECK(testing::max_abs_difference(dense, strided) == 0);
  CHECK(testing::max_abs_difference(dense, single) < 1e-6);
  CHECK(message_of<DTypeError>([] { nn::init::ones_(arange(3)); }) == "constant_: expects f32 or f64, got i64");
  CHECK(message_of<ValueError>([] { nn::init::normal_(empty({2}), 0, -1); }) ==
        "normal_: stddev -1 must be non-negative");
}

TEST_CASE("init: a parameter initialised in place records no graph") {
  Affine layer(3, 2);
  nn::init::normal_(layer.weight());
  CHECK(layer.weight().is_leaf());
  CHECK(layer.weight().requires_grad());
}

TEST_CASE("module: forward hooks see inputs and output, replace them, and go on remove() only") {
  nn::Linear layer(3, 2);
  const Tensor x = ones({4, 3});
  std::vector<std::string> calls;
  nn::RemovableHandle pre = layer.register_forward_pre_hook([&](const nn::Module& m, const std::vector<Tensor>& in) {
    calls.push_back(fmt::format("pre {} {}", m.type_name(), shape_str(in[0].shape())));
    return std::optional<std::vector<Tensor>>{{in[0] * 2.0}};  // the forward sees 2x
  });
  nn::RemovableHandle post = layer.register_forward_hook(
      [&](const nn::Module&, const std::vector<Tensor>& in, const Tensor& out) {
        calls.push_back(fmt::format("post {} -> {}", in[0].at({0, 0}), shape_str(out.shape())));
        return std::optional<Tensor>{};
      });
  const Tensor y = layer.forward(x);
  CHECK(calls == std::vector<std::string>{"pre Linear [4, 3]", "post 2 -> [4, 2]"});
  CHECK(y.to_vector<float>() == linear(x * 2.0, layer.weight(), layer.bias()).to_vector<float>());

  // A handle that goes out of scope keeps its hook (PyTorch's RemovableHandle does the same).
  {
    nn::RemovableHandle dropped = layer.register_forward_hook(
        [](const nn::Module&, const std::vector<Tensor>&, const Tensor& out) { return std::optional<Tensor>(out + 1.0); });
  }
  CHECK(layer.forward(x).to_vector<float>() == (y + 1.0).to_vector<float>());
  pre.remove();
  post.remove();
  pre.remove();  // a second remove() does nothing
  calls.clear();
  layer.forward(x);
  CHECK(calls.empty());

  // Hooks run in registration order, each on the previous one's output; a hook may remove itself while it runs.
  nn::Linear second(3, 2);
  nn::RemovableHandle once;
  once = second.register_forward_hook([&](const nn::Module&, const std::vector<Tensor>&, const Tensor& out) {
    once.remove();
    return std::optional<Tensor>(out * 0.0);
  });
  second.register_forward_hook(
      [](const nn::Module&, const std::vector<Tensor>&, const Tensor& out) { return std::optional<Tensor>(out + 3.0); });
  CHECK(second.forward(x).to_vector<float>() == std::vector<float>(8, 3.0f));
  CHECK(second.forward(x).to_vector<float>() == (linear(x, second.weight(), second.bias()) + 3.0).to_vector<float>());

  // A handle outliving its module is harmless.
  nn::RemovableHandle orphan;
  {
    nn::Linear gone(3, 2);
    orphan = gone.register_forward_hook(
        [](const nn::Module&, const std::vector<Tensor>&, const Tensor&) { return std::optional<Tensor>{}; });
  }
  orphan.remove();
}

TEST_CASE("module: forward hooks on composite layers, and a pre-hook returning the wrong count is an error") {
  nn::TransformerEncoderLayer layer(nn::TransformerLayerOptions{.d_model = 8, .nhead = 2, .dim_feedforward = 16,
                                                                .dropout = 0.0});
  const Tensor src = randn({2, 3, 8}), padding = from_vector<bool>({false, false, true, false, false, false}, {2, 3});
  size_t seen_inputs = 0;
  layer.register_forward_hook([&](const nn::Module&, const std::vector<Tensor>& in, const Tensor&) {
    seen_inputs = in.size();  // src, src_key_padding_mask, src_mask
    CHECK(in[1].is_same(padding));
    CHECK_FALSE(in[2].defined());
    return std::optional<Tensor>{};
  });
  layer.forward(src, padding);
  CHECK(seen_inputs == 3);
  layer.register_forward_pre_hook(
      [](const nn::Module&, const std::vector<Tensor>& in) { return std::optional<std::vector<Tensor>>{{in[0]}}; });
  CHECK(message_of<ValueError>([&] { layer.forward(src); }) ==
        "TransformerEncoderLayer forward pre-hook: returned 1 tensors for a forward that takes 3");
  CHECK(message_of<ValueError>([&] { layer.register_forward_hook(nullptr); }) ==
        "TransformerEncoderLayer.register_forward_hook: the hook is empty");
}

TEST_CASE("module: requires_grad_ freezes and unfreezes a module and everything below it") {
  Net net(3, 2);
  net.encoder().requires_grad_(false);
  for (const auto& [name, p] : net.named_parameters()) {
    CAPTURE(name);
    CHECK(p.requires_grad() == !name.starts_with("encoder."));
  }
  CHECK(&net.requires_grad_(true) == &net);
  for (const Tensor& p : net.parameters()) CHECK(p.requires_grad());
}

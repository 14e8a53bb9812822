// nn::gradcheck_module (nn/gradcheck.h): every parameter by default, by dotted name in failures, contiguous and
// non-contiguous inputs, dtype conversion there and back, the errors and hints it gives.
#include "nn/gradcheck.h"
#include "nn/layers.h"
#include "ops/kernels.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// y = x · scale + shift with a backward that forgets shift's gradient factor of two: shift is used twice.
Tensor scale_shift_wrong(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = x * scale + shift + shift;
  }
  return record(out, "scale_shift_wrong", {x, scale, shift},
                [x = x.detach(), scale = scale.detach()](const Tensor& dout, InputGrads& g) {
                  if (g.needs(0)) g[0] = dout * scale;
                  if (g.needs(1)) g[1] = kernels::sum_to(dout * x, scale.shape());
                  if (g.needs(2)) g[2] = kernels::sum_to(dout, {scale.size(0)});  // should be 2 · dout
                });
}

class ScaleShift : public nn::Module {
 public:
  explicit ScaleShift(int64_t dim, bool wrong = false) : wrong_(wrong) {
    scale_ = register_parameter("scale", ones({dim}));
    shift_ = register_parameter("shift", zeros({dim}));
    unused_ = register_parameter("unused", zeros({dim}));
  }
  std::string type_name() const override { return "ScaleShift"; }
  Tensor forward(const Tensor& x) const { return wrong_ ? scale_shift_wrong(x, scale_, shift_) : x * scale_ + shift_; }

 private:
  bool wrong_;
  Tensor scale_, shift_, unused_;
};

// Reads its input's storage as if it were contiguous: right for contiguous inputs only.
Tensor ignore_strides(const Tensor& x) {
  Tensor out = empty(x.shape(), x.dtype());
  std::memcpy(out.raw_data(), reinterpret_cast<const char*>(x.storage()->data()) + x.offset() * 8,
              static_cast<size_t>(x.numel()) * 8);
  return record(out, "ignore_strides", {x}, [](const Tensor& dout, InputGrads& g) { g[0] = dout; });
}

class StrideBlind : public nn::Module {
 public:
  StrideBlind() { weight_ = register_parameter("weight", ones({4})); }
  std::string type_name() const override { return "StrideBlind"; }
  Tensor forward(const Tensor& x) const { return ignore_strides(x) * weight_; }

 private:
  Tensor weight_;
};

nn::ModuleGradcheckReport check(nn::Module& m, const std::function<Tensor(const Tensor&)>& forward, const Tensor& x,
                                nn::ModuleGradcheckOptions options = {}) {
  return nn::gradcheck_module(m, [&](const std::vector<Tensor>& in) { return forward(in[0]); }, {x}, options);
}

}  // namespace

TEST_CASE("gradcheck_module: a correct layer passes, its parameters converted to f64 and back") {
  nn::Linear layer(3, 2);
  const Tensor before = layer.weight().clone();
  const nn::ModuleGradcheckReport report =
      check(layer, [&](const Tensor& x) { return layer.forward(x); }, randn({4, 3}));
  CHECK(report.passed);
  CHECK(report.failure.empty());
  CHECK(report.parameters == std::vector<std::string>{"weight", "bias"});
  REQUIRE(report.noncontiguous.has_value());
  CHECK(report.noncontiguous->passed);
  CHECK(report.unused_parameters.empty());
  CHECK(layer.weight().dtype() == DType::f32);
  CHECK(layer.weight().to_vector<float>() == before.to_vector<float>());
}

TEST_CASE("gradcheck_module: a wrong parameter gradient fails, named, and an unread parameter is listed") {
  ScaleShift wrong(3, true);
  const nn::ModuleGradcheckReport report =
      check(wrong, [&](const Tensor& x) { return wrong.forward(x); }, randn({2, 3}));
  CHECK_FALSE(report.passed);
  INFO(report.failure);
  CHECK(report.failure.starts_with("shift["));
  CHECK(contains(report.failure, "analytic"));
  CHECK(contains(report.failure, "numeric"));
  CHECK(report.unused_parameters == std::vector<std::string>{"unused"});

  // Checking only some parameters by name; names it does not have, or frozen ones, are errors.
  nn::ModuleGradcheckOptions only_scale;
  only_scale.parameters = {"scale"};
  CHECK(check(wrong, [&](const Tensor& x) { return wrong.forward(x); }, randn({2, 3}), only_scale).passed);
  only_scale.parameters = {"bias"};
  CHECK(message_of<ValueError>([&] { check(wrong, [&](const Tensor& x) { return wrong.forward(x); }, randn({2, 3}),
                                           only_scale); }) ==
        "gradcheck_module(ScaleShift): no parameter named 'bias' (the module has: scale, shift, unused)");
  wrong.requires_grad_(false);
  only_scale.parameters = {"scale"};
  CHECK(contains(message_of<ValueError>([&] {
                   check(wrong, [&](const Tensor& x) { return wrong.forward(x); }, randn({2, 3}), only_scale);
                 }),
                 "parameter 'scale' does not require grad"));
}

TEST_CASE("gradcheck_module: an op that ignores strides fails the non-contiguous pass only") {
  StrideBlind blind;
  const nn::ModuleGradcheckReport report =
      check(blind, [&](const Tensor& x) { return blind.forward(x); }, randn({3, 4}));
  CHECK(report.contiguous.passed);
  CHECK_FALSE(report.passed);
  CHECK(report.failure.starts_with("non-contiguous inputs: "));
}

TEST_CASE("gradcheck_module: a forward that mixes dtypes gets the hint; gradcheck on f32 parameters too") {
  nn::Linear layer(3, 2);
  const std::string m = message_of<DTypeError>([&] {
    check(layer, [&](const Tensor& x) { return layer.forward(x) + ones({2}); }, randn({4, 3}));
  });
  CHECK(m.starts_with("gradcheck_module(Linear): the forward mixes dtypes after the module and its inputs were "
                      "converted to f64: "));
  CHECK(contains(m, "register it so module.to(DType::f64) converts it"));
  CHECK(layer.weight().dtype() == DType::f32);  // converted back although the check threw

  // Plain gradcheck given a module's f32 parameter says what to do.
  CHECK(message_of<DTypeError>([&] {
          gradcheck([&](const std::vector<Tensor>& x) { return layer.forward(x[0]); }, {randn({4, 3}), layer.weight()});
        }) == "gradcheck: input 1 is the parameter 'weight' in f32: call module.to(DType::f64) first (a module's "
              "parameters are perturbed in place), or use nn::gradcheck_module, which converts the module itself");
}

TEST_CASE("gradcheck_module: dropout in training mode repeats its masks, so the check passes") {
  nn::Dropout dropout(0.5);
  nn::Linear layer(4, 4);
  const nn::ModuleGradcheckReport report =
      check(layer, [&](const Tensor& x) { return dropout.forward(layer.forward(x)); }, randn({3, 4}));
  CHECK(report.passed);
}

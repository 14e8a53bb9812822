// custom_layer: a user's own op and layer, as the README's second quickstart and docs/writing-a-layer.md print
// this file: a new op with its own backward (softsign) and a norm made of ops (RMSNorm), gradient-checked with
// gradcheck and nn::gradcheck_module. Uses the installed umbrella header only: the clean-room suite builds it
// outside the tree with `g++ -std=c++20 custom_layer.cpp $(pkg-config --cflags --libs gradformer)`. Exits 0 when
// both checks pass.
#include <gradformer/gradformer.h>

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <cmath>

using namespace gradformer;

// A new op: softsign(x) = x / (1 + |x|). The forward computes, here from existing ops with recording off (a
// kernel of one's own would do too); record() attaches the backward, which receives dL/dy and writes
// dL/dx = dL/dy / (1 + |x|)². saved(x) keeps x for it (g.saved(0)), so that an in-place write to x before
// backward is refused; the formula is ops, so under create_graph the backward records and differentiates again.
Tensor softsign(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard forward_only;
    out = x / (abs(x) + 1.0);
  }
  return record(out, "softsign", {saved(x)}, [](const Tensor& dout, InputGrads& g) {
    const Tensor denominator = abs(g.saved(0)) + 1.0;
    g[0] = dout / (denominator * denominator);
  });
}

// A layer made of ops, so its backward comes from theirs: x / sqrt(mean(x², last axis) + eps) · weight (Zhang &
// Sennrich 2019). Deriving from nn::UnaryModule lets it stand in for a Transformer's LayerNorm (as
// examples/custom_transformer.cpp shows with another norm); running the body through with_forward_hooks lets
// forward hooks see it, as they see the library's layers.
class RMSNorm : public nn::UnaryModule {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6) : eps_(eps) { weight_ = register_parameter("weight", ones({dim})); }
  std::string type_name() const override { return "RMSNorm"; }
  Tensor forward(const Tensor& x) const override {  // (..., D) -> (..., D)
    return with_forward_hooks(
        [this](const Tensor& input) { return input * rsqrt(mean(input * input, {-1}, true) + eps_) * weight_; }, x);
  }

 private:
  double eps_;
  Tensor weight_;
};

bool report(const std::string& what, bool passed, const std::string& failure) {
  fmt::print("{}: {}\n", what, passed ? "pass" : "FAIL " + failure);
  return passed;
}

int main() {
  Generator gen(0);
  bool ok = true;

  // The op: gradcheck compares its backward with central differences in f64.
  const GradcheckReport op = gradcheck([](const std::vector<Tensor>& x) { return softsign(x[0]); },
                                       {randn({3, 4}, gen, DType::f64)});
  ok &= report("softsign gradcheck", op.passed, op.failure);

  // The layer: gradcheck_module converts module and inputs to f64 (and the module back afterwards), checks the
  // input and every parameter by its dotted name, with contiguous and non-contiguous inputs.
  RMSNorm norm(8);
  nn::init::normal_(norm.parameters()[0], 1.0, 0.1, gen);
  const nn::ModuleGradcheckReport layer = nn::gradcheck_module(
      norm, [&norm](const std::vector<Tensor>& x) { return norm.forward(x[0]); }, {randn({2, 3, 8}, gen)});
  ok &= report(fmt::format("RMSNorm gradcheck_module ({})", fmt::join(layer.parameters, ", ")), layer.passed,
               layer.failure);
  fmt::print("{}", norm.summary());
  return ok ? 0 : 1;
}

// custom_layer: how to write a new layer from existing ops (RMSNorm) and a new op with its own backward
// (swish), and gradient-check both in f64. Build: part of the meson build (build/examples/custom-layer).
#include "autograd/gradcheck.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "ops/ops.h"

#include <fmt/core.h>

#include <cmath>

using namespace gradformer;

// A new op: swish(x) = x · sigmoid(x). Forward computes, here from existing ops with recording off (a kernel
// of one's own would do too); record() attaches the backward, which gets dL/dy and writes
// dL/dx = dL/dy · (s + x · s · (1 - s)), s = sigmoid(x). It captures x detached, never the output.
Tensor swish(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard forward_only;
    out = x * sigmoid(x);
  }
  return record(out, "swish", {x}, [x = x.detach()](const Tensor& dout, InputGrads& g) {
    const Tensor s = sigmoid(x);
    g[0] = dout * (s + x * s * (1.0 - s));
  });
}

// A new layer from existing ops: y = x / sqrt(mean(x², last axis) + eps) · weight (Zhang & Sennrich 2019).
// Its backward comes from the ops it is made of.
class RMSNorm : public nn::Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6) : eps_(eps) { weight_ = register_parameter("weight", ones({dim})); }
  std::string type_name() const override { return "RMSNorm"; }
  Tensor forward(const Tensor& x) const {  // (..., D) -> (..., D)
    return x * rsqrt(mean(x * x, {-1}, true) + eps_) * weight_;
  }

 private:
  double eps_;
  Tensor weight_;
};

int main() {
  Generator gen(0);
  // The op: gradcheck compares backward with central differences in f64.
  const GradcheckReport op = gradcheck([](const std::vector<Tensor>& x) { return swish(x[0]); },
                                       {randn({3, 4}, gen, DType::f64)});
  fmt::print("swish   gradcheck: {} (max abs error {:.2e})\n", op.passed ? "pass" : "FAIL " + op.failure,
             op.max_abs_error);

  // The layer: move it to f64, then pass its parameters along with the input; gradcheck perturbs them in place.
  RMSNorm norm(4);
  norm.to(DType::f64);
  nn::init::normal_(norm.parameters()[0], 1.0, 0.1, gen);
  std::vector<Tensor> inputs{randn({2, 3, 4}, gen, DType::f64)};
  for (const Tensor& p : norm.parameters()) inputs.push_back(p);
  const GradcheckReport layer =
      gradcheck([&norm](const std::vector<Tensor>& x) { return norm.forward(x[0]); }, inputs);
  fmt::print("RMSNorm gradcheck: {} (max abs error {:.2e})\n", layer.passed ? "pass" : "FAIL " + layer.failure,
             layer.max_abs_error);
  fmt::print("{}", norm.summary());
  return op.passed && layer.passed ? 0 : 1;
}

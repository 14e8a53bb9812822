// Helpers of the suites that hold an op to a reference (its composition from basic ops, or the same op on the
// reference GEMM) in value and gradient, and of those that need a named parameter.
#pragma once

#include "nn/layers.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <vector>

namespace gradformer::testing {

// Runs fn on fresh leaves holding the values of `inputs` (keeping their strides: a transposed view stays one),
// backpropagates sum(out * weights) and returns the output followed by every floating input's gradient.
inline std::vector<Tensor> value_and_grads(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                           const std::vector<Tensor>& inputs, const Tensor& weights) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) {
    Tensor leaf = t.detach();
    if (is_floating(t.dtype())) leaf.requires_grad_();
    leaves.push_back(leaf);
  }
  const Tensor out = fn(leaves);
  sum(out * weights).backward();
  std::vector<Tensor> result{out.detach()};
  for (const Tensor& t : leaves)
    if (t.requires_grad()) result.push_back(t.grad());
  return result;
}

// Each tensor of `got` has the shape of its counterpart and lies within `tolerance` of it, element by element.
inline void check_close(const std::vector<Tensor>& got, const std::vector<Tensor>& expected, double tolerance) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    REQUIRE(got[i].shape() == expected[i].shape());
    CHECK(max_abs_difference(got[i], expected[i]) <= tolerance);
  }
}

// A Linear(3, 2)'s weight in f64, the Linear inside a ModuleList inside a ModuleList: a parameter whose dotted
// name, "0.0.weight", gradient-check and anomaly messages must show. The tensor outlives the modules.
inline Tensor nested_parameter() {
  nn::ModuleList model;
  model.push_back(std::make_shared<nn::ModuleList>())->push_back(std::make_shared<nn::Linear>(3, 2));
  model.to(DType::f64);
  return model.named_parameters().front().second;
}

}  // namespace gradformer::testing

// Numeric gradient checking: compares what backward() computes with central differences, in f64.
//
// For a function f of tensors, gradcheck draws a random R of f's output shape and checks the vector-Jacobian
// product d<f(x), R>/dx from backward against (<f(x + eps e_i), R> - <f(x - eps e_i), R>) / 2 eps for every
// element i of every input, so every output element counts. It works on a single op, a layer or a whole model:
// fn is any function of tensors that is deterministic across calls (seed any dropout inside fn).
#pragma once

#include "autograd/tensor.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace gradformer {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;  // an element passes when |analytic - numeric| <= atol + rtol * |numeric|, as PyTorch
  double rtol = 1e-3;
  uint64_t seed = 0;   // draws R
  // Also check that a second backward over the retained graph gives bit-identical gradients, and that an
  // input left without requires_grad gets none while the others keep theirs.
  bool check_repeatability = true;
};

struct GradcheckReport {
  bool passed = true;
  std::string failure;           // empty when passed; else what went wrong, with the worst element
  double max_abs_error = 0.0;    // over all checked elements
  double max_rel_error = 0.0;    // |analytic - numeric| / max(|numeric|, atol)
  // The element with the largest violation of the tolerance.
  size_t worst_input = 0;
  std::string worst_name;  // the worst input's name when it is a module's parameter, else empty
  Shape worst_index;
  double worst_analytic = 0.0;
  double worst_numeric = 0.0;
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// Floating inputs are converted to f64 (an input that already is f64 keeps its strides, so non-contiguous
// inputs stay non-contiguous) and made to require grad; i64 and bool inputs (indices, masks) pass unchanged.
// An f64 leaf that already requires grad (a module's parameter, after Module::to(DType::f64)) is used itself,
// so fn may read it from the module: this is how whole layers and models are checked. A failure names such a
// parameter and the element (`encoder.layers.0.self_attn.in_proj_weight[3, 7]: analytic 0.512, numeric
// 0.498`); other inputs by position (`input 1 [12, 4] at index [3, 1]: ...`).
GradcheckReport gradcheck(const TensorFunction& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

// Second-order check, as torch.autograd.gradgradcheck: draws random grad_outputs v of fn's output shape (f64,
// themselves inputs of the check) and gradient-checks the first-order gradients g_i = d<fn(x), v>/dx_i, computed
// with create_graph, as functions of x and v: central differences of the gradients against their own backward.
// It passes only if every backward fn's graph records is itself recorded and right. A failure names the input or
// parameter and the index as gradcheck's do; input number len(inputs) is v.
GradcheckReport gradgradcheck(const TensorFunction& fn, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

// The same values laid out in a storage twice as wide along the last dimension, every other element used:
// a non-contiguous input for checking that an op honours strides. Rank-0 and empty tensors come back as they are.
Tensor noncontiguous_copy(const Tensor& t);

}  // namespace gradformer

// Gradient checking a whole module: gradcheck, or gradgradcheck with order 2 (autograd/gradcheck.h), over a layer's inputs and every one of its
// parameters, in f64, with the inputs as given and as non-contiguous copies. This is what the layer table's test
// and gradformer-gradcheck run for the library's layers, and what a user's own layer is checked with:
//   RMSNorm norm(8);
//   const ModuleGradcheckReport report =
//       nn::gradcheck_module(norm, [&](const std::vector<Tensor>& x) { return norm.forward(x[0]); },
//                            {randn({2, 3, 8}, gen)});
//   if (!report.passed) fmt::print("{}\n", report.failure);  // "weight[5]: analytic 0.91, numeric 0.87"
// Not here: the finite-difference machinery itself (autograd/gradcheck.h), the layer table (nn/layer_table.h).
#pragma once

#include "autograd/gradcheck.h"
#include "nn/module.h"

#include <optional>
#include <string>
#include <vector>

namespace gradformer::nn {

struct ModuleGradcheckOptions {
  GradcheckOptions gradcheck{};  // eps, atol, rtol, the seed of R, the repeatability checks
  // Dotted names (as named_parameters() gives them) of the parameters to check; empty: every parameter that
  // requires grad, so that none is left out by forgetting it.
  std::vector<std::string> parameters{};
  // Also check with every input of one or more dimensions (ids and masks too) replaced by a non-contiguous copy.
  bool noncontiguous = true;
  // Seeds the generator every evaluation of fn draws from (a GeneratorGuard over a fresh Generator(seed)), so
  // dropout in training mode drops the same elements on every call and the function stays differentiable.
  uint64_t dropout_seed = 0;
  // 1: gradcheck, first derivatives; 2: gradgradcheck, the second derivatives through a create_graph backward
  // (autograd/gradcheck.h), for a module whose ops all have recorded backwards (docs/higher-order.md).
  int order = 1;
};

struct ModuleGradcheckReport {
  bool passed = true;
  // Empty when passed; else which pass failed and the worst element, naming a parameter by its dotted name
  // ("non-contiguous inputs: norm1.weight[5]: analytic 0.91, numeric 0.87") and an input by position.
  std::string failure;
  GradcheckReport contiguous;                   // the inputs as given (converted to f64)
  std::optional<GradcheckReport> noncontiguous;  // when asked for and some input has a dimension
  std::vector<std::string> parameters;          // the dotted names that were checked
  // Checked parameters whose gradient stayed undefined: the function never reads them. Not a failure (their
  // numeric gradient is zero as well), but usually a forward that forgets a weight.
  std::vector<std::string> unused_parameters;
};

// Converts the module's floating parameters and buffers to f64 for the check and back to their dtype after it
// (their values unchanged; their gradients are dropped), and converts the floating inputs to f64; i64 and bool
// inputs (ids, masks) pass unchanged. fn receives the converted inputs only: it reads the parameters from the
// module, which the check perturbs in place. Throws ValueError for a name in options.parameters that the module
// does not have or that does not require grad, and DTypeError with a hint when the forward mixes dtypes (a tensor
// it makes or keeps outside the module's registered parameters and buffers stays f32).
ModuleGradcheckReport gradcheck_module(Module& module, const TensorFunction& fn, const std::vector<Tensor>& inputs,
                                       const ModuleGradcheckOptions& options = {});

}  // namespace gradformer::nn

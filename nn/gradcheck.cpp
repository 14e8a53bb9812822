// gradcheck_module: picks the parameters, converts module and inputs to f64 and back, and runs gradcheck once
// with the inputs as given and once with non-contiguous copies.
#include "nn/gradcheck.h"

#include "autograd/engine.h"
#include "ops/ops.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace gradformer::nn {
namespace {

// The module in f64 for as long as this lives; afterwards back in the dtype it had (that of its first floating
// parameter or buffer), even when the check throws.
class F64Scope {
 public:
  explicit F64Scope(Module& module) : module_(module) {
    for (const auto& [name, tensor] : module.state_dict())
      if (is_floating(tensor.dtype())) {
        original_ = tensor.dtype();
        break;
      }
    module_.to(DType::f64);
  }
  ~F64Scope() {
    module_.zero_grad();
    if (original_ != DType::f64) module_.to(original_);
  }
  F64Scope(const F64Scope&) = delete;
  F64Scope& operator=(const F64Scope&) = delete;

 private:
  Module& module_;
  DType original_ = DType::f64;
};

std::vector<std::pair<std::string, Tensor>> chosen_parameters(const Module& module,
                                                              const std::vector<std::string>& wanted) {
  const std::vector<std::pair<std::string, Tensor>> all = module.named_parameters();
  std::vector<std::pair<std::string, Tensor>> chosen;
  if (wanted.empty()) {
    for (const auto& entry : all)
      if (entry.second.requires_grad()) chosen.push_back(entry);
    return chosen;
  }
  std::vector<std::string> known;
  for (const auto& entry : all) known.push_back(entry.first);
  for (const std::string& name : wanted) {
    const auto it = std::find_if(all.begin(), all.end(), [&](const auto& entry) { return entry.first == name; });
    if (it == all.end())
      fail<ValueError>(fmt::format("gradcheck_module({})", module.type_name()),
                       "no parameter named '{}' (the module has: {})", name, fmt::join(known, ", "));
    if (!it->second.requires_grad())
      fail<ValueError>(fmt::format("gradcheck_module({})", module.type_name()),
                       "parameter '{}' does not require grad (frozen with requires_grad_(false)?)", name);
    chosen.push_back(*it);
  }
  return chosen;
}

Tensor to_f64(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == DType::f64) return t;
  return t.detach().to(DType::f64);
}

}  // namespace

ModuleGradcheckReport gradcheck_module(Module& module, const TensorFunction& fn, const std::vector<Tensor>& inputs,
                                       const ModuleGradcheckOptions& options) {
  const std::string where = fmt::format("gradcheck_module({})", module.type_name());
  const std::vector<std::pair<std::string, Tensor>> parameters = chosen_parameters(module, options.parameters);
  const bool any_floating_input = std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) {
    return t.defined() && is_floating(t.dtype());
  });
  if (parameters.empty() && !any_floating_input)
    fail<ValueError>(where, "nothing to check: no parameter requires grad and no input is floating");

  F64Scope f64(module);
  const size_t input_count = inputs.size();
  const TensorFunction forward = [&](const std::vector<Tensor>& x) {
    Generator dropout_generator(options.dropout_seed);
    GeneratorGuard guard(dropout_generator);
    try {
      return fn(std::vector<Tensor>(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(input_count)));
    } catch (const DTypeError& error) {
      fail<DTypeError>(where,
                       "the forward mixes dtypes after the module and its inputs were converted to f64: {}. A tensor "
                       "the forward makes (ones(), a constant) or keeps outside register_parameter/register_buffer "
                       "stays f32: make it in the input's dtype, or register it so module.to(DType::f64) converts it",
                       error.what());
    }
  };

  ModuleGradcheckReport report;
  for (const auto& entry : parameters) report.parameters.push_back(entry.first);
  const auto probes = [&](bool noncontiguous) {
    std::vector<Tensor> x;
    for (const Tensor& t : inputs) x.push_back(noncontiguous ? noncontiguous_copy(to_f64(t)) : to_f64(t));
    for (const auto& entry : parameters) x.push_back(entry.second);
    return x;
  };

  if (options.order != 1 && options.order != 2)
    fail<ValueError>(where, "order is 1 (gradcheck) or 2 (gradgradcheck), not {}", options.order);
  const auto check = options.order == 2 ? gradgradcheck : gradcheck;
  report.contiguous = check(forward, probes(false), options.gradcheck);
  const bool has_dimension = std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) {
    return t.defined() && t.dim() > 0 && t.numel() > 0;
  });
  if (options.noncontiguous && has_dimension)
    report.noncontiguous = check(forward, probes(true), options.gradcheck);
  if (!report.contiguous.passed) {
    report.passed = false;
    report.failure = report.contiguous.failure;
  } else if (report.noncontiguous && !report.noncontiguous->passed) {
    report.passed = false;
    report.failure = "non-contiguous inputs: " + report.noncontiguous->failure;
  }

  // One more backward, with every output element weighted 1, to see which parameters the function reaches.
  for (const auto& entry : parameters) entry.second.zero_grad();
  const Tensor out = forward(probes(false));
  if (out.requires_grad()) out.backward(ones(out.shape(), out.dtype()));
  for (const auto& entry : parameters)
    if (!entry.second.grad().defined()) report.unused_parameters.push_back(entry.first);
  return report;
}

}  // namespace gradformer::nn

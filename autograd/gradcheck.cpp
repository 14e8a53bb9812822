#include "autograd/gradcheck.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"

#include <fmt/format.h>

#include <cmath>

namespace gradformer {
namespace {

// Offset in elements of the flat (row-major) index i of a strided tensor.
int64_t strided_offset(const Tensor& t, int64_t flat) {
  int64_t offset = t.offset();
  for (size_t d = t.shape().size(); d-- > 0;) {
    offset += (flat % t.shape()[d]) * t.strides()[d];
    flat /= t.shape()[d];
  }
  return offset;
}

Shape unravel(const Shape& shape, int64_t flat) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return index;
}

// A function of several outputs, reduced as sum_k <out_k, R_k>: how gradgradcheck checks every first-order
// gradient at once. gradcheck's function is the one-output case.
using TensorsFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

double dot(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double sum = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    const std::vector<double> x = a[k].to_vector<double>(), y = b[k].to_vector<double>();
    for (size_t i = 0; i < x.size(); ++i) sum += x[i] * y[i];
  }
  return sum;
}

std::vector<Tensor> evaluate(const TensorsFunction& fn, const std::vector<Tensor>& inputs, std::string_view when) {
  std::vector<Tensor> outs = fn(inputs);
  for (const Tensor& out : outs)
    if (!out.defined() || !is_floating(out.dtype()))
      fail<DTypeError>("gradcheck", "{}: the function must return an f32 or f64 tensor", when);
  return outs;
}

// Backward of sum_k <out_k, R_k> from outputs that require grad (the others are constants).
void backward_from(const std::vector<Tensor>& outs, const std::vector<Tensor>& seeds, bool retain_graph) {
  Engine::Pass pass;
  pass.retain_graph = retain_graph;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!outs[k].requires_grad()) continue;
    pass.roots.push_back(outs[k]);
    pass.gradients.push_back(seeds[k]);
  }
  if (!pass.roots.empty()) Engine::run(pass);
}

std::vector<Tensor> backward_grads(const TensorsFunction& fn, const std::vector<Tensor>& inputs,
                                   const std::vector<Tensor>& r, bool twice, std::vector<Tensor>* second) {
  for (const Tensor& x : inputs)
    if (x.defined() && x.requires_grad()) x.zero_grad();
  const std::vector<Tensor> outs = evaluate(fn, inputs, "forward");
  std::vector<Tensor> seeds;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (k >= r.size() || outs[k].shape() != r[k].shape())
      fail<ShapeError>("gradcheck", "the function returned shape {} on one call and {} on another",
                       shape_str(outs[k].shape()), k < r.size() ? shape_str(r[k].shape()) : "none");
    seeds.push_back(r[k].to(outs[k].dtype()));
  }
  std::vector<Tensor> grads(inputs.size());
  backward_from(outs, seeds, twice);  // an output no input reaches contributes no gradient
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad() && inputs[i].grad().defined())
      grads[i] = inputs[i].grad().to(DType::f64).contiguous();
  if (twice) {
    for (const Tensor& x : inputs)
      if (x.defined() && x.requires_grad()) x.zero_grad();
    backward_from(outs, seeds, false);
    second->assign(inputs.size(), Tensor());
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && inputs[i].requires_grad() && inputs[i].grad().defined())
        (*second)[i] = inputs[i].grad().to(DType::f64).contiguous();
  }
  return grads;
}

// "input 2", or a parameter's dotted name.
std::string input_label(const std::vector<Tensor>& x, size_t i) {
  return x[i].name().empty() ? fmt::format("input {}", i) : x[i].name();
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.to_vector<double>() == b.to_vector<double>();
}

// The inputs as gradcheck differentiates them: f64 leaves that require grad (see gradcheck.h).
std::vector<Tensor> checked_inputs(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> x(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !is_floating(inputs[i].dtype())) {
      x[i] = inputs[i];
      continue;
    }
    if (inputs[i].dtype() != DType::f64 && inputs[i].is_leaf() && inputs[i].requires_grad() &&
        !inputs[i].name().empty())
      fail<DTypeError>("gradcheck",
                       "input {} is the parameter '{}' in {}: call module.to(DType::f64) first (a module's parameters "
                       "are perturbed in place), or use nn::gradcheck_module, which converts the module itself",
                       i, inputs[i].name(), dtype_name(inputs[i].dtype()));
    if (inputs[i].dtype() == DType::f64 && inputs[i].is_leaf() && inputs[i].requires_grad()) {
      x[i] = inputs[i];  // a parameter the function reads itself: perturb and differentiate it in place
      continue;
    }
    x[i] = inputs[i].dtype() == DType::f64 ? inputs[i].detach() : inputs[i].detach().to(DType::f64);
    x[i].requires_grad_(true);
  }
  return x;
}

GradcheckReport check_gradients(const TensorsFunction& fn, std::vector<Tensor> x, const GradcheckOptions& options) {
  GradcheckReport report;
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = evaluate(fn, x, "forward");
  }
  Generator gen(options.seed);
  std::vector<Tensor> r;
  for (const Tensor& out : outs) r.push_back(randn(out.shape(), gen, DType::f64));
  std::vector<Tensor> second;
  const std::vector<Tensor> analytic = backward_grads(fn, x, r, options.check_repeatability, &second);

  double worst_violation = -1.0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!x[i].defined() || !x[i].requires_grad()) continue;
    const Tensor& xi = x[i];
    const std::vector<double> grad =
        analytic[i].defined() ? analytic[i].to_vector<double>() : std::vector<double>(xi.numel(), 0.0);
    // Written through the storage itself: the inputs are leaves that require grad, which copy_ would refuse.
    double* storage = reinterpret_cast<double*>(xi.storage()->data());
    for (int64_t e = 0; e < xi.numel(); ++e) {
      double& value = storage[strided_offset(xi, e)];
      const double original = value;
      double plus, minus;
      {
        NoGradGuard no_grad;
        value = original + options.eps;
        plus = dot(evaluate(fn, x, "perturbed forward"), r);
        value = original - options.eps;
        minus = dot(evaluate(fn, x, "perturbed forward"), r);
        value = original;
      }
      const double numeric = (plus - minus) / (2 * options.eps);
      const double a = grad[static_cast<size_t>(e)];
      const double abs_error = std::abs(a - numeric);
      const double rel_error = abs_error / std::max(std::abs(numeric), options.atol);
      report.max_abs_error = std::max(report.max_abs_error, abs_error);
      report.max_rel_error = std::max(report.max_rel_error, rel_error);
      const double violation = std::isfinite(a) ? abs_error - (options.atol + options.rtol * std::abs(numeric))
                                                : std::numeric_limits<double>::infinity();
      if (violation > worst_violation) {
        worst_violation = violation;
        report.worst_input = i;
        report.worst_name = xi.name();
        report.worst_index = unravel(xi.shape(), e);
        report.worst_analytic = a;
        report.worst_numeric = numeric;
      }
    }
  }
  if (worst_violation > 0 || std::isnan(worst_violation)) {
    report.passed = false;
    if (report.worst_name.empty())
      report.failure = fmt::format("input {} {} at index {}: analytic {:.10g}, numeric {:.10g}", report.worst_input,
                                   shape_str(x[report.worst_input].shape()), shape_str(report.worst_index),
                                   report.worst_analytic, report.worst_numeric);
    else
      report.failure = fmt::format("{}{}: analytic {:.10g}, numeric {:.10g}", report.worst_name,
                                   shape_str(report.worst_index), report.worst_analytic, report.worst_numeric);
    return report;
  }

  if (!options.check_repeatability) return report;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!bitwise_equal(analytic[i], second[i])) {
      report.passed = false;
      report.failure = fmt::format("{}: a second backward over the retained graph gave other gradients",
                                   input_label(x, i));
      return report;
    }
  }
  // Leave the first differentiable input out of the graph: it must get no gradient, the others the same ones.
  size_t frozen = x.size();
  size_t differentiable = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i].defined() && x[i].requires_grad()) {
      if (frozen == x.size()) frozen = i;
      ++differentiable;
    }
  }
  if (differentiable < 2) return report;
  x[frozen].zero_grad();
  x[frozen].requires_grad_(false);
  const std::vector<Tensor> partial = backward_grads(fn, x, r, false, nullptr);
  x[frozen].requires_grad_(true);
  if (x[frozen].grad().defined()) {
    report.passed = false;
    report.failure = fmt::format("{} does not require grad but received a gradient", input_label(x, frozen));
    return report;
  }
  for (size_t i = 0; i < x.size(); ++i) {
    if (i == frozen || !analytic[i].defined()) continue;
    const std::vector<double> full = analytic[i].to_vector<double>();
    const std::vector<double> part = partial[i].defined() ? partial[i].to_vector<double>()
                                                          : std::vector<double>(full.size(), 0.0);
    for (size_t e = 0; e < full.size(); ++e) {
      if (std::abs(full[e] - part[e]) > options.atol + options.rtol * std::abs(full[e])) {
        report.passed = false;
        report.failure = fmt::format("{}: its gradient changed when {} stopped requiring grad", input_label(x, i),
                                     input_label(x, frozen));
        return report;
      }
    }
  }
  return report;
}

}  // namespace

GradcheckReport gradcheck(const TensorFunction& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  return check_gradients([&fn](const std::vector<Tensor>& x) { return std::vector<Tensor>{fn(x)}; },
                         checked_inputs(inputs), options);
}

GradcheckReport gradgradcheck(const TensorFunction& fn, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options) {
  std::vector<Tensor> x = checked_inputs(inputs);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = evaluate([&fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in)}; }, x, "forward")[0];
  }
  // The grad_outputs v of the first-order gradients are inputs of the check: d/dv of the gradients is the
  // Jacobian itself, so both halves of the second-order graph are checked.
  Generator gen(options.seed + 1);
  const size_t first_order_inputs = x.size();
  x.push_back(randn(out.shape(), gen, DType::f64).requires_grad_());
  auto first_order = [&fn, first_order_inputs](const std::vector<Tensor>& all) {
    const std::vector<Tensor> in(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(first_order_inputs));
    const Tensor& v = all.back();
    // The analytic pass differentiates these gradients (create_graph); the numeric one only evaluates them.
    const bool differentiated = grad_mode_enabled();
    const GradModeGuard grad_mode(true);
    const Tensor y = fn(in);
    std::vector<Tensor> wrt;
    for (const Tensor& t : in)
      if (t.defined() && t.requires_grad()) wrt.push_back(t);
    std::vector<Tensor> grads;
    if (y.requires_grad() && !wrt.empty())
      grads = grad({y}, wrt, {v.dtype() == y.dtype() ? v : v.to(y.dtype())},
                   GradOptions{.create_graph = differentiated, .allow_unused = true});
    std::vector<Tensor> outs;
    size_t next = 0;
    for (const Tensor& t : in) {
      if (!t.defined() || !t.requires_grad()) continue;
      const Tensor& g = next < grads.size() ? grads[next] : Tensor();
      ++next;
      outs.push_back(!g.defined() ? zeros(t.shape(), t.dtype()) : differentiated ? g : g.detach());
    }
    return outs;
  };
  GradcheckOptions second_order = options;
  // gradcheck's own repeatability checks drop an input from the graph, which here would change what is checked.
  second_order.check_repeatability = false;
  return check_gradients(first_order, std::move(x), second_order);
}

Tensor noncontiguous_copy(const Tensor& t) {
  if (!t.defined() || t.dim() == 0 || t.numel() == 0) return t;
  Shape wide = t.shape();
  wide.back() *= 2;
  Shape strides = contiguous_strides(wide);
  strides.back() = 2;
  Tensor view = zeros(wide, t.dtype()).as_strided(t.shape(), strides, 0);
  view.copy_(t);
  return view;
}

}  // namespace gradformer

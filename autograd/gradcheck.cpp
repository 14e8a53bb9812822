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

double dot(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += x[i] * y[i];
  return sum;
}

Tensor evaluate(const TensorFunction& fn, const std::vector<Tensor>& inputs, std::string_view when) {
  Tensor out = fn(inputs);
  if (!out.defined() || !is_floating(out.dtype()))
    fail<DTypeError>("gradcheck", "{}: the function must return an f32 or f64 tensor", when);
  return out;
}

std::vector<Tensor> backward_grads(const TensorFunction& fn, const std::vector<Tensor>& inputs, const Tensor& r,
                                   bool twice, std::vector<Tensor>* second) {
  for (const Tensor& x : inputs)
    if (x.defined() && x.requires_grad()) x.zero_grad();
  Tensor out = evaluate(fn, inputs, "forward");
  if (out.shape() != r.shape())
    fail<ShapeError>("gradcheck", "the function returned shape {} on one call and {} on another",
                     shape_str(out.shape()), shape_str(r.shape()));
  std::vector<Tensor> grads(inputs.size());
  if (!out.requires_grad()) return grads;  // no input reaches the output: every gradient is zero
  const Tensor seed = r.to(out.dtype());
  out.backward(seed, twice);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad() && inputs[i].grad().defined())
      grads[i] = inputs[i].grad().to(DType::f64).contiguous();
  if (twice) {
    for (const Tensor& x : inputs)
      if (x.defined() && x.requires_grad()) x.zero_grad();
    out.backward(seed, false);
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

}  // namespace

GradcheckReport gradcheck(const TensorFunction& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
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

  GradcheckReport report;
  Tensor out;
  {
    NoGradGuard no_grad;
    out = evaluate(fn, x, "forward");
  }
  Generator gen(options.seed);
  const Tensor r = randn(out.shape(), gen, DType::f64);
  std::vector<Tensor> second;
  const std::vector<Tensor> analytic = backward_grads(fn, x, r, options.check_repeatability, &second);

  double worst_violation = -1.0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!x[i].defined() || !x[i].requires_grad()) continue;
    const Tensor& xi = x[i];
    const std::vector<double> grad =
        analytic[i].defined() ? analytic[i].to_vector<double>() : std::vector<double>(xi.numel(), 0.0);
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

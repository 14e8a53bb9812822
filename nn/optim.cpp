// The optimizers' bookkeeping (parameters, state dicts) and their update loops: one pass over raw data per
// parameter with the hyperparameters hoisted out, each element's arithmetic in the order of PyTorch's
// single-tensor (foreach=False) implementations (lerp for the first moment, addcmul, addcdiv).
#include "nn/optim.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/profiler.h"
#include "autograd/strided.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

namespace gradformer::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr, std::string_view name)
    : params_(std::move(params)), state_(params_.size()), lr_(lr) {
  check_hyperparameter(name, "lr", lr, 0.0, INFINITY);
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.defined()) fail<ValueError>(name, "parameter {} is an undefined tensor", i);
    if (!is_floating(p.dtype()))
      fail<DTypeError>(name, "parameter {} ('{}') must be f32 or f64, got {}", i, p.name(), dtype_name(p.dtype()));
    if (!p.is_leaf()) fail<ValueError>(name, "parameter {} ('{}') is not a leaf: it comes from {}", i, p.name(),
                                       p.grad_fn()->op());
    if (!seen.insert(p.impl_ptr().get()).second)
      fail<ValueError>(name, "parameter {} ('{}') appears more than once", i, p.name());
  }
}

void Optimizer::check_hyperparameter(std::string_view optimizer, std::string_view name, double value, double low,
                                     double high) {
  if (!(value >= low && value <= high))
    fail<ValueError>(optimizer, "{} = {} is outside [{}, {}]", name, value, low, high);
}

void Optimizer::set_lr(double lr) {
  check_hyperparameter(type_name(), "lr", lr, 0.0, INFINITY);
  lr_ = lr;
}

void Optimizer::zero_grad() {
  const ProfiledRange profiled(ProfiledKind::optimizer, std::nullopt, [this] {
    return ProfiledName{fmt::format("{}.zero_grad", type_name()), ""};
  });
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::step() {
  const ProfiledRange profiled(ProfiledKind::optimizer, std::nullopt, [this] {
    return ProfiledName{fmt::format("{}.step", type_name()), fmt::format("{} parameters", params_.size())};
  });
  NoGradGuard no_grad;
  ++step_count_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.grad().defined()) continue;
    // Module::to() may have changed the parameter's dtype since its state was made.
    for (auto& [name, value] : state_[i])
      if (name != "step" && value.dtype() != p.dtype()) value = value.to(p.dtype()).contiguous();
    // A parameter that is a strided view is updated through a dense copy and written back.
    const Tensor dense = p.is_contiguous() ? p.detach() : p.detach().contiguous();
    update(dense, p.grad().detach().contiguous(), state_[i]);
    if (!p.is_contiguous()) p.detach().copy_(dense);
  }
}

nn::StateDict Optimizer::state_dict() const {
  nn::StateDict dict;
  dict.emplace("step", scalar_tensor(static_cast<double>(step_count_), DType::i64));
  dict.emplace("lr", scalar_tensor(lr_, DType::f64));
  for (size_t i = 0; i < state_.size(); ++i)
    for (const auto& [name, value] : state_[i]) dict.emplace(fmt::format("state.{}.{}", i, name), value.detach());
  return dict;
}

void Optimizer::load_state_dict(const nn::StateDict& dict) {
  const std::vector<std::string> names = state_names();
  std::vector<std::string> problems;
  std::vector<std::set<std::string>> present(params_.size());
  for (const auto& [key, value] : dict) {
    if (!value.defined()) {
      problems.push_back(fmt::format("'{}' is an undefined tensor", key));
      continue;
    }
    if (key == "step" || key == "lr") {
      if (value.numel() != 1)
        problems.push_back(fmt::format("'{}' must be a scalar, got {}", key, shape_str(value.shape())));
      else if (!(value.item() >= 0) || !std::isfinite(value.item()))
        problems.push_back(fmt::format("'{}' is {}; it must be finite and non-negative", key, value.item()));
      continue;
    }
    // state.<index>.<name>
    size_t index = 0;
    const size_t dot = key.find('.', 6);
    const bool prefixed = key.starts_with("state.") && dot != std::string::npos;
    const auto parsed = prefixed ? std::from_chars(key.data() + 6, key.data() + dot, index) : std::from_chars_result{};
    const std::string name = prefixed ? key.substr(dot + 1) : "";
    if (!prefixed || parsed.ec != std::errc{} || parsed.ptr != key.data() + dot ||
        std::find(names.begin(), names.end(), name) == names.end()) {
      problems.push_back(fmt::format("unexpected key '{}' (expected step, lr and state.<index>.<{}>)", key,
                                     fmt::join(names, "|")));
      continue;
    }
    if (index >= params_.size()) {
      problems.push_back(fmt::format("'{}' refers to parameter {}, but there are {}", key, index, params_.size()));
      continue;
    }
    const Shape expected = name == "step" ? Shape{} : params_[index].shape();
    if (value.shape() != expected)
      problems.push_back(fmt::format("'{}' has shape {}, parameter {} ('{}') needs {}", key,
                                     shape_str(value.shape()), index, params_[index].name(), shape_str(expected)));
    present[index].insert(name);
  }
  for (const char* key : {"step", "lr"})
    if (!dict.contains(key)) problems.push_back(fmt::format("missing key '{}'", key));
  for (size_t i = 0; i < params_.size(); ++i)
    for (const std::string& name : names)
      if (!present[i].empty() && !present[i].contains(name))
        problems.push_back(fmt::format("missing key 'state.{}.{}'", i, name));
  if (!problems.empty())
    fail<nn::StateDictError>(fmt::format("{}.load_state_dict", type_name()), "{}", fmt::join(problems, "; "));

  std::vector<std::map<std::string, Tensor>> state(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (present[i].empty()) continue;
    for (const std::string& name : names) {
      const Tensor& value = dict.at(fmt::format("state.{}.{}", i, name));
      const DType dtype = name == "step" ? DType::i64 : params_[i].dtype();
      Tensor copy = empty(value.shape(), dtype);
      copy.copy_(value.detach());
      state[i].emplace(name, copy);
    }
  }
  state_ = std::move(state);
  step_count_ = static_cast<int64_t>(dict.at("step").item());
  set_lr(dict.at("lr").item());
}

namespace {

template <class T>
T* state_data(std::map<std::string, Tensor>& state, const char* name) {
  return state.at(name).data_ptr<T>();
}

// update(begin, end) over [0, n) in chunks, spread over the OpenMP team once n pays for it; each chunk is a plain
// loop that the compiler vectorises. Element i's arithmetic does not depend on the chunking.
template <class Update>
void for_each_chunk(int64_t n, const Update& update) {
  constexpr int64_t chunk = kParallelGrain / 2;
  parallel_for((n + chunk - 1) / chunk, n, kParallelGrain,
               [&](int64_t c) { update(c * chunk, std::min(n, (c + 1) * chunk)); });
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : Optimizer(std::move(params), options.lr, "SGD"), options_(options) {
  check_hyperparameter("SGD", "momentum", options.momentum, 0.0, INFINITY);
  check_hyperparameter("SGD", "dampening", options.dampening, -INFINITY, INFINITY);
  check_hyperparameter("SGD", "weight_decay", options.weight_decay, 0.0, INFINITY);
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
    fail<ValueError>("SGD", "nesterov needs momentum > 0 and dampening = 0, got momentum {} and dampening {}",
                     options.momentum, options.dampening);
}

std::vector<std::string> SGD::state_names() const {
  if (options_.momentum == 0) return {};
  return {"momentum_buffer"};
}

void SGD::update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state) {
  const bool first = state.empty();
  const bool use_momentum = options_.momentum != 0;
  if (use_momentum && first) state.emplace("momentum_buffer", empty(param.shape(), param.dtype()));
  visit_floating(param.dtype(), "SGD", [&]<class T>(std::type_identity<T>) {
    T* w = param.data_ptr<T>();
    const T* g = grad.data_ptr<const T>();
    T* buf = use_momentum ? state_data<T>(state, "momentum_buffer") : nullptr;
    const T rate = static_cast<T>(lr()), wd = static_cast<T>(options_.weight_decay);
    const T momentum = static_cast<T>(options_.momentum), keep = static_cast<T>(1.0 - options_.dampening);
    const bool decay = options_.weight_decay != 0, nesterov = options_.nesterov;
    const int64_t n = param.numel();
    for_each_chunk(n, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T d = decay ? g[i] + wd * w[i] : g[i];
        if (use_momentum) {
          buf[i] = first ? d : momentum * buf[i] + keep * d;
          d = nesterov ? d + momentum * buf[i] : buf[i];
        }
        w[i] -= rate * d;
      }
    });
  });
}

namespace {

template <class T>
struct AdamScalars {
  T beta2, one_minus_beta1, one_minus_beta2, eps, wd, decay_factor, step_size, bias_correction2_sqrt;
};

// Adam's element loop over [begin, end). The scalars arrive by value, so the compiler keeps them in registers
// (read through a closure, every store to w, m or v could have changed them); the weight-decay variant is a
// template argument, so the loop has no branch of its own.
template <class T, bool L2, bool Decay>
void adam_elements(T* w, const T* g, T* m, T* v, int64_t begin, int64_t end, AdamScalars<T> k) {
  for (int64_t i = begin; i < end; ++i) {
    const T gi = L2 ? g[i] + k.wd * w[i] : g[i];
    if constexpr (Decay) w[i] *= k.decay_factor;
    m[i] += k.one_minus_beta1 * (gi - m[i]);  // PyTorch's exp_avg.lerp_(grad, 1 - beta1)
    v[i] = k.beta2 * v[i] + k.one_minus_beta2 * gi * gi;
    w[i] -= k.step_size * m[i] / (std::sqrt(v[i]) / k.bias_correction2_sqrt + k.eps);
  }
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, false) {}

Adam::Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled)
    : Optimizer(std::move(params), options.lr, decoupled ? "AdamW" : "Adam"),
      options_(options),
      decoupled_(decoupled) {
  const std::string_view name = decoupled ? "AdamW" : "Adam";
  for (const auto& [beta_name, beta] : {std::pair{"beta1", options.beta1}, std::pair{"beta2", options.beta2}})
    if (!(beta >= 0 && beta < 1)) fail<ValueError>(name, "{} = {} is outside [0, 1)", beta_name, beta);
  check_hyperparameter(name, "eps", options.eps, 0.0, INFINITY);
  check_hyperparameter(name, "weight_decay", options.weight_decay, 0.0, INFINITY);
}

std::vector<std::string> Adam::state_names() const { return {"step", "exp_avg", "exp_avg_sq"}; }

void Adam::update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state) {
  if (state.empty()) {
    state.emplace("step", scalar_tensor(0, DType::i64));
    state.emplace("exp_avg", zeros(param.shape(), param.dtype()));
    state.emplace("exp_avg_sq", zeros(param.shape(), param.dtype()));
  }
  const int64_t t = ++*state_data<int64_t>(state, "step");
  const double rate = lr();
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(t));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(t));
  visit_floating(param.dtype(), type_name(), [&]<class T>(std::type_identity<T>) {
    T* w = param.data_ptr<T>();
    const T* g = grad.data_ptr<const T>();
    T* m = state_data<T>(state, "exp_avg");
    T* v = state_data<T>(state, "exp_avg_sq");
    const T beta2 = static_cast<T>(options_.beta2);
    const T one_minus_beta1 = static_cast<T>(1.0 - options_.beta1);
    const T one_minus_beta2 = static_cast<T>(1.0 - options_.beta2);
    const T eps = static_cast<T>(options_.eps), wd = static_cast<T>(options_.weight_decay);
    const T decay_factor = static_cast<T>(1.0 - rate * options_.weight_decay);
    const T step_size = static_cast<T>(rate / bias_correction1);
    const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const bool l2 = !decoupled_ && options_.weight_decay != 0, decay = decoupled_ && options_.weight_decay != 0;
    const int64_t n = param.numel();
    const AdamScalars<T> k{beta2, one_minus_beta1, one_minus_beta2, eps, wd, decay_factor, step_size,
                           bias_correction2_sqrt};
    auto run = [&]<bool L2, bool Decay>() {
      for_each_chunk(n, [&](int64_t begin, int64_t end) { adam_elements<T, L2, Decay>(w, g, m, v, begin, end, k); });
    };
    if (l2)
      run.template operator()<true, false>();
    else if (decay)
      run.template operator()<false, true>();
    else
      run.template operator()<false, false>();
  });
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : Adam(std::move(params), {options.lr, options.beta1, options.beta2, options.eps, options.weight_decay}, true) {}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  const RecordFunction profiled("clip_grad_norm_", ProfiledKind::optimizer);
  if (!(max_norm >= 0)) fail<ValueError>("clip_grad_norm_", "max_norm {} must be non-negative", max_norm);
  std::vector<Tensor> grads;
  std::set<const TensorImpl*> seen;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined() && seen.insert(p.impl_ptr().get()).second) grads.push_back(p.grad());
  double sum_of_squares = 0.0;
  for (const Tensor& g : grads) {
    visit_floating(g.dtype(), "clip_grad_norm_", [&]<class T>(std::type_identity<T>) {
      const Tensor dense = g.detach().contiguous();
      const T* data = dense.data_ptr<const T>();
      const int64_t n = dense.numel();
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(data[i]) * static_cast<double>(data[i]);
      sum_of_squares += sum;
    });
  }
  const double norm = std::sqrt(sum_of_squares);
  if (!std::isfinite(norm)) return norm;
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient >= 1.0) return norm;
  for (const Tensor& g : grads) {
    visit_floating(g.dtype(), "clip_grad_norm_", [&]<class T>(std::type_identity<T>) {
      const Tensor dense = g.detach().contiguous();
      T* data = dense.data_ptr<T>();
      const T scale = static_cast<T>(coefficient);
      const int64_t n = dense.numel();
      for (int64_t i = 0; i < n; ++i) data[i] *= scale;
      if (!g.is_contiguous()) g.detach().copy_(dense);
    });
  }
  return norm;
}

}  // namespace gradformer::optim

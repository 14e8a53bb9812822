// The optimizers' bookkeeping (parameters, state dicts) and their update loops: one pass over raw data per
// parameter with the hyperparameters hoisted out, each element's arithmetic in the order of PyTorch's
// single-tensor (foreach=False) implementations (lerp for the first moment, addcmul, addcdiv).
#include "nn/optim.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <set>

namespace gradformer::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr, std::string_view name) {
  check_hyperparameter(name, "lr", lr, 0.0, INFINITY);
  check_parameters(params, name);
  groups_.push_back({params, lr, lr});
  params_ = std::move(params);
  group_of_.assign(params_.size(), 0);
  state_.resize(params_.size());
}

void Optimizer::check_parameters(const std::vector<Tensor>& params, std::string_view name) const {
  std::set<const TensorImpl*> seen;
  for (const Tensor& p : params_) seen.insert(p.impl_ptr().get());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    if (!p.defined()) fail<ValueError>(name, "parameter {} is an undefined tensor", i);
    if (!is_floating(p.dtype()))
      fail<DTypeError>(name, "parameter {} ('{}') must be f32 or f64, got {}", i, p.name(), dtype_name(p.dtype()));
    if (!p.is_leaf()) fail<ValueError>(name, "parameter {} ('{}') is not a leaf: it comes from {}", i, p.name(),
                                       p.grad_fn()->op());
    if (!seen.insert(p.impl_ptr().get()).second)
      fail<ValueError>(name, "parameter {} ('{}') appears more than once{}", i, p.name(),
                       groups_.empty() ? "" : " (or is in another group already)");
  }
}

size_t Optimizer::add_group(std::vector<Tensor> params, double lr) {
  const std::string name = fmt::format("{}.add_param_group", type_name());
  check_hyperparameter(name, "lr", lr, 0.0, INFINITY);
  if (params.empty()) fail<ValueError>(name, "the group has no parameters");
  check_parameters(params, name);
  const size_t group = groups_.size();
  groups_.push_back({params, lr, lr});
  for (Tensor& p : params) {
    params_.push_back(std::move(p));
    group_of_.push_back(group);
  }
  state_.resize(params_.size());
  return group;
}

void Optimizer::check_hyperparameter(std::string_view optimizer, std::string_view name, double value, double low,
                                     double high) {
  if (!(value >= low && value <= high))
    fail<ValueError>(optimizer, "{} = {} is outside [{}, {}]", name, value, low, high);
}

void Optimizer::set_lr(double lr) {
  check_hyperparameter(type_name(), "lr", lr, 0.0, INFINITY);
  const double base = groups_.front().initial_lr;
  for (ParamGroup& group : groups_) group.lr = base > 0 ? lr * (group.initial_lr / base) : lr;
  groups_.front().lr = lr;
}

void Optimizer::set_lr(size_t group, double lr) {
  if (group >= groups_.size())
    fail<IndexError>(fmt::format("{}.set_lr", type_name()), "group {} does not exist ({} groups)", group,
                     groups_.size());
  check_hyperparameter(type_name(), "lr", lr, 0.0, INFINITY);
  groups_[group].lr = lr;
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::step() {
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
    update(dense, p.grad().detach().contiguous(), state_[i], group_of_[i]);
    if (!p.is_contiguous()) p.detach().copy_(dense);
  }
}

nn::StateDict Optimizer::state_dict() const {
  nn::StateDict dict;
  dict.emplace("step", scalar_tensor(static_cast<double>(step_count_), DType::i64));
  dict.emplace("lr", scalar_tensor(lr(), DType::f64));
  for (size_t i = 0; i < state_.size(); ++i)
    for (const auto& [name, value] : state_[i]) dict.emplace(fmt::format("state.{}.{}", i, name), value.detach());
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = fmt::format("param_groups.{}.", g);
    dict.emplace(prefix + "params", scalar_tensor(static_cast<double>(groups_[g].params.size()), DType::i64));
    dict.emplace(prefix + "lr", scalar_tensor(groups_[g].lr, DType::f64));
    dict.emplace(prefix + "initial_lr", scalar_tensor(groups_[g].initial_lr, DType::f64));
    for (const auto& [name, value] : hyperparameters(g)) dict.emplace(prefix + name, scalar_tensor(value, DType::f64));
  }
  return dict;
}

namespace {

// "<prefix><index>.<name>" -> (index, name); nullopt when key has another form.
std::optional<std::pair<size_t, std::string>> indexed_key(const std::string& key, std::string_view prefix) {
  if (!key.starts_with(prefix)) return std::nullopt;
  const size_t dot = key.find('.', prefix.size());
  if (dot == std::string::npos || dot + 1 == key.size()) return std::nullopt;
  size_t index = 0;
  const auto parsed = std::from_chars(key.data() + prefix.size(), key.data() + dot, index);
  if (parsed.ec != std::errc{} || parsed.ptr != key.data() + dot) return std::nullopt;
  return std::pair{index, key.substr(dot + 1)};
}

}  // namespace

void Optimizer::load_state_dict(const nn::StateDict& dict) {
  std::vector<std::string> problems;
  // First the scalars: step, lr and every group's saved size, learning rates and hyperparameters.
  std::vector<Hyperparameters> saved(groups_.size());
  bool has_groups = false;
  std::vector<std::pair<std::string, Tensor>> state_entries;
  for (const auto& [key, value] : dict) {
    if (!value.defined()) {
      problems.push_back(fmt::format("'{}' is an undefined tensor", key));
      continue;
    }
    const bool scalar_key = key == "step" || key == "lr" || key.starts_with("param_groups.");
    if (scalar_key && value.numel() != 1) {
      problems.push_back(fmt::format("'{}' must be a scalar, got {}", key, shape_str(value.shape())));
      continue;
    }
    if (key == "step" || key == "lr") {
      if (!(value.item() >= 0) || !std::isfinite(value.item()))
        problems.push_back(fmt::format("'{}' is {}; it must be finite and non-negative", key, value.item()));
    } else if (const auto group_key = indexed_key(key, "param_groups.")) {
      has_groups = true;
      if (group_key->first >= groups_.size())
        problems.push_back(fmt::format("'{}' refers to parameter group {}, but there are {}", key, group_key->first,
                                       groups_.size()));
      else
        saved[group_key->first][group_key->second] = value.item();
    } else {
      state_entries.emplace_back(key, value);
    }
  }
  for (const char* key : {"step", "lr"})
    if (!dict.contains(key)) problems.push_back(fmt::format("missing key '{}'", key));

  // The hyperparameters each group will have after the load, which decide the state its parameters keep.
  std::vector<Hyperparameters> loaded(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    loaded[g] = hyperparameters(g);
    if (!has_groups) continue;
    std::vector<std::string> needed{"params", "lr", "initial_lr"};
    for (const auto& entry : loaded[g]) needed.push_back(entry.first);
    bool complete = true;
    for (const std::string& name : needed)
      if (!saved[g].contains(name)) {
        problems.push_back(fmt::format("missing key 'param_groups.{}.{}'", g, name));
        complete = false;
      }
    for (const auto& entry : saved[g])
      if (std::find(needed.begin(), needed.end(), entry.first) == needed.end())
        problems.push_back(fmt::format("unexpected key 'param_groups.{}.{}'", g, entry.first));
    if (!complete) continue;
    if (saved[g].at("params") != static_cast<double>(groups_[g].params.size()))
      problems.push_back(fmt::format("parameter group {} holds {} parameters here, {} in the state dict", g,
                                     groups_[g].params.size(), saved[g].at("params")));
    for (const char* name : {"lr", "initial_lr"})
      if (!(saved[g].at(name) >= 0) || !std::isfinite(saved[g].at(name)))
        problems.push_back(fmt::format("'param_groups.{}.{}' is {}; it must be finite and non-negative", g, name,
                                       saved[g].at(name)));
    const std::vector<std::string> bad = check_hyperparameters(saved[g]);
    for (const std::string& problem : bad) problems.push_back(fmt::format("parameter group {}: {}", g, problem));
    if (bad.empty())
      for (auto& [name, value] : loaded[g]) value = saved[g].at(name);
  }
  if (!has_groups && groups_.size() > 1)
    problems.push_back(fmt::format("the state dict holds no param_groups keys (one group, as saved before groups "
                                   "existed), but this optimizer has {} groups", groups_.size()));

  // Then the per-parameter state: state.<index>.<name>.
  std::vector<std::set<std::string>> present(params_.size());
  for (const auto& [key, value] : state_entries) {
    const auto state_key = indexed_key(key, "state.");
    if (!state_key) {
      problems.push_back(fmt::format(
          "unexpected key '{}' (expected step, lr, state.<index>.<name> and param_groups.<group>.<name>)", key));
      continue;
    }
    const auto& [index, name] = *state_key;
    if (index >= params_.size()) {
      problems.push_back(fmt::format("'{}' refers to parameter {}, but there are {}", key, index, params_.size()));
      continue;
    }
    const std::vector<std::string> names = state_names(loaded[group_of_[index]]);
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      problems.push_back(fmt::format("unexpected key '{}' (parameter {} keeps {})", key, index,
                                     names.empty() ? "no state" : fmt::format("{}", fmt::join(names, ", "))));
      continue;
    }
    const Shape expected = name == "step" ? Shape{} : params_[index].shape();
    if (value.shape() != expected)
      problems.push_back(fmt::format("'{}' has shape {}, parameter {} ('{}') needs {}", key,
                                     shape_str(value.shape()), index, params_[index].name(), shape_str(expected)));
    present[index].insert(name);
  }
  for (size_t i = 0; i < params_.size(); ++i)
    for (const std::string& name : state_names(loaded[group_of_[i]]))
      if (!present[i].empty() && !present[i].contains(name))
        problems.push_back(fmt::format("missing key 'state.{}.{}'", i, name));
  if (!problems.empty())
    fail<nn::StateDictError>(fmt::format("{}.load_state_dict", type_name()), "{}", fmt::join(problems, "; "));

  std::vector<std::map<std::string, Tensor>> state(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (present[i].empty()) continue;
    for (const std::string& name : state_names(loaded[group_of_[i]])) {
      const Tensor& value = dict.at(fmt::format("state.{}.{}", i, name));
      const DType dtype = name == "step" ? DType::i64 : params_[i].dtype();
      Tensor copy = empty(value.shape(), dtype);
      copy.copy_(value.detach());
      state[i].emplace(name, copy);
    }
  }
  state_ = std::move(state);
  step_count_ = static_cast<int64_t>(dict.at("step").item());
  if (!has_groups) {
    groups_.front().lr = dict.at("lr").item();
    return;
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    set_hyperparameters(g, loaded[g]);
    groups_[g].lr = saved[g].at("lr");
    groups_[g].initial_lr = saved[g].at("initial_lr");
  }
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

namespace {

// The hyperparameters of one group, as the constructor, add_param_group and load_state_dict check them.
std::vector<std::string> sgd_problems(const SGDOptions& options) {
  std::vector<std::string> problems;
  if (!(options.momentum >= 0 && std::isfinite(options.momentum)))
    problems.push_back(fmt::format("momentum = {} must be finite and non-negative", options.momentum));
  if (!std::isfinite(options.dampening)) problems.push_back(fmt::format("dampening = {} must be finite", options.dampening));
  if (!(options.weight_decay >= 0 && std::isfinite(options.weight_decay)))
    problems.push_back(fmt::format("weight_decay = {} must be finite and non-negative", options.weight_decay));
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
    problems.push_back(fmt::format("nesterov needs momentum > 0 and dampening = 0, got momentum {} and dampening {}",
                                   options.momentum, options.dampening));
  return problems;
}

std::vector<std::string> adam_problems(const AdamOptions& options) {
  std::vector<std::string> problems;
  for (const auto& [beta_name, beta] : {std::pair{"beta1", options.beta1}, std::pair{"beta2", options.beta2}})
    if (!(beta >= 0 && beta < 1)) problems.push_back(fmt::format("{} = {} is outside [0, 1)", beta_name, beta));
  if (!(options.eps >= 0 && std::isfinite(options.eps)))
    problems.push_back(fmt::format("eps = {} must be finite and non-negative", options.eps));
  if (!(options.weight_decay >= 0 && std::isfinite(options.weight_decay)))
    problems.push_back(fmt::format("weight_decay = {} must be finite and non-negative", options.weight_decay));
  return problems;
}

void throw_problems(std::string_view where, const std::vector<std::string>& problems) {
  if (!problems.empty()) fail<ValueError>(where, "{}", fmt::join(problems, "; "));
}

SGDOptions sgd_options(const std::map<std::string, double>& values, double lr) {
  return {.lr = lr,
          .momentum = values.at("momentum"),
          .dampening = values.at("dampening"),
          .weight_decay = values.at("weight_decay"),
          .nesterov = values.at("nesterov") != 0};
}

AdamOptions adam_options(const std::map<std::string, double>& values, double lr) {
  return {.lr = lr,
          .beta1 = values.at("beta1"),
          .beta2 = values.at("beta2"),
          .eps = values.at("eps"),
          .weight_decay = values.at("weight_decay")};
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : Optimizer(std::move(params), options.lr, "SGD"), options_{options} {
  throw_problems("SGD", sgd_problems(options));
}

size_t SGD::add_param_group(std::vector<Tensor> params, SGDOptions options) {
  throw_problems("SGD.add_param_group", sgd_problems(options));
  const size_t group = add_group(std::move(params), options.lr);
  options_.push_back(options);
  return group;
}

std::vector<std::string> SGD::state_names(const Hyperparameters& values) const {
  if (values.at("momentum") == 0) return {};
  return {"momentum_buffer"};
}

Optimizer::Hyperparameters SGD::hyperparameters(size_t group) const {
  const SGDOptions& o = options_[group];
  return {{"momentum", o.momentum}, {"dampening", o.dampening}, {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov ? 1.0 : 0.0}};
}

std::vector<std::string> SGD::check_hyperparameters(const Hyperparameters& values) const {
  std::vector<std::string> problems;
  if (values.at("nesterov") != 0 && values.at("nesterov") != 1)
    problems.push_back(fmt::format("nesterov = {} is neither 0 nor 1", values.at("nesterov")));
  for (std::string& problem : sgd_problems(sgd_options(values, 0.0))) problems.push_back(std::move(problem));
  return problems;
}

void SGD::set_hyperparameters(size_t group, const Hyperparameters& values) {
  options_[group] = sgd_options(values, options_[group].lr);
}

void SGD::update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state, size_t group) {
  const SGDOptions& options = options_[group];
  const bool first = !state.contains("momentum_buffer");
  const bool use_momentum = options.momentum != 0;
  if (use_momentum && first) state.emplace("momentum_buffer", empty(param.shape(), param.dtype()));
  visit_floating(param.dtype(), "SGD", [&]<class T>(std::type_identity<T>) {
    T* w = param.data_ptr<T>();
    const T* g = grad.data_ptr<const T>();
    T* buf = use_momentum ? state_data<T>(state, "momentum_buffer") : nullptr;
    const T rate = static_cast<T>(lr(group)), wd = static_cast<T>(options.weight_decay);
    const T momentum = static_cast<T>(options.momentum), keep = static_cast<T>(1.0 - options.dampening);
    const bool decay = options.weight_decay != 0, nesterov = options.nesterov;
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
      options_{options},
      decoupled_(decoupled) {
  throw_problems(decoupled ? "AdamW" : "Adam", adam_problems(options));
}

size_t Adam::add_param_group(std::vector<Tensor> params, AdamOptions options) {
  throw_problems(fmt::format("{}.add_param_group", type_name()), adam_problems(options));
  const size_t group = add_group(std::move(params), options.lr);
  options_.push_back(options);
  return group;
}

std::vector<std::string> Adam::state_names(const Hyperparameters&) const {
  return {"step", "exp_avg", "exp_avg_sq"};
}

Optimizer::Hyperparameters Adam::hyperparameters(size_t group) const {
  const AdamOptions& o = options_[group];
  return {{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay}};
}

std::vector<std::string> Adam::check_hyperparameters(const Hyperparameters& values) const {
  return adam_problems(adam_options(values, 0.0));
}

void Adam::set_hyperparameters(size_t group, const Hyperparameters& values) {
  options_[group] = adam_options(values, options_[group].lr);
}

void Adam::update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state, size_t group) {
  const AdamOptions& options = options_[group];
  if (state.empty()) {
    state.emplace("step", scalar_tensor(0, DType::i64));
    state.emplace("exp_avg", zeros(param.shape(), param.dtype()));
    state.emplace("exp_avg_sq", zeros(param.shape(), param.dtype()));
  }
  const int64_t t = ++*state_data<int64_t>(state, "step");
  const double rate = lr(group);
  const double bias_correction1 = 1.0 - std::pow(options.beta1, static_cast<double>(t));
  const double bias_correction2 = 1.0 - std::pow(options.beta2, static_cast<double>(t));
  visit_floating(param.dtype(), type_name(), [&]<class T>(std::type_identity<T>) {
    T* w = param.data_ptr<T>();
    const T* g = grad.data_ptr<const T>();
    T* m = state_data<T>(state, "exp_avg");
    T* v = state_data<T>(state, "exp_avg_sq");
    const T beta2 = static_cast<T>(options.beta2);
    const T one_minus_beta1 = static_cast<T>(1.0 - options.beta1);
    const T one_minus_beta2 = static_cast<T>(1.0 - options.beta2);
    const T eps = static_cast<T>(options.eps), wd = static_cast<T>(options.weight_decay);
    const T decay_factor = static_cast<T>(1.0 - rate * options.weight_decay);
    const T step_size = static_cast<T>(rate / bias_correction1);
    const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const bool l2 = !decoupled_ && options.weight_decay != 0, decay = decoupled_ && options.weight_decay != 0;
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

size_t AdamW::add_param_group(std::vector<Tensor> params, AdamWOptions options) {
  return Adam::add_param_group(std::move(params),
                               {options.lr, options.beta1, options.beta2, options.eps, options.weight_decay});
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
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

// Optimizers (SGD, Adam, AdamW) with PyTorch's exact update rules, parameter groups, and gradient-norm clipping.
//
// An optimizer holds handles to the parameters it updates in parameter groups, as torch.optim: the constructor's
// parameters are group 0 with the constructor's options, and add_param_group adds more, each with options of its
// own (lr, weight decay, betas, momentum, ...). State dict keys count parameters across the groups in order
// (state.<index>.exp_avg). A schedule sets the learning rate with set_lr() before each step; with several groups
// each keeps its ratio to group 0 (PyTorch's LambdaLR scales every group's initial lr by one factor). Each step
// updates every parameter in one loop over its raw f32/f64 data, and skips parameters whose gradient is
// undefined, as PyTorch does. Not here: schedules (nn/schedule.h), the checkpoint file format.
#pragma once

#include "autograd/tensor.h"
#include "nn/module.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace gradformer::optim {

// A parameter group as torch.optim's param_groups show it; the optimizer type's own hyperparameters are in
// its options(group).
struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 0.0;          // the current learning rate
  double initial_lr = 0.0;  // the one the group was added with (PyTorch's "initial_lr")
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string type_name() const = 0;

  // Updates every parameter that has a gradient. State made before a Module::to() is converted to the
  // parameter's new dtype on the way.
  void step();
  // Drops every parameter's gradient (PyTorch's set_to_none=True).
  void zero_grad();
  // Group 0's learning rate.
  double lr() const { return groups_.front().lr; }
  // Sets group 0's learning rate to lr and every other group's to lr · its initial_lr / group 0's initial_lr
  // (to lr itself when group 0's initial_lr is 0).
  void set_lr(double lr);
  // Sets one group's learning rate alone.
  void set_lr(size_t group, double lr);
  // How many times step() ran.
  int64_t step_count() const { return step_count_; }
  // Every parameter of every group, in group order.
  const std::vector<Tensor>& parameters() const { return params_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }

  // "step" (i64 scalar: step() calls), "lr" (f64 scalar, group 0's), for each parameter that has state
  // "state.<index>.<name>" for every name of its group's state_names(), and for each group g
  // "param_groups.<g>.params" (i64: how many parameters), ".lr", ".initial_lr" and each hyperparameter of the
  // optimizer type (f64 scalars; a bool as 0 or 1). Values are detached views or copies of the live state.
  nn::StateDict state_dict() const;
  // Checks every key, shape, group size, hyperparameter and per-parameter completeness first and throws one
  // nn::StateDictError listing all problems; only then replaces the state with copies (converted to each
  // parameter's dtype) and the groups' learning rates and hyperparameters with the saved ones, as PyTorch. A state
  // dict without param_groups keys (written before groups existed) loads into an optimizer of one group, keeping
  // its hyperparameters and taking the lr from "lr".
  void load_state_dict(const nn::StateDict& dict);

 protected:
  // Parameters must be distinct f32/f64 leaves; `name` is the optimizer's type name for errors. They are group 0.
  Optimizer(std::vector<Tensor> params, double lr, std::string_view name);
  // Appends a group after the same checks (its parameters also distinct from every other group's); returns its
  // index. Subclasses add the group's options at the same index.
  size_t add_group(std::vector<Tensor> params, double lr);

  // A group's hyperparameters other than lr under torch.optim's names (a bool as 0 or 1), as state_dict saves them.
  using Hyperparameters = std::map<std::string, double>;

  // The per-parameter state an update with these hyperparameters keeps; "step" is an i64 scalar, every other
  // entry has the parameter's shape and dtype.
  virtual std::vector<std::string> state_names(const Hyperparameters& values) const = 0;
  // Updates param (contiguous) from grad (contiguous, same dtype) with `group`'s options and lr(group). `state`
  // is empty on the parameter's first update; the update creates every entry of its state names then.
  virtual void update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state,
                      size_t group) = 0;
  virtual Hyperparameters hyperparameters(size_t group) const = 0;
  // Checks saved hyperparameters (every name of hyperparameters(), from load_state_dict) without applying them:
  // a phrase per problem.
  virtual std::vector<std::string> check_hyperparameters(const Hyperparameters& values) const = 0;
  virtual void set_hyperparameters(size_t group, const Hyperparameters& values) = 0;

  double lr(size_t group) const { return groups_[group].lr; }
  static void check_hyperparameter(std::string_view optimizer, std::string_view name, double value, double low,
                                   double high);

 private:
  void check_parameters(const std::vector<Tensor>& params, std::string_view name) const;

  std::vector<Tensor> params_;
  std::vector<size_t> group_of_;  // params_[i] belongs to groups_[group_of_[i]]
  std::vector<std::map<std::string, Tensor>> state_;
  std::vector<ParamGroup> groups_;
  int64_t step_count_ = 0;
};

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening = 0
};

// d = g + wd·p; with momentum: buf = d on the first step, else momentum·buf + (1 − dampening)·d, and
// d = d + momentum·buf (nesterov) or buf; then p −= lr·d.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  std::string type_name() const override { return "SGD"; }
  // torch.optim's add_param_group: a group with options of its own, or the constructor's.
  size_t add_param_group(std::vector<Tensor> params, SGDOptions options);
  size_t add_param_group(std::vector<Tensor> params) { return add_param_group(std::move(params), options(0)); }
  // A group's options as given (its current lr is param_groups()[group].lr).
  const SGDOptions& options(size_t group = 0) const { return options_.at(group); }

 protected:
  std::vector<std::string> state_names(const Hyperparameters& values) const override;
  void update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state, size_t group) override;
  Hyperparameters hyperparameters(size_t group) const override;
  std::vector<std::string> check_hyperparameters(const Hyperparameters& values) const override;
  void set_hyperparameters(size_t group, const Hyperparameters& values) override;

 private:
  std::vector<SGDOptions> options_;  // per group
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 added to the gradient; AdamW: decoupled decay
};

// torch.optim.Adam with amsgrad off: g += wd·p; m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
// p −= (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps), with t counted per parameter.
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  std::string type_name() const override { return decoupled_ ? "AdamW" : "Adam"; }
  // torch.optim's add_param_group: a group with options of its own, or the constructor's.
  size_t add_param_group(std::vector<Tensor> params, AdamOptions options);
  size_t add_param_group(std::vector<Tensor> params) { return add_param_group(std::move(params), options(0)); }
  // A group's options as given (its current lr is param_groups()[group].lr).
  const AdamOptions& options(size_t group = 0) const { return options_.at(group); }

 protected:
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled);
  std::vector<std::string> state_names(const Hyperparameters& values) const override;
  void update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state, size_t group) override;
  Hyperparameters hyperparameters(size_t group) const override;
  std::vector<std::string> check_hyperparameters(const Hyperparameters& values) const override;
  void set_hyperparameters(size_t group, const Hyperparameters& values) override;

 private:
  std::vector<AdamOptions> options_;  // per group
  bool decoupled_;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // PyTorch's AdamW default
};

// torch.optim.AdamW: p *= 1 − lr·wd, then the Adam update without L2 in the gradient.
class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  size_t add_param_group(std::vector<Tensor> params, AdamWOptions options);
  size_t add_param_group(std::vector<Tensor> params) { return Adam::add_param_group(std::move(params)); }
};

// Scales every defined gradient in place so that their joint L2 norm is at most max_norm, by
// min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_, and returns the norm before clipping
// (accumulated in double). A NaN or infinite norm is returned as is and nothing is scaled: the caller decides
// whether to skip the step. A parameter listed twice counts once.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

}  // namespace gradformer::optim

// Optimizers (SGD, Adam, AdamW) with PyTorch's exact update rules, and gradient-norm clipping.
//
// An optimizer holds handles to the parameters it updates (in the order given, which is what its state_dict
// keys refer to: state.<index>.exp_avg) and one learning rate for all of them; a schedule sets it with
// set_lr() before each step(). Each step updates every parameter in one loop over its raw f32/f64 data, and
// skips parameters whose gradient is undefined, as PyTorch does. Not here: parameter groups, schedules
// (nn/schedule.h), the checkpoint file format.
#pragma once

#include "autograd/tensor.h"
#include "nn/module.h"

#include <map>
#include <string>
#include <vector>

namespace gradformer::optim {

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
  double lr() const { return lr_; }
  void set_lr(double lr);
  // How many times step() ran.
  int64_t step_count() const { return step_count_; }
  const std::vector<Tensor>& parameters() const { return params_; }

  // "step" (i64 scalar: step() calls), "lr" (f64 scalar) and, for each parameter that has state,
  // "state.<index>.<name>" for every name of state_names(). Values are detached views of the live state.
  nn::StateDict state_dict() const;
  // Checks every key, shape and per-parameter completeness first and throws one nn::StateDictError listing all
  // problems; only then replaces the state with copies (converted to each parameter's dtype).
  void load_state_dict(const nn::StateDict& dict);

 protected:
  // Parameters must be distinct f32/f64 leaves; `name` is the optimizer's type name for errors.
  Optimizer(std::vector<Tensor> params, double lr, std::string_view name);

  // The per-parameter state an update keeps; "step" is an i64 scalar, every other entry has the parameter's
  // shape and dtype.
  virtual std::vector<std::string> state_names() const = 0;
  // Updates param (contiguous) from grad (contiguous, same dtype). `state` is empty on the parameter's first
  // update; the update creates every entry of state_names() then.
  virtual void update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state) = 0;

  static void check_hyperparameter(std::string_view optimizer, std::string_view name, double value, double low,
                                   double high);

 private:
  std::vector<Tensor> params_;
  std::vector<std::map<std::string, Tensor>> state_;
  double lr_;
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
  const SGDOptions& options() const { return options_; }

 protected:
  std::vector<std::string> state_names() const override;
  void update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state) override;

 private:
  SGDOptions options_;
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
  std::string type_name() const override { return "Adam"; }
  const AdamOptions& options() const { return options_; }

 protected:
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled);
  std::vector<std::string> state_names() const override;
  void update(const Tensor& param, const Tensor& grad, std::map<std::string, Tensor>& state) override;

 private:
  AdamOptions options_;
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
  std::string type_name() const override { return "AdamW"; }
};

// Scales every defined gradient in place so that their joint L2 norm is at most max_norm, by
// min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_, and returns the norm before clipping
// (accumulated in double). A NaN or infinite norm is returned as is and nothing is scaled: the caller decides
// whether to skip the step. A parameter listed twice counts once.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

}  // namespace gradformer::optim

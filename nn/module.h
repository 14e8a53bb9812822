// Module: the base of every layer and model, after PyTorch's C++ frontend. A layer registers its parameters,
// buffers and children in its constructor:
//   weight_ = register_parameter("weight", init::kaiming_uniform_(empty({out, in})));
//   encoder_ = register_module("encoder", std::make_shared<Encoder>(...));
// and dotted names (encoder.layers.0.self_attn.in_proj_weight) fall out of the registration order. Those
// names drive state_dict / load_state_dict (checkpoints), optimizer state and gradient-check messages.
// A module keeps no Generator: its constructor draws the initial weights from the one it is given, and its
// forward draws anything random from the thread's current generator (the rule in autograd/generator.h).
//
// Forward hooks (PyTorch's register_forward_pre_hook / register_forward_hook) see a layer's tensor arguments
// and its output, and may replace either; every library layer runs its forward through with_forward_hooks, and a
// user's layer does the same to take part. With no hook registered that costs one test of a pointer.
//
// This file is the bookkeeping only: no layer, no forward signature (each layer declares its own forward), no
// file format (checkpoints serialise state_dict elsewhere).
#pragma once

#include "autograd/tensor.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace gradformer::nn {

// A state dict that does not fit the module: missing, unexpected or mis-shaped entries.
class StateDictError : public Error { using Error::Error; };

// Name → tensor, sorted by name (so "layers.10" sorts before "layers.2"; named_parameters() keeps
// registration order).
using StateDict = std::map<std::string, Tensor>;

// What does not fit when a state dict is loaded into a module, one phrase per kind ("2 missing key(s): a, b"),
// shared by Module::load_state_dict and the checkpoint loaders; missing and unexpected keys count only when
// strict. Empty when everything fits.
std::vector<std::string> describe_key_problems(const std::vector<std::string>& missing,
                                               const std::vector<std::string>& unexpected,
                                               const std::vector<std::string>& mismatched, bool strict,
                                               std::string_view mismatch_label);

class Module;

// Runs before a module's forward with the tensors it was called with (an undefined tensor for an optional
// argument left out); returning tensors replaces them (as many as came in), std::nullopt keeps them.
using ForwardPreHook =
    std::function<std::optional<std::vector<Tensor>>(const Module& module, const std::vector<Tensor>& inputs)>;
// Runs after a module's forward with the inputs the forward saw and its output (a result struct's `.output`);
// returning a tensor replaces the output, std::nullopt keeps it.
using ForwardHook = std::function<std::optional<Tensor>(const Module& module, const std::vector<Tensor>& inputs,
                                                       const Tensor& output)>;

// A module's hooks, in registration order; shared with the handles, which may outlive the module.
struct ForwardHooks {
  std::vector<std::pair<uint64_t, ForwardPreHook>> pre;
  std::vector<std::pair<uint64_t, ForwardHook>> post;
  uint64_t next_id = 0;
  bool empty() const { return pre.empty() && post.empty(); }
};

// What register_forward_hook returns: the handle Tensor::register_hook returns too (autograd/tensor.h), whose
// remove() unregisters the hook (a second remove(), or one after the module is gone, does nothing). Dropping the
// handle keeps the hook registered, as in PyTorch.
using RemovableHandle = gradformer::RemovableHandle;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name shown by summary() and in error messages; layers override it.
  virtual std::string type_name() const { return "Module"; }

  // Parameters of this module and, with recurse, of every descendant, named relative to this module: a
  // module's own parameters in registration order, then each child's in turn (PyTorch's order). A parameter
  // registered twice (tied weights) is listed once, under its first name, so optimizers update it once and
  // parameter_count() counts it once.
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // This module (named "") followed by every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, const Module*>> named_modules() const;

  // Every parameter and buffer under its full name (tied weights under each of their names, as PyTorch),
  // as detached views that share storage with the module.
  StateDict state_dict() const;
  // Validates everything first and throws one StateDictError that lists every problem: with strict, every
  // missing and every unexpected key; always, every shape mismatch. Only then copies the values in place
  // (converting dtypes), so a failed load leaves the module untouched.
  void load_state_dict(const StateDict& dict, bool strict = true);

  // Training mode (dropout active) for this module and every descendant.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Converts every floating parameter and buffer (and any gradient) to dtype in place: the TensorImpl gets new
  // contiguous storage, so the handles that layers hold see the change. i64 and bool buffers are left alone.
  // Views taken before (state_dict() entries) keep the old storage.
  void to(DType dtype);
  // Drops every parameter's gradient (PyTorch's set_to_none=True).
  void zero_grad();
  // Sets requires_grad on every parameter of this module and its descendants (freezing or unfreezing them):
  // a frozen parameter gets no gradient, so optimizers leave it as it is.
  Module& requires_grad_(bool requires_grad = true);
  int64_t parameter_count() const;

  // Hooks on this module's forward (not its descendants'); each hook runs every time until its handle's remove().
  RemovableHandle register_forward_pre_hook(ForwardPreHook hook);
  RemovableHandle register_forward_hook(ForwardHook hook);
  // A tree like PyTorch's print(model): each module's name and type_name(), its own parameters' shapes and
  // buffers, then the total parameter count.
  std::string summary() const;

 protected:
  // Makes `tensor` a parameter named `name` (it must be a floating leaf) and returns a handle to the same
  // TensorImpl. The impl's name field gets the full dotted name, kept current as this module is registered
  // under parents (a tied weight keeps the name of its most recent registration).
  Tensor register_parameter(std::string name, Tensor tensor, bool requires_grad = true);
  // A tensor saved in state_dict that is not trained (masks, running statistics, position tables).
  Tensor register_buffer(std::string name, Tensor tensor);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    register_child(std::move(name), module);
    return module;
  }

  // A layer's forward in one call: `return with_forward_hooks([&](const Tensor& x) { ... }, x);` runs the
  // forward pre-hooks on the tensor arguments, body on what they leave, then the forward hooks on the result
  // (a Tensor, or a struct whose `.output` the hooks see). Non-tensor arguments go into body by capture.
  template <class Body, class... Inputs>
  auto with_forward_hooks(const Body& body, const Inputs&... inputs) const {
    static_assert((std::is_same_v<Inputs, Tensor> && ...), "with_forward_hooks passes Tensor arguments only");
    if (forward_hooks_ == nullptr || forward_hooks_->empty()) return body(inputs...);
    std::vector<Tensor> seen{inputs...};
    run_forward_pre_hooks(seen);
    auto result = [&]<size_t... I>(std::index_sequence<I...>) {
      return body(seen[I]...);
    }(std::index_sequence_for<Inputs...>{});
    if constexpr (std::is_same_v<decltype(result), Tensor>)
      run_forward_hooks(seen, result);
    else
      run_forward_hooks(seen, result.output);
    return result;
  }

 private:
  void register_child(std::string name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, std::string_view what) const;
  // Sets the dotted prefix under which this module sits and renames everything below it.
  void set_path(const std::string& path);
  std::string full_name(const std::string& local) const { return path_.empty() ? local : path_ + "." + local; }
  void collect(const std::string& prefix, bool recurse, bool buffers,
               std::vector<std::pair<std::string, Tensor>>& out) const;
  void summary_into(std::string& out, const std::string& name, int depth) const;
  void run_forward_pre_hooks(std::vector<Tensor>& inputs) const;
  void run_forward_hooks(const std::vector<Tensor>& inputs, Tensor& output) const;

  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::string path_;  // dotted name of this module under the root it was last registered in; "" for a root
  bool training_ = true;
  std::shared_ptr<ForwardHooks> forward_hooks_;  // null until the first hook is registered
};

// A module whose forward takes one tensor and returns one: what a Transformer layer's feed-forward block and
// norms are (nn/transformer.h), so that a user's own can take their place.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) const = 0;
};

// Numbered children: layers.0, layers.1, ... Holds any Module; at<M>(i) gives the concrete layer back.
class ModuleList : public Module {
 public:
  ModuleList() = default;
  std::string type_name() const override { return "ModuleList"; }

  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    items_.push_back(module);
    return register_module(std::to_string(items_.size() - 1), std::move(module));
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  // Throws IndexError naming the index and the size.
  const std::shared_ptr<Module>& operator[](size_t index) const;
  template <class M>
  std::shared_ptr<M> at(size_t index) const {
    auto typed = std::dynamic_pointer_cast<M>((*this)[index]);
    if (!typed)
      fail<ValueError>("ModuleList", "item {} is a {}, not the type asked for", index, (*this)[index]->type_name());
    return typed;
  }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace gradformer::nn

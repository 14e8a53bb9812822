// Module bookkeeping: registration, dotted names, state dicts, modes and in-place dtype conversion.
#include "nn/module.h"

#include "autograd/engine.h"

#include <set>
#include <utility>

namespace gradformer::nn {

namespace {

// "1234567" -> "1,234,567"
std::string with_thousands(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The first few names and how many more: a checkpoint of another model can miss tens of thousands of keys, and
// a message of megabytes helps no one.
std::string join_names(const std::vector<std::string>& names, std::string_view separator = ", ") {
  constexpr size_t shown = 8;
  if (names.size() <= shown) return fmt::format("{}", fmt::join(names, separator));
  return fmt::format("{}{}... and {} more", fmt::join(names.begin(), names.begin() + shown, separator), separator,
                     names.size() - shown);
}

// Gives t's TensorImpl new contiguous storage holding its values converted to dtype.
void convert_in_place(const Tensor& t, DType dtype) {
  const Tensor converted = t.detach().to(dtype).contiguous();
  TensorImpl& impl = t.impl();
  impl.storage = converted.storage();
  impl.strides = converted.strides();
  impl.offset = converted.offset();
  impl.dtype = dtype;
}

}  // namespace

std::vector<std::string> describe_key_problems(const std::vector<std::string>& missing,
                                               const std::vector<std::string>& unexpected,
                                               const std::vector<std::string>& mismatched, bool strict,
                                               std::string_view mismatch_label) {
  std::vector<std::string> problems;
  if (strict && !missing.empty())
    problems.push_back(fmt::format("{} missing key(s): {}", missing.size(), join_names(missing)));
  if (strict && !unexpected.empty())
    problems.push_back(fmt::format("{} unexpected key(s): {}", unexpected.size(), join_names(unexpected)));
  if (!mismatched.empty())
    problems.push_back(fmt::format("{} {}: {}", mismatched.size(), mismatch_label, join_names(mismatched, "; ")));
  return problems;
}

void Module::check_new_name(const std::string& name, std::string_view what) const {
  if (name.empty() || name.find('.') != std::string::npos)
    fail<ValueError>(type_name(), "{} name '{}' must be non-empty and contain no '.'", what, name);
  auto taken = [&](const auto& entries) {
    for (const auto& entry : entries)
      if (entry.first == name) return true;
    return false;
  };
  if (taken(parameters_) || taken(buffers_) || taken(children_))
    fail<ValueError>(type_name(), "cannot register {} '{}': the name is already taken", what, name);
}

Tensor Module::register_parameter(std::string name, Tensor tensor, bool requires_grad) {
  check_new_name(name, "parameter");
  if (!tensor.defined()) fail<ValueError>(type_name(), "parameter '{}' is an undefined tensor", name);
  if (!is_floating(tensor.dtype()))
    fail<DTypeError>(type_name(), "parameter '{}' must be f32 or f64, got {}", name, dtype_name(tensor.dtype()));
  if (!tensor.is_leaf())
    fail<ValueError>(type_name(), "parameter '{}' comes from {}; register a leaf (use detach())", name,
                     tensor.grad_fn()->op());
  tensor.requires_grad_(requires_grad);
  tensor.set_name(full_name(name));
  parameters_.emplace_back(std::move(name), tensor);
  return tensor;
}

Tensor Module::register_buffer(std::string name, Tensor tensor) {
  check_new_name(name, "buffer");
  if (!tensor.defined()) fail<ValueError>(type_name(), "buffer '{}' is an undefined tensor", name);
  tensor.set_name(full_name(name));
  buffers_.emplace_back(std::move(name), tensor);
  return tensor;
}

void Module::register_child(std::string name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  if (!module) fail<ValueError>(type_name(), "module '{}' is a null pointer", name);
  module->set_path(full_name(name));
  children_.emplace_back(std::move(name), std::move(module));
}

void Module::set_path(const std::string& path) {
  path_ = path;
  for (auto& [name, tensor] : parameters_) tensor.set_name(full_name(name));
  for (auto& [name, tensor] : buffers_) tensor.set_name(full_name(name));
  for (auto& [name, child] : children_) child->set_path(full_name(name));
}

void Module::collect(const std::string& prefix, bool recurse, bool buffers,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_) out.emplace_back(prefix + name, tensor);
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", true, buffers, out);
}

namespace {

std::vector<std::pair<std::string, Tensor>> unique_by_impl(std::vector<std::pair<std::string, Tensor>> all) {
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& entry : all)
    if (seen.insert(entry.second.impl_ptr().get()).second) out.push_back(std::move(entry));
  return out;
}

std::vector<Tensor> tensors_of(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::vector<Tensor> out;
  out.reserve(named.size());
  for (const auto& entry : named) out.push_back(entry.second);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", recurse, false, all);
  return unique_by_impl(std::move(all));
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", recurse, true, all);
  return unique_by_impl(std::move(all));
}

std::vector<Tensor> Module::parameters(bool recurse) const { return tensors_of(named_parameters(recurse)); }
std::vector<Tensor> Module::buffers(bool recurse) const { return tensors_of(named_buffers(recurse)); }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& entry : children_) out.push_back(entry.second);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (auto& [sub, module] : child->named_modules()) out.emplace_back(sub.empty() ? name : name + "." + sub, module);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (auto& [sub, module] : std::as_const(*child).named_modules())
      out.emplace_back(sub.empty() ? name : name + "." + sub, module);
  return out;
}

StateDict Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", true, false, all);
  collect("", true, true, all);
  StateDict dict;
  for (const auto& [name, tensor] : all) dict.emplace(name, tensor.detach());
  return dict;
}

void Module::load_state_dict(const StateDict& dict, bool strict) {
  std::vector<std::pair<std::string, Tensor>> targets;
  collect("", true, false, targets);
  collect("", true, true, targets);

  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> expected;
  for (const auto& [name, target] : targets) {
    expected.insert(name);
    const auto it = dict.find(name);
    if (it == dict.end()) {
      missing.push_back(name);
    } else if (!it->second.defined()) {
      mismatched.push_back(fmt::format("{}: undefined tensor in the state dict, model {}", name,
                                       shape_str(target.shape())));
    } else if (it->second.shape() != target.shape()) {
      mismatched.push_back(fmt::format("{}: state dict {}, model {}", name, shape_str(it->second.shape()),
                                       shape_str(target.shape())));
    }
  }
  for (const auto& entry : dict)
    if (!expected.contains(entry.first)) unexpected.push_back(entry.first);

  const std::vector<std::string> problems =
      describe_key_problems(missing, unexpected, mismatched, strict, "shape mismatch(es)");
  if (!problems.empty())
    fail<StateDictError>(fmt::format("{}.load_state_dict", type_name()), "{}", fmt::join(problems, "; "));

  NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    const auto it = dict.find(name);
    if (it != dict.end()) target.detach().copy_(it->second);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& entry : children_) entry.second->train(on);
}

void Module::to(DType dtype) {
  if (!is_floating(dtype))
    fail<DTypeError>(fmt::format("{}.to", type_name()), "expects f32 or f64, got {}", dtype_name(dtype));
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", true, false, all);
  collect("", true, true, all);
  for (const auto& [name, tensor] : unique_by_impl(std::move(all))) {
    if (!is_floating(tensor.dtype()) || tensor.dtype() == dtype) continue;
    convert_in_place(tensor, dtype);
    if (tensor.grad().defined()) convert_in_place(tensor.grad(), dtype);
  }
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.zero_grad();
}

Module& Module::requires_grad_(bool requires_grad) {
  for (Tensor& p : parameters()) p.requires_grad_(requires_grad);
  return *this;
}

namespace {

void erase_forward_hook(void* hooks, uint64_t id) {
  auto* list = static_cast<ForwardHooks*>(hooks);
  std::erase_if(list->pre, [id](const auto& entry) { return entry.first == id; });
  std::erase_if(list->post, [id](const auto& entry) { return entry.first == id; });
}

}  // namespace

RemovableHandle Module::register_forward_pre_hook(ForwardPreHook hook) {
  if (!hook) fail<ValueError>(fmt::format("{}.register_forward_pre_hook", type_name()), "the hook is empty");
  if (!forward_hooks_) forward_hooks_ = std::make_shared<ForwardHooks>();
  const uint64_t id = forward_hooks_->next_id++;
  forward_hooks_->pre.emplace_back(id, std::move(hook));
  return RemovableHandle(forward_hooks_, id, erase_forward_hook);
}

RemovableHandle Module::register_forward_hook(ForwardHook hook) {
  if (!hook) fail<ValueError>(fmt::format("{}.register_forward_hook", type_name()), "the hook is empty");
  if (!forward_hooks_) forward_hooks_ = std::make_shared<ForwardHooks>();
  const uint64_t id = forward_hooks_->next_id++;
  forward_hooks_->post.emplace_back(id, std::move(hook));
  return RemovableHandle(forward_hooks_, id, erase_forward_hook);
}

void Module::run_forward_pre_hooks(std::vector<Tensor>& inputs) const {
  // A copy of the list: a hook may remove itself (or another) while it runs.
  const auto hooks = forward_hooks_->pre;
  for (const auto& entry : hooks) {
    std::optional<std::vector<Tensor>> replaced = entry.second(*this, inputs);
    if (!replaced) continue;
    if (replaced->size() != inputs.size())
      fail<ValueError>(fmt::format("{}{} forward pre-hook", type_name(), path_.empty() ? "" : " " + path_),
                       "returned {} tensors for a forward that takes {}", replaced->size(), inputs.size());
    inputs = std::move(*replaced);
  }
}

void Module::run_forward_hooks(const std::vector<Tensor>& inputs, Tensor& output) const {
  const auto hooks = forward_hooks_->post;
  for (const auto& entry : hooks) {
    std::optional<Tensor> replaced = entry.second(*this, inputs, output);
    if (replaced) output = std::move(*replaced);
  }
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::summary_into(std::string& out, const std::string& name, int depth) const {
  const std::string indent(static_cast<size_t>(depth) * 2, ' ');
  int64_t own = 0;
  for (const auto& entry : parameters_) own += entry.second.numel();
  out += indent + (name.empty() ? "" : "(" + name + "): ") + type_name();
  if (own > 0) out += fmt::format("  [{} own parameters]", with_thousands(own));
  out += '\n';
  for (const auto& [pname, tensor] : parameters_)
    out += fmt::format("{}  {}: {} {}\n", indent, pname, shape_str(tensor.shape()), dtype_name(tensor.dtype()));
  for (const auto& [bname, tensor] : buffers_)
    out += fmt::format("{}  {}: {} {} (buffer)\n", indent, bname, shape_str(tensor.shape()),
                       dtype_name(tensor.dtype()));
  for (const auto& [cname, child] : children_) child->summary_into(out, cname, depth + 1);
}

std::string Module::summary() const {
  std::string out;
  summary_into(out, "", 0);
  out += fmt::format("Total parameters: {}\n", with_thousands(parameter_count()));
  return out;
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t index) const {
  if (index >= items_.size())
    fail<IndexError>("ModuleList", "index {} is out of range for a list of {} modules", index, items_.size());
  return items_[index];
}

}  // namespace gradformer::nn

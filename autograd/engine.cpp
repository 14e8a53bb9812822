// The topological backward pass. Kahn's algorithm over the nodes reachable from the root: count how many
// edges point at each node, then run a node once all of its consumers have delivered their gradient. Both
// passes use explicit stacks, so a graph of any depth runs in constant stack space.
#include "autograd/engine.h"

#include "autograd/dispatch.h"
#include "autograd/strided.h"

#include <fmt/format.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <unordered_map>

namespace gradformer {
namespace {

thread_local bool grad_enabled = true;
thread_local bool anomaly_enabled = false;
thread_local const GradReadyHook* grad_ready_hook = nullptr;
thread_local ForwardModes forward_modes;
std::atomic<int64_t> live_nodes{0};

// out = a + b elementwise, same shape and dtype; out may be a itself (then it is a += b). Gradients are mostly
// dense, so this is mostly one vectorised run.
void add_to(const Tensor& out, const Tensor& a, const Tensor& b) {
  StridedLayout<3> layout{a.shape(), {out.strides(), a.strides(), b.strides()}};
  visit_floating(a.dtype(), "gradient accumulation", [&]<class T>(std::type_identity<T>) {
    for_each_run<3>(layout, {out.raw_data(), const_cast<std::byte*>(a.read_only_raw_data()), const_cast<std::byte*>(b.read_only_raw_data())}, {sizeof(T), sizeof(T), sizeof(T)}, true,
                    [](std::array<std::byte*, 3> p, int64_t n, const std::array<int64_t, 3>& s) {
                      T* z = reinterpret_cast<T*>(p[0]);
                      const T* x = reinterpret_cast<const T*>(p[1]);
                      const T* y = reinterpret_cast<const T*>(p[2]);
                      if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
                        for (int64_t i = 0; i < n; ++i) z[i] = x[i] + y[i];
                      } else {
                        for (int64_t i = 0; i < n; ++i) z[i * s[0]] = x[i * s[1]] + y[i * s[2]];
                      }
                    });
  });
}

// Whether the engine may write into t and keep it: a dense tensor that no one else can see, its handle held only
// by the caller and its storage by no other tensor or view (a backward that returns dout itself, or a tensor it
// also saved, fails this). Then the first gradient to arrive is kept as it is, not copied.
bool exclusively_owned(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous();
}

// a + b as a tensor the engine owns: into a or b when one of them is exclusively owned (IEEE addition commutes, so
// the sum is the same either way), else into a new tensor.
Tensor accumulated(Tensor a, Tensor b) {
  if (!exclusively_owned(a)) std::swap(a, b);
  if (exclusively_owned(a)) {
    add_to(a, a, b);
    return a;
  }
  Tensor sum = empty(a.shape(), a.dtype());
  add_to(sum, a, b);
  return sum;
}

void check_gradient(const Node& node, size_t input, const Node::Edge& edge, const Tensor& grad) {
  if (grad.shape() != edge.shape || grad.dtype() != edge.dtype)
    fail<AutogradError>(node.op(), "backward returned a {} gradient of shape {} for input {} of dtype {} and shape {}",
                        dtype_name(grad.dtype()), shape_str(grad.shape()), input, dtype_name(edge.dtype),
                        shape_str(edge.shape));
}

// What anomaly mode looks for. Integer and bool tensors are always finite.
struct NonFinite {
  bool nan = false, inf = false;
  bool any() const { return nan || inf; }
  const char* name() const { return nan ? "NaN" : "Inf"; }
};

// Whether x holds Inf or NaN: those are the values whose exponent field is all ones. A bit test instead of
// std::isfinite leaves the loop without a branch, so it vectorises (anomaly mode scans every output).
template <class T>
bool any_non_finite(const T* x, int64_t n, int64_t stride) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits exponent = std::bit_cast<Bits>(std::numeric_limits<T>::infinity());
  Bits found = 0;
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) found |= (std::bit_cast<Bits>(x[i]) & exponent) == exponent;
  } else {
    for (int64_t i = 0; i < n; ++i) found |= (std::bit_cast<Bits>(x[i * stride]) & exponent) == exponent;
  }
  return found != 0;
}

NonFinite scan_non_finite(const Tensor& t) {
  NonFinite found;
  if (!t.defined() || !is_floating(t.dtype())) return found;
  StridedLayout<1> layout{t.shape(), {t.strides()}};
  visit_floating(t.dtype(), "anomaly detection", [&]<class T>(std::type_identity<T>) {
    for_each_run<1>(layout, {const_cast<std::byte*>(t.read_only_raw_data())}, {sizeof(T)}, false,
                    [&found](std::array<std::byte*, 1> p, int64_t n, const std::array<int64_t, 1>& s) {
                      const T* x = reinterpret_cast<const T*>(p[0]);
                      if (!any_non_finite(x, n, s[0])) return;
                      for (int64_t i = 0; i < n; ++i) {
                        found.nan = found.nan || std::isnan(x[i * s[0]]);
                        found.inf = found.inf || std::isinf(x[i * s[0]]);
                      }
                    });
  });
  return found;
}

std::string input_shapes(const std::vector<Tensor>& inputs) {
  std::vector<std::string> shapes;
  for (const Tensor& input : inputs) shapes.push_back(input.defined() ? shape_str(input.shape()) : "none");
  return fmt::format("{}", fmt::join(shapes, ", "));
}

std::string input_shapes(const std::vector<Node::Edge>& edges) {
  std::vector<std::string> shapes;
  for (const Node::Edge& edge : edges) shapes.push_back(shape_str(edge.shape));
  return fmt::format("{}", fmt::join(shapes, ", "));
}

// The forward half of anomaly mode: a NaN anywhere is a fault; an Inf is one unless an input already held a
// non-finite value (the op passed it on) or the op makes infinities on purpose.
void check_forward(const Tensor& output, std::string_view op, const std::vector<Tensor>& inputs,
                   Infinities infinities) {
  const NonFinite found = scan_non_finite(output);
  if (!found.any()) return;
  if (!found.nan) {
    if (infinities == Infinities::intended) return;
    for (const Tensor& input : inputs)
      if (scan_non_finite(input).any()) return;
  }
  fail<NumericalError>(op, "anomaly detected in forward: the output of shape {} holds {} (inputs of shapes {})",
                       shape_str(output.shape()), found.name(), input_shapes(inputs));
}

// A gradient bound for a module's parameter is named after it (Module::register_parameter names the tensor).
void check_backward(const Node& node, size_t input, const Node::Edge& edge, const Tensor& grad) {
  const NonFinite found = scan_non_finite(grad);
  if (!found.any()) return;
  const std::shared_ptr<TensorImpl> leaf = edge.leaf.lock();
  const std::string parameter = leaf && !leaf->name.empty() ? "parameter " + leaf->name + ", " : "";
  fail<NumericalError>(node.op(), "anomaly detected in backward: the gradient for input {} ({}shape {}) holds {} "
                       "(inputs of shapes {})", input, parameter, shape_str(grad.shape()), found.name(),
                       input_shapes(node.inputs()));
}

// For the grad-ready hook: how many edges from the graph point at each leaf, counted while the graph is walked
// before backward, and counted down as backward processes them; the hook hears of a leaf when its count reaches 0.
class LeafCountdown {
 public:
  explicit LeafCountdown(const GradReadyHook* hook) : hook_(hook) {}
  void expect(const Node::Edge& edge) {
    if (!hook_ || !edge.from_leaf) return;
    if (const std::shared_ptr<TensorImpl> leaf = edge.leaf.lock()) ++pending_[leaf.get()];
  }
  void processed(const Node::Edge& edge) {
    if (!hook_ || !edge.from_leaf) return;
    const std::shared_ptr<TensorImpl> leaf = edge.leaf.lock();
    if (leaf && --pending_[leaf.get()] == 0) (*hook_)(Tensor(leaf));
  }

 private:
  const GradReadyHook* hook_;
  std::unordered_map<const TensorImpl*, int64_t> pending_;
};

}  // namespace

GradReadyHookGuard::GradReadyHookGuard(GradReadyHook hook) : hook_(std::move(hook)), previous_(grad_ready_hook) {
  grad_ready_hook = &hook_;
}
GradReadyHookGuard::~GradReadyHookGuard() { grad_ready_hook = previous_; }

Node::~Node() {
  --live_nodes;
  // Dropping the last reference to a long chain would destroy it recursively; move the nodes we own alone
  // onto a local list instead and destroy them one at a time.
  std::vector<std::shared_ptr<Node>> orphans;
  auto adopt = [&orphans](std::vector<Edge>& edges) {
    for (Edge& edge : edges)
      if (edge.node && edge.node.use_count() == 1) orphans.push_back(std::move(edge.node));
  };
  adopt(inputs_);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    adopt(node->inputs_);
    node->backward_ = nullptr;  // its captures may hold tensors whose grad_fn chains are long too
  }
}

bool grad_mode_enabled() { return grad_enabled; }

NoGradGuard::NoGradGuard() : previous_(grad_enabled) { grad_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_enabled = previous_; }

GradModeGuard::GradModeGuard(bool enabled) : previous_(grad_enabled) { grad_enabled = enabled; }
GradModeGuard::~GradModeGuard() { grad_enabled = previous_; }

ForwardModes current_forward_modes() { return forward_modes; }

ForwardModesGuard::ForwardModesGuard(ForwardModes modes) : previous_(forward_modes) { forward_modes = modes; }
ForwardModesGuard::~ForwardModesGuard() { forward_modes = previous_; }

bool anomaly_mode_enabled() { return anomaly_enabled; }
void set_detect_anomaly(bool enabled) { anomaly_enabled = enabled; }

DetectAnomalyGuard::DetectAnomalyGuard() : previous_(anomaly_enabled) { anomaly_enabled = true; }
DetectAnomalyGuard::~DetectAnomalyGuard() { anomaly_enabled = previous_; }

int64_t live_node_count() { return live_nodes.load(); }

namespace {

// The tensor in a create_graph backward that stands for a saved input: the same values, connected to the input's
// producer (or the leaf itself), so that the formula's use of it is differentiated too.
Tensor attached_input(const Node::Edge& edge, const Tensor& data) {
  if (edge.node) {
    Tensor attached = data.detach();
    attached.impl().grad_fn = edge.node;
    return attached;
  }
  if (const std::shared_ptr<TensorImpl> leaf = edge.leaf.lock()) return Tensor(leaf);
  return data;
}

void check_version(const Node& node, const SavedTensor& saved, std::string_view what) {
  const uint64_t now = saved.data.storage()->version();
  if (now != saved.version)
    fail<AutogradError>(node.op(), "one of the variables needed for gradient computation has been modified by an "
                        "inplace operation: the {} of shape {} ({}) is at version {}; expected version {} (it was "
                        "saved for backward at that version)", what, shape_str(saved.data.shape()),
                        dtype_name(saved.data.dtype()), now, saved.version);
}

// Every tensor the node saved, before its backward runs: one integer compare each.
void check_saved_versions(const Node& node) {
  for (size_t i = 0; i < node.saved_inputs().size(); ++i)
    if (node.saved_input(i)) check_version(node, node.saved_inputs()[i], fmt::format("input {}", i));
  if (node.saved_output().defined()) check_version(node, node.saved_output(), "output");
}

// In a backward that records (create_graph), a formula computed by a kernel alone would give a gradient that
// silently reads as constant to the next differentiation. Two signs of that: a gradient without a graph from a
// gradient with one (every formula here is linear in dout), and a node whose backward never read back the
// tensors it saved (so did not see them connected).
void check_recorded(const Node& node, const Tensor& grad_output, const InputGrads& grads) {
  bool any_grad = false, detached = false;
  for (size_t i = 0; i < node.inputs().size(); ++i) {
    const Tensor& grad = grads.peek(i);
    if (!grad.defined()) continue;
    any_grad = true;
    detached = detached || !grad.requires_grad();
  }
  bool saved_requiring_grad = node.saved_output().defined();
  for (size_t i = 0; i < node.saved_inputs().size(); ++i)
    saved_requiring_grad = saved_requiring_grad || (node.saved_input(i) && node.inputs()[i].needs_grad());
  if ((grad_output.requires_grad() && detached) || (any_grad && saved_requiring_grad && !grads.read_saved()))
    fail<AutogradError>(node.op(), "its backward is not recorded, so the gradient it gives cannot be differentiated "
                        "again (create_graph); this op supports first-order gradients only");
}

}  // namespace

Tensor InputGrads::saved(size_t input) const {
  if (!node_.saved_input(input))
    fail<AutogradError>(node_.op(), "backward reads input {}, which the op did not save (record it as saved(input))",
                        input);
  const SavedTensor& saved = node_.saved_inputs()[input];
  check_version(node_, saved, fmt::format("input {}", input));
  read_saved_ = true;
  return create_graph_ ? attached_input(node_.inputs()[input], saved.data) : saved.data;
}

Tensor InputGrads::saved_output() const {
  const SavedTensor& saved = node_.saved_output();
  if (!saved.defined())
    fail<AutogradError>(node_.op(), "backward reads its output, which the op did not save (record it as saved(output))");
  check_version(node_, saved, "output");
  read_saved_ = true;
  if (!create_graph_) return saved.data;
  // The output, connected to this node again (PyTorch's SavedVariable for outputs): the node keeps only the
  // values, since a node that held its output's handle would own the tensor that owns it.
  Tensor attached = saved.data.detach();
  attached.impl().grad_fn = std::const_pointer_cast<Node>(node_.shared_from_this());
  return attached;
}

RemovableHandle::RemovableHandle(std::weak_ptr<GradHooks> hooks, uint64_t id)
    : RemovableHandle(std::weak_ptr<void>(std::move(hooks)), id, [](void* list, uint64_t which) {
        std::erase_if(static_cast<GradHooks*>(list)->entries, [which](const auto& entry) { return entry.first == which; });
      }) {}

void RemovableHandle::remove() {
  if (const std::shared_ptr<void> hooks = hooks_.lock(); hooks && erase_) erase_(hooks.get(), id_);
  hooks_.reset();
}

Tensor record(RecordedTensor output, RecordedOp op, std::vector<RecordedTensor> inputs, BackwardFn backward,
              Infinities infinities);

Tensor record(RecordedTensor output, RecordedOp op, const std::vector<Tensor>& inputs, BackwardFn backward,
              Infinities infinities) {
  return record(std::move(output), op, std::vector<RecordedTensor>(inputs.begin(), inputs.end()), std::move(backward),
                infinities);
}

Tensor record(RecordedTensor output, RecordedOp op, std::initializer_list<Tensor> inputs, BackwardFn backward,
              Infinities infinities) {
  return record(std::move(output), op, std::vector<RecordedTensor>(inputs.begin(), inputs.end()), std::move(backward),
                infinities);
}

Tensor record(RecordedTensor output, RecordedOp op, std::initializer_list<RecordedTensor> inputs, BackwardFn backward,
              Infinities infinities) {
  return record(std::move(output), op, std::vector<RecordedTensor>(inputs), std::move(backward), infinities);
}

Tensor record(RecordedTensor recorded_output, RecordedOp op, std::vector<RecordedTensor> inputs, BackwardFn backward,
              Infinities infinities) {
  Tensor output = std::move(recorded_output.tensor);
  if (!grad_enabled) return output;
  if (anomaly_enabled) {
    std::vector<Tensor> values;
    for (const RecordedTensor& input : inputs) values.push_back(input.tensor);
    check_forward(output, op.name, values, infinities);
  }
  bool any = false;
  for (const RecordedTensor& input : inputs) any = any || (input.tensor.defined() && input.tensor.requires_grad());
  if (!any) return output;
  std::vector<Node::Edge> edges(inputs.size());
  std::vector<SavedTensor> saved_inputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i].tensor;
    if (!input.defined()) continue;
    if (inputs[i].saved) {
      saved_inputs.resize(inputs.size());
      saved_inputs[i] = SavedTensor{input.detach(), input.storage()->version()};
    }
    if (anomaly_enabled || input.requires_grad()) {
      edges[i].shape = input.shape();
      edges[i].dtype = input.dtype();
    }
    if (!input.requires_grad()) continue;
    if (input.grad_fn()) {
      edges[i].node = input.grad_fn();
    } else {
      edges[i].leaf = input.impl_ptr();
      edges[i].from_leaf = true;
    }
  }
  // The output may be a view sharing an input's TensorImpl fields but never the TensorImpl itself.
  if (output.grad_fn()) output = output.detach();
  SavedTensor saved_output;
  if (recorded_output.saved) saved_output = SavedTensor{output.detach(), output.storage()->version()};
  ++live_nodes;
  output.impl().grad_fn = std::make_shared<Node>(op, std::move(edges), std::move(backward), std::move(saved_inputs),
                                                 std::move(saved_output));
  return output;
}

namespace {

// a + b for two gradients of one shape, recorded (create_graph) so that the sum can be differentiated too.
Tensor recorded_sum(const Tensor& a, const Tensor& b) {
  Tensor sum = empty(a.shape(), a.dtype());
  add_to(sum, a, b);
  return record(sum, Op::add, {a, b}, [](const Tensor& dout, InputGrads& grads) {
    if (grads.needs(0)) grads[0] = dout;
    if (grads.needs(1)) grads[1] = dout;
  });
}

// Runs the hooks on a gradient; each sees what the one before returned.
Tensor run_hooks(const GradHooks& hooks, Tensor grad, std::string_view where) {
  for (const auto& [id, hook] : std::vector(hooks.entries)) {
    Tensor replaced = hook(grad);
    if (!replaced.defined()) continue;
    if (replaced.shape() != grad.shape() || replaced.dtype() != grad.dtype())
      fail<ShapeError>(where, "a gradient hook returned {} {} for a gradient {} {}", dtype_name(replaced.dtype()),
                       shape_str(replaced.shape()), dtype_name(grad.dtype()), shape_str(grad.shape()));
    grad = std::move(replaced);
  }
  return grad;
}

// The seed of each root: the given gradient, or ones for a scalar root given none.
Tensor seed_of(const Tensor& root, const Tensor& gradient) {
  if (!root.requires_grad())
    fail<AutogradError>("backward", "the tensor of shape {} does not require grad and has no grad_fn",
                        shape_str(root.shape()));
  if (!gradient.defined()) {
    if (root.numel() != 1)
      fail<AutogradError>("backward", "grad can be implicitly created only for scalar outputs; got shape {}, "
                          "pass a gradient of that shape", shape_str(root.shape()));
    return ones(root.shape(), root.dtype());
  }
  if (gradient.shape() != root.shape() || gradient.dtype() != root.dtype())
    fail<ShapeError>("backward", "gradient {} {} does not match the output {} {}", dtype_name(gradient.dtype()),
                     shape_str(gradient.shape()), dtype_name(root.dtype()), shape_str(root.shape()));
  return gradient;
}

}  // namespace

void Tensor::retain_grad() const {
  if (!requires_grad())
    fail<AutogradError>("retain_grad", "the tensor of shape {} does not require grad", shape_str(shape()));
  if (is_leaf() || impl().retains_grad) return;
  impl().retains_grad = true;
  // The hook holds the tensor weakly: the tensor owns its grad_fn, which owns the hook.
  register_hook([weak = std::weak_ptr<TensorImpl>(impl_ptr())](const Tensor& grad) {
    const std::shared_ptr<TensorImpl> target = weak.lock();
    if (!target) return Tensor();
    if (!target->grad) {
      // A copy unless it has a graph: the gradient passed on may be summed into in place by the engine later.
      Tensor kept = grad;
      if (!grad.requires_grad()) {
        kept = empty(grad.shape(), grad.dtype());
        kept.copy_(grad);
      }
      target->grad = kept.impl_ptr();
    } else {
      const Tensor old(target->grad);
      target->grad = (grad.requires_grad() || old.requires_grad() ? recorded_sum(old, grad) : accumulated(old.detach(), grad))
                         .impl_ptr();
    }
    return Tensor();
  });
}

std::vector<Tensor> Engine::run(const Pass& pass) {
  const bool create_graph = pass.create_graph;
  const std::vector<Tensor>* capture = pass.capture;
  // Backward formulas are recorded only for create_graph: then their results can be differentiated again.
  const GradModeGuard grad_mode(create_graph);

  // What grad() returns: gradients by captured leaf, and by the node of each captured non-leaf.
  std::unordered_map<const TensorImpl*, size_t> captured_leaves;
  std::unordered_map<const Node*, size_t> captured_nodes;
  std::vector<Tensor> captured(capture ? capture->size() : 0);
  if (capture) {
    for (size_t i = 0; i < capture->size(); ++i) {
      const Tensor& t = (*capture)[i];
      if (t.grad_fn())
        captured_nodes.emplace(t.grad_fn().get(), i);
      else
        captured_leaves.emplace(t.impl_ptr().get(), i);
    }
  }
  auto add_captured = [&](size_t slot, Tensor grad) {
    if (!captured[slot].defined())
      captured[slot] = std::move(grad);
    else
      captured[slot] = create_graph ? recorded_sum(captured[slot], grad) : accumulated(captured[slot], grad);
  };

  auto accumulate_leaf = [&](const std::shared_ptr<TensorImpl>& leaf, Tensor grad) {
    if (leaf->hooks) grad = run_hooks(*leaf->hooks, std::move(grad), "backward");
    if (capture) {
      if (const auto it = captured_leaves.find(leaf.get()); it != captured_leaves.end()) add_captured(it->second, grad);
      return;
    }
    const bool graph = grad.requires_grad() || (leaf->grad && leaf->grad->grad_fn);
    if (leaf->grad && leaf->grad_is_view) {
      const Tensor sum(leaf->grad);
      add_to(sum, sum, grad);
    } else if (leaf->grad && graph) {  // out of place, so that neither sum's graph sees the other change
      leaf->grad = (create_graph ? recorded_sum(Tensor(leaf->grad), grad) : accumulated(Tensor(leaf->grad).detach(), grad))
                       .impl_ptr();
    } else if (leaf->grad) {
      const Tensor sum(leaf->grad);
      add_to(sum, sum, grad);
    } else if (exclusively_owned(grad) || grad.requires_grad()) {
      leaf->grad = grad.impl_ptr();
    } else {  // a copy: the incoming gradient may alias another's, or be a broadcast view
      Tensor copy = empty(grad.shape(), grad.dtype());
      copy.copy_(grad);
      leaf->grad = copy.impl_ptr();
    }
  };

  std::vector<Node*> roots;
  std::unordered_map<Node*, Tensor> buffers;
  for (size_t r = 0; r < pass.roots.size(); ++r) {
    const Tensor& root = pass.roots[r];
    Tensor seed = seed_of(root, r < pass.gradients.size() ? pass.gradients[r] : Tensor());
    if (!root.grad_fn()) {
      accumulate_leaf(root.impl_ptr(), seed);
      if (grad_ready_hook && !capture) (*grad_ready_hook)(root);
      continue;
    }
    Node* node = root.grad_fn().get();
    auto [it, inserted] = buffers.try_emplace(node, std::move(seed));
    if (inserted)
      roots.push_back(node);
    else
      it->second = create_graph ? recorded_sum(it->second, seed) : accumulated(std::move(it->second), seed);
  }

  // Pass 1: how many consumers will send each node a gradient, and the nodes in an order where every consumer
  // comes before what it consumes.
  std::unordered_map<Node*, int64_t> pending;
  LeafCountdown leaves(capture ? nullptr : grad_ready_hook);
  std::vector<Node*> stack(roots);
  std::vector<Node*> reached;
  for (Node* root : roots) pending[root] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    reached.push_back(node);
    for (const Node::Edge& edge : node->inputs_) {
      leaves.expect(edge);
      if (!edge.node) continue;
      auto [it, inserted] = pending.try_emplace(edge.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(edge.node.get());
    }
  }
  // For grad(): only the nodes with a captured tensor at or below them run (torch.autograd.grad's pruning). A node
  // reached is visited after all of its consumers in reverse Kahn order, so one sweep of the Kahn order backwards
  // settles each node after everything below it.
  std::unordered_map<const Node*, bool> leads_to_capture;
  if (capture) {
    std::unordered_map<Node*, int64_t> remaining(pending);
    std::vector<Node*> order, ready(roots);
    while (!ready.empty()) {
      Node* node = ready.back();
      ready.pop_back();
      order.push_back(node);
      for (const Node::Edge& edge : node->inputs_)
        if (edge.node && --remaining[edge.node.get()] == 0) ready.push_back(edge.node.get());
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      bool leads = false;
      for (const Node::Edge& edge : (*it)->inputs_) {
        if (edge.node) leads = leads || leads_to_capture[edge.node.get()] || captured_nodes.contains(edge.node.get());
        if (const std::shared_ptr<TensorImpl> leaf = edge.leaf.lock()) leads = leads || captured_leaves.contains(leaf.get());
      }
      leads_to_capture[*it] = leads;
    }
  }

  // Pass 2: run each node once all of its gradient has arrived.
  std::vector<Node*> ready;
  for (Node* root : roots)
    if (pending[root] == 0) ready.push_back(root);
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    Tensor grad_output = std::move(buffers[node]);
    buffers.erase(node);
    if (grad_output.defined() && node->hooks_) grad_output = run_hooks(*node->hooks_, std::move(grad_output), node->op());
    if (capture && grad_output.defined()) {
      if (const auto it = captured_nodes.find(node); it != captured_nodes.end()) add_captured(it->second, grad_output);
    }
    const bool runs = grad_output.defined() && (!capture || leads_to_capture[node]);
    if (runs && node->released())
      fail<AutogradError>(node->op(), "backward through a graph whose saved tensors were already freed by an "
                          "earlier backward(); pass retain_graph=true to the first call");
    std::vector<bool> needed(node->inputs_.size());
    for (size_t i = 0; i < needed.size(); ++i) needed[i] = node->inputs_[i].needs_grad();
    InputGrads grads(std::move(needed), *node, create_graph);
    if (runs) {
      check_saved_versions(*node);
      const ForwardModesGuard as_in_forward(node->forward_modes_);
      node->backward_(grad_output, grads);  // a node no consumer sent a gradient to has nothing to pass on
      for (size_t i = 0; i < node->inputs_.size(); ++i)
        if (grads.needs(i) && !grads[i].defined() && !grads.declared_zero(i))
          fail<AutogradError>(node->op(), "backward wrote no gradient for input {} (shape {}), which needs one; a "
                              "backward that means zero says so with InputGrads::declare_zero({})", i,
                              shape_str(node->inputs_[i].shape), i);
      if (create_graph) check_recorded(*node, grad_output, grads);
    }
    grad_output = Tensor();
    if (!pass.retain_graph && (runs || !capture)) node->backward_ = nullptr;
    for (size_t i = 0; i < node->inputs_.size(); ++i) {
      const Node::Edge& edge = node->inputs_[i];
      Tensor& grad = grads[i];
      if (anomaly_enabled && edge.needs_grad() && grad.defined()) check_backward(*node, i, edge, grad);
      if (edge.node) {
        if (grad.defined()) {
          check_gradient(*node, i, edge, grad);
          auto [it, inserted] = buffers.try_emplace(edge.node.get(), std::move(grad));
          if (!inserted)
            it->second = create_graph ? recorded_sum(it->second, grad) : accumulated(std::move(it->second), std::move(grad));
        }
        if (--pending[edge.node.get()] == 0) ready.push_back(edge.node.get());
      } else if (grad.defined()) {
        if (const std::shared_ptr<TensorImpl> leaf = edge.leaf.lock()) {
          check_gradient(*node, i, edge, grad);
          accumulate_leaf(leaf, std::move(grad));
        }
      }
      leaves.processed(edge);
    }
  }
  return captured;
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, const GradOptions& options) {
  if (!grad_outputs.empty() && grad_outputs.size() != outputs.size())
    fail<ValueError>("grad", "{} grad_outputs given for {} outputs (give one per output, or none)", grad_outputs.size(),
                     outputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].requires_grad())
      fail<AutogradError>("grad", "input {} of shape {} does not require grad", i, shape_str(inputs[i].shape()));
  Engine::Pass pass{outputs, grad_outputs, options.retain_graph.value_or(options.create_graph), options.create_graph,
                    &inputs};
  std::vector<Tensor> grads = Engine::run(pass);
  for (size_t i = 0; i < grads.size(); ++i)
    if (!grads[i].defined() && !options.allow_unused)
      fail<AutogradError>("grad", "input {} of shape {} was not used in computing the outputs (pass allow_unused to "
                          "get an undefined gradient for it)", i, shape_str(inputs[i].shape()));
  return grads;
}

}  // namespace gradformer

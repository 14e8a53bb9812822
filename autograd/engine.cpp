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
    for_each_run<3>(layout, {out.raw_data(), a.raw_data(), b.raw_data()}, {sizeof(T), sizeof(T), sizeof(T)}, true,
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
    for_each_run<1>(layout, {t.raw_data()}, {sizeof(T)}, false,
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
  const std::string parameter = edge.leaf && !edge.leaf->name.empty() ? "parameter " + edge.leaf->name + ", " : "";
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
    if (hook_ && edge.leaf) ++pending_[edge.leaf.get()];
  }
  void processed(const Node::Edge& edge) {
    if (hook_ && edge.leaf && --pending_[edge.leaf.get()] == 0) (*hook_)(Tensor(edge.leaf));
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

ForwardModes current_forward_modes() { return forward_modes; }

ForwardModesGuard::ForwardModesGuard(ForwardModes modes) : previous_(forward_modes) { forward_modes = modes; }
ForwardModesGuard::~ForwardModesGuard() { forward_modes = previous_; }

bool anomaly_mode_enabled() { return anomaly_enabled; }
void set_detect_anomaly(bool enabled) { anomaly_enabled = enabled; }

DetectAnomalyGuard::DetectAnomalyGuard() : previous_(anomaly_enabled) { anomaly_enabled = true; }
DetectAnomalyGuard::~DetectAnomalyGuard() { anomaly_enabled = previous_; }

int64_t live_node_count() { return live_nodes.load(); }

Tensor record(Tensor output, RecordedOp op, const std::vector<Tensor>& inputs, BackwardFn backward,
              Infinities infinities) {
  if (!grad_enabled) return output;
  if (anomaly_enabled) check_forward(output, op.name, inputs, infinities);
  bool any = false;
  for (const Tensor& input : inputs) any = any || (input.defined() && input.requires_grad());
  if (!any) return output;
  std::vector<Node::Edge> edges(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined()) continue;
    if (anomaly_enabled || input.requires_grad()) {
      edges[i].shape = input.shape();
      edges[i].dtype = input.dtype();
    }
    if (!input.requires_grad()) continue;
    if (input.grad_fn())
      edges[i].node = input.grad_fn();
    else
      edges[i].leaf = input.impl_ptr();
  }
  // The output may be a view sharing an input's TensorImpl fields but never the TensorImpl itself.
  if (output.grad_fn()) output = output.detach();
  ++live_nodes;
  output.impl().grad_fn = std::make_shared<Node>(op, std::move(edges), std::move(backward));
  return output;
}

Tensor record(Tensor output, RecordedOp op, std::initializer_list<Tensor> inputs, BackwardFn backward,
              Infinities infinities) {
  return record(std::move(output), op, std::vector<Tensor>(inputs), std::move(backward), infinities);
}

void Engine::run(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  if (!root.requires_grad())
    fail<AutogradError>("backward", "the tensor of shape {} does not require grad and has no grad_fn",
                        shape_str(root.shape()));
  Tensor seed = gradient;
  if (!seed.defined()) {
    if (root.numel() != 1)
      fail<AutogradError>("backward", "grad can be implicitly created only for scalar outputs; got shape {}, "
                          "pass a gradient of that shape", shape_str(root.shape()));
    seed = ones(root.shape(), root.dtype());
  } else if (seed.shape() != root.shape() || seed.dtype() != root.dtype()) {
    fail<ShapeError>("backward", "gradient {} {} does not match the output {} {}", dtype_name(seed.dtype()),
                     shape_str(seed.shape()), dtype_name(root.dtype()), shape_str(root.shape()));
  }
  NoGradGuard no_grad;  // backward formulas are not themselves recorded: no higher-order gradients

  auto accumulate_leaf = [](const std::shared_ptr<TensorImpl>& leaf, Tensor grad) {
    if (leaf->grad) {
      const Tensor sum(leaf->grad);
      add_to(sum, sum, grad);
    } else if (exclusively_owned(grad)) {
      leaf->grad = grad.impl_ptr();
    } else {  // a copy: the incoming gradient may alias another's, or be a broadcast view
      Tensor copy = empty(grad.shape(), grad.dtype());
      copy.copy_(grad);
      leaf->grad = copy.impl_ptr();
    }
  };

  if (!root.grad_fn()) {
    accumulate_leaf(root.impl_ptr(), seed);
    if (grad_ready_hook) (*grad_ready_hook)(root);
    return;
  }

  // Pass 1: how many consumers will send each node a gradient.
  std::unordered_map<Node*, int64_t> pending;
  LeafCountdown leaves(grad_ready_hook);
  std::vector<Node*> stack{root.grad_fn().get()};
  pending[root.grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Node::Edge& edge : node->inputs_) {
      leaves.expect(edge);
      if (!edge.node) continue;
      auto [it, inserted] = pending.try_emplace(edge.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(edge.node.get());
    }
  }

  // Pass 2: run each node once all of its gradient has arrived.
  std::unordered_map<Node*, Tensor> buffers;
  buffers[root.grad_fn().get()] = seed;
  std::vector<Node*> ready{root.grad_fn().get()};
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    if (node->released())
      fail<AutogradError>(node->op(), "backward through a graph whose saved tensors were already freed by an "
                          "earlier backward(); pass retain_graph=true to the first call");
    Tensor grad_output = std::move(buffers[node]);
    buffers.erase(node);
    std::vector<bool> needed(node->inputs_.size());
    for (size_t i = 0; i < needed.size(); ++i) needed[i] = node->inputs_[i].needs_grad();
    InputGrads grads(std::move(needed));
    if (grad_output.defined()) {  // else no consumer sent it a gradient
      const ForwardModesGuard as_in_forward(node->forward_modes_);
      node->backward_(grad_output, grads);
    }
    grad_output = Tensor();
    if (!retain_graph) node->backward_ = nullptr;
    for (size_t i = 0; i < node->inputs_.size(); ++i) {
      const Node::Edge& edge = node->inputs_[i];
      Tensor& grad = grads[i];
      if (anomaly_enabled && edge.needs_grad() && grad.defined()) check_backward(*node, i, edge, grad);
      if (edge.node) {
        if (grad.defined()) {
          check_gradient(*node, i, edge, grad);
          auto [it, inserted] = buffers.try_emplace(edge.node.get(), std::move(grad));
          if (!inserted) it->second = accumulated(std::move(it->second), std::move(grad));
        }
        if (--pending[edge.node.get()] == 0) ready.push_back(edge.node.get());
      } else if (edge.leaf && grad.defined()) {
        check_gradient(*node, i, edge, grad);
        accumulate_leaf(edge.leaf, std::move(grad));
      }
      leaves.processed(edge);
    }
  }
}

}  // namespace gradformer

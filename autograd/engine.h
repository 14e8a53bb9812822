// The reverse-mode engine: graph nodes, recording an op's backward, and the topological backward pass.
//
// An op computes its output, then calls record() with a backward function that receives the output gradient
// and writes the gradient of each input that needs one (Flashlight's shape: the output is never captured, so
// no node owns the tensor that owns it, and no shared_ptr cycle can form). The engine knows no op.
#pragma once

#include "autograd/op.h"
#include "autograd/tensor.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace gradformer {

// The gradients an op's backward writes: one slot per input, filled only where needs(i) is true.
class InputGrads {
 public:
  explicit InputGrads(std::vector<bool> needed) : needed_(std::move(needed)), grads_(needed_.size()) {}
  bool needs(size_t input) const { return needed_[input]; }
  Tensor& operator[](size_t input) { return grads_[input]; }
  std::vector<Tensor>& all() { return grads_; }

 private:
  std::vector<bool> needed_;
  std::vector<Tensor> grads_;
};

using BackwardFn = std::function<void(const Tensor& grad_output, InputGrads& grad_inputs)>;

// What record() tags a node with: one of the library's ops, or the name of an op written outside the library
// (examples/custom_layer.cpp's swish), which its author gradient-checks by hand; it converts implicitly from
// either. Library code always passes an Op: the op-table test fails on a node from the op or layer table that
// carries a bare name.
struct RecordedOp {
  RecordedOp(Op library_op) : op(library_op), name(op_name(library_op)) {}
  RecordedOp(std::string_view custom_name) : name(custom_name) {}
  RecordedOp(const char* custom_name) : name(custom_name) {}     
  std::optional<Op> op;
  std::string_view name;
};

// The thread's modes that a node's backward runs under again, as its forward ran: record() saves them in every
// node, and Engine::run reinstates them around that node's backward, whichever scope backward() is called from.
// The engine keeps them without reading them; what they mean belongs to their owners (autocast: ops/autocast.h,
// whose AutocastGuard sets `autocast`), so no op has to capture and re-install them in its backward.
struct ForwardModes {
  DType autocast = DType::f32;  // the precision products run in: bf16 under AutocastGuard(DType::bf16)
};
ForwardModes current_forward_modes();

// Sets this thread's forward modes for its lifetime, then restores the previous ones.
class ForwardModesGuard {
 public:
  explicit ForwardModesGuard(ForwardModes modes);
  ~ForwardModesGuard();
  ForwardModesGuard(const ForwardModesGuard&) = delete;
  ForwardModesGuard& operator=(const ForwardModesGuard&) = delete;

 private:
  ForwardModes previous_;
};

class Node {
 public:
  struct Edge {
    std::shared_ptr<Node> node;        // the input's own node, for inputs produced by ops
    std::shared_ptr<TensorImpl> leaf;  // the input itself, for leaves that require grad
    Shape shape;                       // the input's shape, to check what backward returns (in anomaly mode
                                       // kept for every input, to name them all in a message)
    DType dtype = DType::f32;
    bool needs_grad() const { return node != nullptr || leaf != nullptr; }
  };

  Node(RecordedOp op, std::vector<Edge> inputs, BackwardFn backward)
      : op_(op.name), library_op_(op.op), inputs_(std::move(inputs)), backward_(std::move(backward)),
        forward_modes_(current_forward_modes()) {}
  ~Node();  // iterative, so that dropping a 5,000-step graph does not recurse 5,000 frames deep
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& op() const { return op_; }  // the op's name, for messages
  // Which library op recorded this node; empty for an op written outside the library.
  std::optional<Op> library_op() const { return library_op_; }
  const std::vector<Edge>& inputs() const { return inputs_; }
  bool released() const { return !backward_; }

 private:
  friend class Engine;
  std::string op_;
  std::optional<Op> library_op_;
  std::vector<Edge> inputs_;
  BackwardFn backward_;  // reset after backward (unless retained) to free what it captured
  ForwardModes forward_modes_;  // what the forward ran under; its backward runs under the same
};

// Whether an op's output may hold infinities its inputs did not, for anomaly mode: masked_fill with -inf is how
// attention masks are written, and must not read as a fault.
enum class Infinities { unexpected, intended };

// Records `output = op(inputs)` when grad mode is on and some input requires grad; returns output.
// `backward` must capture only what it reads, and never `output` itself (capture output.detach()).
Tensor record(Tensor output, RecordedOp op, std::initializer_list<Tensor> inputs, BackwardFn backward,
              Infinities infinities = Infinities::unexpected);
Tensor record(Tensor output, RecordedOp op, const std::vector<Tensor>& inputs, BackwardFn backward,
              Infinities infinities = Infinities::unexpected);

// Whether ops record the graph on this thread (PyTorch's torch.is_grad_enabled()).
bool grad_mode_enabled();

// Turns recording off for its lifetime on this thread, as torch::NoGradGuard.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Anomaly mode, as torch.autograd.set_detect_anomaly, on this thread. While it is on, every op that runs with grad
// mode on has its output checked, and every gradient Engine::run computes is checked; the first NaN, or Inf not
// received from an input, throws NumericalError naming the op, its inputs' shapes and, in backward, which
// input's gradient. Off by default, as in PyTorch: NaN then flows on silently. Off, it costs one branch per op;
// on, a pass over every output and gradient (backward formulas themselves run without grad mode, so a fault
// there is named after the op whose backward it is, not after the ops inside the formula).
bool anomaly_mode_enabled();
void set_detect_anomaly(bool enabled);

// Turns anomaly mode on for its lifetime on this thread, as torch.autograd.detect_anomaly.
class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard();
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

// Told during Engine::run that a leaf's gradient is final for this backward: called once per leaf the root reaches,
// right after the last edge from the graph into that leaf has been processed (accumulated, or carried no
// gradient); leaves the root does not reach are not named. The calls come in the order the gradients become
// ready. PyTorch's register_post_accumulate_grad_hook, DDP's autograd hooks; here one hook per thread sees every
// leaf, which a caller maps to its parameters (Engine::run never crosses threads). It runs without grad mode.
using GradReadyHook = std::function<void(const Tensor& leaf)>;

// Installs `hook` for the backward passes run on this thread during its lifetime; the previous one (if any) is
// restored after.
class GradReadyHookGuard {
 public:
  explicit GradReadyHookGuard(GradReadyHook hook);
  ~GradReadyHookGuard();
  GradReadyHookGuard(const GradReadyHookGuard&) = delete;
  GradReadyHookGuard& operator=(const GradReadyHookGuard&) = delete;

 private:
  GradReadyHook hook_;
  const GradReadyHook* previous_;
};

class Engine {
 public:
  // Runs backward from root with dL/droot = gradient; see Tensor::backward.
  static void run(const Tensor& root, const Tensor& gradient, bool retain_graph);
};

// How many Nodes are alive in this process: a test's way to prove that graphs are freed.
int64_t live_node_count();

}  // namespace gradformer

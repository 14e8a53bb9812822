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

class Node;

// The gradients an op's backward writes: one slot per input, filled only where needs(i) is true; and the tensors
// the op saved for its backward (record()'s saved()), handed out by saved(i) and saved_output(). Every needed slot
// must be written: a backward that leaves one empty throws AutogradError naming the op and the input, unless it
// declares that gradient zero on purpose with declare_zero(i) (then the input gets none from this node).
class InputGrads {
 public:
  InputGrads(std::vector<bool> needed, const Node& node, bool create_graph)
      : needed_(std::move(needed)), grads_(needed_.size()), zero_(needed_.size()), node_(node),
        create_graph_(create_graph) {}
  bool needs(size_t input) const { return needed_[input]; }
  Tensor& operator[](size_t input) { return grads_[input]; }
  std::vector<Tensor>& all() { return grads_; }
  void declare_zero(size_t input) { zero_[input] = true; }
  bool declared_zero(size_t input) const { return zero_[input]; }

  // The values of input `input` (or of the output) as the op saw them. Throws AutogradError if an in-place write
  // has changed them since (their storage's version moved), or if the op did not save them. In a backward that
  // records its own graph (create_graph), the tensor is connected: an input to its producer or leaf, the output
  // to this very node, so that what the formula computes from them can be differentiated again.
  Tensor saved(size_t input) const;
  Tensor saved_output() const;
  // For the engine's checks after the backward ran.
  const Tensor& peek(size_t input) const { return grads_[input]; }
  bool read_saved() const { return read_saved_; }

 private:
  std::vector<bool> needed_;
  std::vector<Tensor> grads_;
  std::vector<bool> zero_;
  const Node& node_;
  bool create_graph_;
  mutable bool read_saved_ = false;
};

using BackwardFn = std::function<void(const Tensor& grad_output, InputGrads& grad_inputs)>;

// What record() is given for the output and each input: the tensor, and whether the backward reads its values.
// A tensor converts to one the backward does not read; saved(t) marks one it does. The node keeps a saved tensor
// with the storage version it had when recorded (PyTorch's SavedVariable), so an in-place write between forward
// and backward is caught rather than silently giving a wrong gradient.
struct RecordedTensor {
  RecordedTensor(Tensor t) : tensor(std::move(t)) {}  // NOLINT: implicit, so that `{a, b}` lists convert
  Tensor tensor;
  bool saved = false;
};
inline RecordedTensor saved(Tensor t) {
  RecordedTensor marked(std::move(t));
  marked.saved = true;
  return marked;
}

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

// A tensor a node saved for its backward: a detached handle on its values and its storage's version then.
struct SavedTensor {
  Tensor data;
  uint64_t version = 0;
  bool defined() const { return data.defined(); }
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

class Node : public std::enable_shared_from_this<Node> {
 public:
  struct Edge {
    std::shared_ptr<Node> node;        // the input's own node, for inputs produced by ops
    // The input itself, for leaves that require grad. Not owned: a graph never keeps a leaf alive, so a leaf's
    // gradient that carries a graph (create_graph) referring to the leaf forms no ownership cycle. A leaf no one
    // holds any more gets no gradient (no one could read it).
    std::weak_ptr<TensorImpl> leaf;
    bool from_leaf = false;
    Shape shape;                       // the input's shape, to check what backward returns (in anomaly mode
                                       // kept for every input, to name them all in a message)
    DType dtype = DType::f32;
    bool needs_grad() const { return node != nullptr || (from_leaf && !leaf.expired()); }
  };

  Node(RecordedOp op, std::vector<Edge> inputs, BackwardFn backward, std::vector<SavedTensor> saved_inputs,
       SavedTensor saved_output)
      : op_(op.name), library_op_(op.op), inputs_(std::move(inputs)), backward_(std::move(backward)),
        saved_inputs_(std::move(saved_inputs)), saved_output_(std::move(saved_output)),
        forward_modes_(current_forward_modes()) {}
  ~Node();  // iterative, so that dropping a 5,000-step graph does not recurse 5,000 frames deep
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& op() const { return op_; }  // the op's name, for messages
  // Which library op recorded this node; empty for an op written outside the library.
  std::optional<Op> library_op() const { return library_op_; }
  const std::vector<Edge>& inputs() const { return inputs_; }
  bool released() const { return !backward_; }
  // What the backward reads (record()'s saved()): by input position (empty when it reads no input; an
  // undefined entry for an input it does not read), and the output (undefined unless it reads it).
  const std::vector<SavedTensor>& saved_inputs() const { return saved_inputs_; }
  const SavedTensor& saved_output() const { return saved_output_; }
  bool saved_input(size_t input) const { return input < saved_inputs_.size() && saved_inputs_[input].defined(); }

  // Gradient hooks of the tensor this node produced (Tensor::register_hook), run in order of registration on
  // the gradient arriving for it, before the node's backward; a hook may return a replacement gradient.
  std::shared_ptr<GradHooks>& hooks() { return hooks_; }

 private:
  friend class Engine;
  std::string op_;
  std::optional<Op> library_op_;
  std::vector<Edge> inputs_;
  BackwardFn backward_;  // reset after backward (unless retained) to free what it captured
  std::vector<SavedTensor> saved_inputs_;  // by input position; empty when the backward reads no input
  SavedTensor saved_output_;
  std::shared_ptr<GradHooks> hooks_;
  ForwardModes forward_modes_;  // what the forward ran under; its backward runs under the same
};

// Whether an op's output may hold infinities its inputs did not, for anomaly mode: masked_fill with -inf is how
// attention masks are written, and must not read as a fault.
enum class Infinities { unexpected, intended };

// Records `output = op(inputs)` when grad mode is on and some input requires grad; returns output.
// An input or output whose values the backward reads is passed as saved(t) and read back in the backward with
// InputGrads::saved(i) / saved_output(), never captured: only then are in-place writes to it caught, and only
// then can a backward that records (create_graph) be differentiated through it. `backward` captures only what it
// reads besides (shapes, options, tensors the op made itself such as masks and indices).
Tensor record(RecordedTensor output, RecordedOp op, std::initializer_list<Tensor> inputs, BackwardFn backward,
              Infinities infinities = Infinities::unexpected);
Tensor record(RecordedTensor output, RecordedOp op, std::initializer_list<RecordedTensor> inputs,
              BackwardFn backward, Infinities infinities = Infinities::unexpected);
Tensor record(RecordedTensor output, RecordedOp op, const std::vector<Tensor>& inputs, BackwardFn backward,
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

// Sets grad mode to `enabled` for its lifetime on this thread, as torch::AutoGradMode.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

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

// How grad() runs, as torch.autograd.grad: allow_unused lets an input the outputs do not depend on get an
// undefined gradient instead of an AutogradError.
struct GradOptions {
  std::optional<bool> retain_graph = std::nullopt;
  bool create_graph = false;
  bool allow_unused = false;
};

// The gradients of sum_k <outputs[k], grad_outputs[k]> with respect to each of `inputs`, returned and written
// nowhere else: no tensor's grad() changes. grad_outputs may be empty (then every output must be a scalar, and
// its gradient is 1) or give one tensor per output (an undefined one reads as ones for a scalar output). Only the
// part of the graph between the outputs and the inputs runs.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, const GradOptions& options = {});

class Engine {
 public:
  struct Pass {
    std::vector<Tensor> roots;
    std::vector<Tensor> gradients;  // one per root; undefined for a scalar root reads as ones
    bool retain_graph = false;
    bool create_graph = false;
    // When set, the gradients of these tensors are returned (in this order) instead of accumulated into leaves.
    const std::vector<Tensor>* capture = nullptr;
  };
  // Runs backward from the roots; see Tensor::backward and grad(). Returns the captured gradients, if any.
  static std::vector<Tensor> run(const Pass& pass);
};

// How many Nodes are alive in this process: a test's way to prove that graphs are freed.
int64_t live_node_count();

}  // namespace gradformer

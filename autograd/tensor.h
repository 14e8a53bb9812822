// The tensor: a dtype, a shape, strides and an offset into a storage that views share. Values are f32, f64
// (gradient checks), i64 (token ids, indices), bool (masks) or bf16 (storage only: see bfloat16 below). A Tensor is a cheap handle: copies share the
// same TensorImpl, as torch::Tensor does.
//
// This floor knows storage, views and the autograd bookkeeping; it does not know any op. Everything that
// computes (a + b, matmul, reshape with a gradient, ...) is declared in ops/, which includes this file.
#pragma once

#include "autograd/allocator.h"
#include "autograd/error.h"
#include "autograd/generator.h"

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace gradformer {

enum class DType : uint8_t { f32, f64, i64, boolean, bf16 };

std::string_view dtype_name(DType dtype);
size_t dtype_size(DType dtype);
// The dtypes ops compute in and gradients flow through. bf16 is not one of them: it is a storage format that
// tensors convert to and from (to(DType::bf16), to(DType::f32)); products run in it under AutocastGuard
// (autograd/engine.h), which keeps every tensor the graph sees in f32. An op given a bf16 tensor throws
// DTypeError naming the op and the dtype.
inline bool is_floating(DType dtype) { return dtype == DType::f32 || dtype == DType::f64; }

// One bf16 value: the upper 16 bits of an f32 (8 exponent bits, 7 mantissa bits), the format oneDNN's bf16
// products read. From f32 it rounds to nearest, ties to even (as PyTorch and the AVX512-BF16 instructions do);
// NaN stays NaN. Back to f32 it is exact.
struct bfloat16 {
  uint16_t bits = 0;

  bfloat16() = default;
  template <class T>
    requires std::is_arithmetic_v<T>
  explicit bfloat16(T value) : bits(round_from(static_cast<float>(value))) {}
  template <class T>
    requires std::is_arithmetic_v<T>
  explicit operator T() const { return static_cast<T>(to_float()); }

  float to_float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }
  static uint16_t round_from(float value) {
    const uint32_t f = std::bit_cast<uint32_t>(value);
    if ((f & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((f >> 16) | 0x40u);  // quiet NaN
    const uint32_t round_bias = 0x7fffu + ((f >> 16) & 1u);  // half of the dropped range, +1 when odd: ties to even
    return static_cast<uint16_t>((f + round_bias) >> 16);
  }
};

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }
template <> constexpr DType dtype_of<bfloat16>() { return DType::bf16; }

using Shape = std::vector<int64_t>;

std::string shape_str(std::span<const int64_t> shape);  // "[2, 3]"
int64_t numel_of(std::span<const int64_t> shape);        // throws ShapeError on negative sizes or overflow
Shape contiguous_strides(std::span<const int64_t> shape);
// Maps a possibly negative axis onto [0, rank); `op` names the caller in the error.
int64_t normalize_axis(int64_t axis, int64_t rank, std::string_view op);

// Bytes that views share. 64-byte aligned so that vector loads and oneDNN see aligned rows. The bytes come from
// the caching allocator (autograd/allocator.h) and go back to it.
//
// version() changes whenever a writable pointer into the bytes is handed out (data(), Tensor::raw_data(),
// Tensor::data_ptr<T> with a non-const T, and so every copy_, fill_ and set_at), as PyTorch's version counter
// changes on in-place writes. Counting handed-out pointers rather than writes means no writer can forget to
// report: a copy derived from the bytes and tagged with the version (gemm's bf16 weight cache) is stale as soon
// as anyone could have changed them. Readers that must not disturb the count use read_only_data().
class Storage {
 public:
  explicit Storage(size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  std::byte* data() {
    version_.fetch_add(1, std::memory_order_relaxed);
    return block_.data;
  }
  const std::byte* read_only_data() const { return block_.data; }
  size_t nbytes() const { return nbytes_; }
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }

 private:
  StorageBlock block_;
  size_t nbytes_;
  std::atomic<uint64_t> version_{0};
};

class Node;
class Tensor;
// How Tensor::backward (autograd/engine.h) runs, as PyTorch's backward(gradient, retain_graph, create_graph). With create_graph the
// backward formulas run with grad mode on, so what they compute is recorded: the gradients left in grad() have a
// graph of their own and can be differentiated again, to any order. retain_graph defaults to create_graph.
struct BackwardOptions {
  std::optional<bool> retain_graph = std::nullopt;
  bool create_graph = false;
};


// Gradient hooks (Tensor::register_hook): each is called with the gradient arriving for its tensor and returns
// either an undefined tensor (keep the gradient) or a replacement of the same shape and dtype.
using GradHook = std::function<Tensor(const Tensor& grad)>;
struct GradHooks {
  std::vector<std::pair<uint64_t, GradHook>> entries;  // in order of registration
  uint64_t next_id = 0;
};

// Removes the hook it was returned for (PyTorch's RemovableHandle): Tensor::register_hook returns one, and so do
// nn::Module's register_forward_hook and register_forward_pre_hook (nn::RemovableHandle is this type). Removing
// twice, or after the tensor or module is gone, does nothing; dropping the handle keeps the hook registered.
class RemovableHandle {
 public:
  // How the hooks' owner unregisters hook `id` from its hook list `hooks`.
  using Erase = void (*)(void* hooks, uint64_t id);
  RemovableHandle() = default;
  RemovableHandle(std::weak_ptr<void> hooks, uint64_t id, Erase erase)
      : hooks_(std::move(hooks)), id_(id), erase_(erase) {}
  RemovableHandle(std::weak_ptr<GradHooks> hooks, uint64_t id);  // a tensor's gradient hook
  void remove();

 private:
  std::weak_ptr<void> hooks_;
  uint64_t id_ = 0;
  Erase erase_ = nullptr;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;      // set on leaves by the user; results of ops carry grad_fn instead
  std::shared_ptr<Node> grad_fn;   // the node that produced this tensor; null for leaves
  std::shared_ptr<TensorImpl> grad;
  // The grad is a view into a flat gradient buffer (nn::FlatParameters) that others read in one piece: it is
  // kept, so zero_grad fills it with zeros and set_grad copies into it, and the engine accumulates into it.
  bool grad_is_view = false;
  bool retains_grad = false;           // a non-leaf whose grad() backward fills (Tensor::retain_grad)
  std::shared_ptr<GradHooks> hooks;    // a leaf's gradient hooks; a non-leaf keeps them on its grad_fn
  std::string name;                // a parameter's dotted name, used in gradient-check and anomaly messages
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  DType dtype() const { return impl().dtype; }
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Typed pointer to the first element; throws DTypeError if T is not the tensor's dtype.
  template <class T> T* data_ptr() const {
    check_dtype(dtype_of<std::remove_const_t<T>>(), "data_ptr");
    if constexpr (std::is_const_v<T>)
      return reinterpret_cast<T*>(impl().storage->read_only_data()) + impl().offset;
    else
      return reinterpret_cast<T*>(impl().storage->data()) + impl().offset;
  }
  std::byte* raw_data() const { return impl().storage->data() + impl().offset * dtype_size(dtype()); }
  // The first element for reading: does not move the storage's version (kernels read their inputs through it).
  const std::byte* read_only_raw_data() const {
    return impl().storage->read_only_data() + impl().offset * dtype_size(dtype());
  }

  // The single value of a one-element tensor, converted to double (or T).
  double item() const;
  template <class T> T item() const { return static_cast<T>(item()); }
  // Element access by index (negative indices count from the end), converted to and from double.
  double at(std::initializer_list<int64_t> index) const;
  void set_at(std::initializer_list<int64_t> index, double value) const;
  // All elements in row-major order, converted to T.
  template <class T> std::vector<T> to_vector() const;

  // Autograd.
  bool requires_grad() const { return impl().requires_grad || impl().grad_fn != nullptr; }
  Tensor& requires_grad_(bool enabled = true);  // only on leaves, like PyTorch
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  Tensor grad() const { return Tensor(impl().grad); }
  // Both keep a flat-buffer grad view in place (see TensorImpl::grad_is_view): set_grad copies into it (zeros for
  // an undefined grad) and zero_grad fills it with zeros; otherwise they replace the handle, and zero_grad drops
  // it as PyTorch's set_to_none=True.
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;
  // Gradient of this tensor with respect to every leaf that requires grad, accumulated into their grad().
  // A scalar may omit `gradient` (ones); any other tensor must pass one of its shape. With create_graph the
  // accumulated gradients carry a graph (autograd/engine.h, BackwardOptions); prefer grad() for that, which
  // leaves grad() alone.
  void backward(const Tensor& gradient = {}, const BackwardOptions& options = {}) const;
  void backward(const Tensor& gradient, bool retain_graph) const;
  // Calls hook with the gradient computed for this tensor during every later backward, before it is accumulated
  // (leaf) or passed on (non-leaf); the hook may return a replacement gradient. Runs in grad mode only with
  // create_graph. Removed by the handle's remove().
  RemovableHandle register_hook(GradHook hook) const;
  // On a non-leaf: backward fills its grad() too, as on a leaf (accumulating). A leaf does already.
  void retain_grad() const;
  bool retains_grad() const { return impl().retains_grad; }
  Tensor detach() const;  // shares storage, leaves the graph
  const std::string& name() const { return impl().name; }
  void set_name(std::string name) { impl().name = std::move(name); }

  // Copies that take part in autograd: the gradient flows back through them.
  Tensor contiguous() const;  // this tensor itself when already contiguous
  // This tensor itself when the dtype already matches. To bf16 it rounds to nearest even; to or from bf16 the
  // copy leaves the graph (bf16 takes part in no op, so no gradient could reach it).
  Tensor to(DType dtype) const;
  Tensor clone() const;

  // A view on the same storage; no gradient. The ops in ops/shape.cpp build differentiable views on it.
  Tensor as_strided(Shape shape, Shape strides, int64_t offset) const;
  // Copies `source` (same shape, any strides, same dtype) into this tensor's elements, in place, no gradient.
  void copy_(const Tensor& source) const;
  void fill_(double value) const;

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  void check_dtype(DType expected, std::string_view op) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Creation. Shapes are given as {d0, d1, ...}; dtype defaults to f32 as in PyTorch.
Tensor empty(Shape shape, DType dtype = DType::f32);
Tensor zeros(Shape shape, DType dtype = DType::f32);
Tensor ones(Shape shape, DType dtype = DType::f32);
Tensor full(Shape shape, double value, DType dtype = DType::f32);
Tensor arange(int64_t end, DType dtype = DType::i64);
Tensor arange(double start, double end, double step, DType dtype);
Tensor zeros_like(const Tensor& like);
Tensor ones_like(const Tensor& like);
Tensor randn(Shape shape, Generator& gen = current_generator(), DType dtype = DType::f32);
Tensor uniform(Shape shape, double low, double high, Generator& gen = current_generator(), DType dtype = DType::f32);
// From values in row-major order; the count must match the shape (a ShapeError names both).
template <class T> Tensor from_vector(const std::vector<T>& values, Shape shape);
template <class T> Tensor tensor(std::initializer_list<T> values) {
  return from_vector(std::vector<T>(values), Shape{static_cast<int64_t>(values.size())});
}
Tensor scalar_tensor(double value, DType dtype = DType::f32);

}  // namespace gradformer

namespace gradformer {
// PyTorch-like text: tensor([[0.1000, 0.2000], ...], dtype=f64, requires_grad=true); more than
// 1,000 elements print the first and last three entries of each dimension around "...".
std::string to_string(const Tensor& t);
}  // namespace gradformer

template <>
struct fmt::formatter<gradformer::Tensor> : fmt::formatter<std::string_view> {
  auto format(const gradformer::Tensor& t, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(gradformer::to_string(t), ctx);
  }
};

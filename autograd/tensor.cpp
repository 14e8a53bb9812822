// Storage, views, creation and element access of Tensor; the differentiable copies (contiguous, to, clone)
// record their one-line backward with the engine.
#include "autograd/tensor.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

namespace gradformer {

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i64: return "i64";
    case DType::boolean: return "bool";
    case DType::bf16: return "bf16";
  }
  return "unknown";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::boolean: return 1;
    case DType::bf16: return 2;
  }
  return 0;
}

std::string shape_str(std::span<const int64_t> shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

int64_t numel_of(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) fail<ShapeError>("shape", "negative size in {}", shape_str(shape));
    if (s != 0 && n > std::numeric_limits<int64_t>::max() / s)
      fail<ShapeError>("shape", "{} has more elements than fit in 64 bits", shape_str(shape));
    n *= s;
  }
  return n;
}

Shape contiguous_strides(std::span<const int64_t> shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= std::max<int64_t>(shape[d], 1);
  }
  return strides;
}

int64_t normalize_axis(int64_t axis, int64_t rank, std::string_view op) {
  const int64_t lo = rank == 0 ? -1 : -rank, hi = rank == 0 ? 0 : rank - 1;
  if (axis < lo || axis > hi)
    fail<IndexError>(op, "axis {} is out of range for a tensor of rank {} (expected {}..{})", axis, rank, lo, hi);
  return axis < 0 ? axis + std::max<int64_t>(rank, 1) : axis;
}

Storage::Storage(size_t nbytes) : block_(allocate_storage(nbytes)), nbytes_(nbytes) {}

Storage::~Storage() { release_storage(block_); }

TensorImpl& Tensor::impl() const {
  if (!impl_) throw Error("tensor: use of an undefined tensor (default-constructed or an absent gradient)");
  return *impl_;
}

int64_t Tensor::size(int64_t axis) const { return shape()[normalize_axis(axis, dim(), "size")]; }

int64_t Tensor::numel() const { return numel_of(shape()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t d = shape().size(); d-- > 0;) {
    if (shape()[d] != 1 && strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

void Tensor::check_dtype(DType expected, std::string_view op) const {
  if (dtype() != expected)
    fail<DTypeError>(op, "expected a {} tensor, got {} with shape {}", dtype_name(expected), dtype_name(dtype()),
                     shape_str(shape()));
}

namespace {

int64_t element_offset(const Tensor& t, std::initializer_list<int64_t> index, std::string_view op) {
  if (static_cast<int64_t>(index.size()) != t.dim())
    fail<IndexError>(op, "{} indices given for a tensor of shape {}", index.size(), shape_str(t.shape()));
  int64_t offset = 0, d = 0;
  for (int64_t i : index) {
    const int64_t size = t.shape()[d];
    if (i < -size || i >= size)
      fail<IndexError>(op, "index {} is out of range for dimension {} of size {} (shape {})", i, d, size,
                       shape_str(t.shape()));
    offset += (i < 0 ? i + size : i) * t.strides()[d];
    ++d;
  }
  return offset;
}

}  // namespace

namespace {

// In-place writes to a leaf that requires grad are refused outside no-grad mode, as in PyTorch: the graph would
// not see them, so a gradient computed after would silently belong to other values.
void check_not_leaf_requiring_grad(const Tensor& t, std::string_view op) {
  if (t.impl().requires_grad && grad_mode_enabled())
    fail<AutogradError>(op, "a leaf tensor of shape {} that requires grad is being used in an in-place operation "
                        "(write it under NoGradGuard, as optimizers and initializers do, or write a detach()ed handle)",
                        shape_str(t.shape()));
}

}  // namespace

double Tensor::at(std::initializer_list<int64_t> index) const {
  const int64_t offset = element_offset(*this, index, "at");
  return visit_stored(dtype(), [&]<class T>(std::type_identity<T>) {
    return static_cast<double>(data_ptr<const T>()[offset]);
  });
}

void Tensor::set_at(std::initializer_list<int64_t> index, double value) const {
  check_not_leaf_requiring_grad(*this, "set_at");
  const int64_t offset = element_offset(*this, index, "set_at");
  visit_stored(dtype(), [&]<class T>(std::type_identity<T>) {
    reinterpret_cast<T*>(raw_data())[offset] = static_cast<T>(value);
  });
}

double Tensor::item() const {
  if (numel() != 1)
    fail<ShapeError>("item", "needs a tensor with one element, got shape {}", shape_str(shape()));
  return visit_stored(dtype(), [&]<class T>(std::type_identity<T>) {
    return static_cast<double>(*data_ptr<const T>());
  });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  const Tensor dense = detach().to(dtype_of<T>()).contiguous();
  const T* p = dense.data_ptr<const T>();
  return std::vector<T>(p, p + dense.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

Tensor& Tensor::requires_grad_(bool enabled) {
  if (!is_leaf())
    fail<AutogradError>("requires_grad_", "can only be set on a leaf tensor; this one comes from {} (use detach())",
                        grad_fn()->op());
  if (enabled && !is_floating(dtype()))
    fail<DTypeError>("requires_grad_", "only f32 and f64 tensors can require gradients, got {}", dtype_name(dtype()));
  impl().requires_grad = enabled;
  return *this;
}

void Tensor::set_grad(const Tensor& grad) const {
  if (grad.defined() && (grad.shape() != shape() || grad.dtype() != dtype()))
    fail<ShapeError>("set_grad", "gradient {} {} does not match tensor {} {}", dtype_name(grad.dtype()),
                     shape_str(grad.shape()), dtype_name(dtype()), shape_str(shape()));
  if (!impl().grad_is_view) {
    impl().grad = grad.impl_ptr();
  } else if (grad.defined()) {
    Tensor(impl().grad).copy_(grad);
  } else {
    Tensor(impl().grad).fill_(0.0);
  }
}

void Tensor::zero_grad() const {
  if (impl().grad_is_view)
    Tensor(impl().grad).fill_(0.0);
  else
    impl().grad.reset();
}

void Tensor::backward(const Tensor& gradient, const BackwardOptions& options) const {
  Engine::run(Engine::Pass{{*this}, {gradient}, options.retain_graph.value_or(options.create_graph),
                           options.create_graph});
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  backward(gradient, BackwardOptions{.retain_graph = retain_graph});
}

RemovableHandle Tensor::register_hook(GradHook hook) const {
  if (!requires_grad())
    fail<AutogradError>("register_hook", "the tensor of shape {} does not require grad: no gradient would reach the "
                        "hook", shape_str(shape()));
  std::shared_ptr<GradHooks>& hooks = is_leaf() ? impl().hooks : grad_fn()->hooks();
  if (!hooks) hooks = std::make_shared<GradHooks>();
  const uint64_t id = hooks->next_id++;
  hooks->entries.emplace_back(id, std::move(hook));
  return RemovableHandle(hooks, id);
}

// Tensor::retain_grad is defined with the engine's gradient accumulation (autograd/engine.cpp).

Tensor Tensor::detach() const {
  auto view = std::make_shared<TensorImpl>();
  view->storage = storage();
  view->shape = shape();
  view->strides = strides();
  view->offset = offset();
  view->dtype = dtype();
  return Tensor(std::move(view));
}

Tensor Tensor::as_strided(Shape new_shape, Shape new_strides, int64_t new_offset) const {
  auto view = std::make_shared<TensorImpl>();
  view->storage = storage();
  view->shape = std::move(new_shape);
  view->strides = std::move(new_strides);
  view->offset = new_offset;
  view->dtype = dtype();
  return Tensor(std::move(view));
}

namespace {

// dst[i] = convert(src[i]) over a shared shape; the one copy loop behind copy_, contiguous and to.
void convert_copy(const Tensor& dst, const Tensor& src) {
  StridedLayout<2> layout{dst.shape(), {dst.strides(), src.strides()}};
  visit_stored(dst.dtype(), [&]<class D>(std::type_identity<D>) {
    visit_stored(src.dtype(), [&]<class S>(std::type_identity<S>) {
      for_each_run<2>(layout, {dst.raw_data(), const_cast<std::byte*>(src.read_only_raw_data())}, {sizeof(D), sizeof(S)},
                      true,
                      [](std::array<std::byte*, 2> p, int64_t n, const std::array<int64_t, 2>& s) {
                        D* out = reinterpret_cast<D*>(p[0]);
                        const S* in = reinterpret_cast<const S*>(p[1]);
                        if (s[0] == 1 && s[1] == 1) {
                          for (int64_t i = 0; i < n; ++i) out[i] = static_cast<D>(in[i]);
                        } else {
                          for (int64_t i = 0; i < n; ++i) out[i * s[0]] = static_cast<D>(in[i * s[1]]);
                        }
                      });
    });
  });
}

}  // namespace

void Tensor::copy_(const Tensor& source) const {
  check_not_leaf_requiring_grad(*this, "copy_");
  if (source.shape() != shape())
    fail<ShapeError>("copy_", "source shape {} differs from destination shape {}", shape_str(source.shape()),
                     shape_str(shape()));
  convert_copy(*this, source);
}

void Tensor::fill_(double value) const {
  check_not_leaf_requiring_grad(*this, "fill_");
  StridedLayout<1> layout{shape(), {strides()}};
  visit_stored(dtype(), [&]<class T>(std::type_identity<T>) {
    const T v = static_cast<T>(value);
    for_each_run<1>(layout, {raw_data()}, {sizeof(T)}, true,
                    [v](std::array<std::byte*, 1> p, int64_t n, const std::array<int64_t, 1>& s) {
                      T* out = reinterpret_cast<T*>(p[0]);
                      for (int64_t i = 0; i < n; ++i) out[i * s[0]] = v;
                    });
  });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape(), dtype());
  convert_copy(out, *this);
  return record(out, Op::contiguous, {*this}, [](const Tensor& dout, InputGrads& grads) { grads[0] = dout; });
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype());
  convert_copy(out, *this);
  return record(out, Op::clone, {*this}, [](const Tensor& dout, InputGrads& grads) { grads[0] = dout; });
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target);
  convert_copy(out, *this);
  // integers, masks and bf16 storage carry no gradient
  if (!is_floating(target) || !is_floating(dtype())) return out;
  const DType source_dtype = dtype();
  return record(out, Op::to, {*this},
                [source_dtype](const Tensor& dout, InputGrads& grads) { grads[0] = dout.to(source_dtype); });
}

Tensor empty(Shape shape, DType dtype) {
  const int64_t n = numel_of(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype));
  impl->strides = contiguous_strides(shape);
  impl->shape = std::move(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor full(Shape shape, double value, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  t.fill_(value);
  return t;
}

Tensor zeros(Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  std::memset(t.raw_data(), 0, static_cast<size_t>(t.numel()) * dtype_size(dtype));
  return t;
}

Tensor ones(Shape shape, DType dtype) { return full(std::move(shape), 1.0, dtype); }
Tensor zeros_like(const Tensor& like) { return zeros(like.shape(), like.dtype()); }
Tensor ones_like(const Tensor& like) { return ones(like.shape(), like.dtype()); }
Tensor scalar_tensor(double value, DType dtype) { return full({}, value, dtype); }

Tensor arange(int64_t end, DType dtype) { return arange(0, static_cast<double>(end), 1, dtype); }

Tensor arange(double start, double end, double step, DType dtype) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    fail<ValueError>("arange", "start {}, end {}, step {}: step must be non-zero and all finite", start, end, step);
  const double count = std::ceil((end - start) / step);
  Tensor t = empty({std::max<int64_t>(0, static_cast<int64_t>(count))}, dtype);
  visit_stored(dtype, [&]<class T>(std::type_identity<T>) {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  return t;
}

Tensor randn(Shape shape, Generator& gen, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  visit_floating(dtype, "randn", [&]<class T>(std::type_identity<T>) {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(gen.normal());
  });
  return t;
}

Tensor uniform(Shape shape, double low, double high, Generator& gen, DType dtype) {
  if (!(low <= high)) fail<ValueError>("uniform", "low {} must not exceed high {}", low, high);
  Tensor t = empty(std::move(shape), dtype);
  visit_floating(dtype, "uniform", [&]<class T>(std::type_identity<T>) {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(gen.uniform(low, high));
  });
  return t;
}

template <class T>
Tensor from_vector(const std::vector<T>& values, Shape shape) {
  const int64_t n = numel_of(shape);
  if (n != static_cast<int64_t>(values.size()))
    fail<ShapeError>("from_vector", "{} values do not fill shape {} ({} elements)", values.size(), shape_str(shape), n);
  Tensor t = empty(std::move(shape), dtype_of<T>());
  T* p = t.data_ptr<T>();
  for (int64_t i = 0; i < n; ++i) p[i] = values[static_cast<size_t>(i)];
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, Shape);
template Tensor from_vector<double>(const std::vector<double>&, Shape);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, Shape);
template Tensor from_vector<bool>(const std::vector<bool>&, Shape);

}  // namespace gradformer

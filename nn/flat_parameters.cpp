// Moving parameters into one buffer means re-pointing each TensorImpl at a slice of it: every handle a layer or
// an optimizer holds shares the TensorImpl, so they all follow.
#include "nn/flat_parameters.h"

#include "autograd/engine.h"

#include <set>

namespace gradformer::nn {
namespace {

constexpr int64_t kAlignBytes = 64;

}  // namespace

FlatParameters::FlatParameters(const std::vector<Tensor>& params) : params_(params) {
  if (params_.empty()) fail<ValueError>("FlatParameters", "no parameters to flatten");
  const DType dtype = params_.front().dtype();
  const int64_t align = kAlignBytes / static_cast<int64_t>(dtype_size(dtype));
  std::set<const TensorImpl*> seen;
  int64_t total = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.defined()) fail<ValueError>("FlatParameters", "parameter {} is an undefined tensor", i);
    if (p.dtype() != dtype)
      fail<DTypeError>("FlatParameters", "parameter {} ('{}') is {}, the first one is {}: one buffer holds one dtype",
                       i, p.name(), dtype_name(p.dtype()), dtype_name(dtype));
    if (!is_floating(dtype) || !p.is_leaf())
      fail<ValueError>("FlatParameters", "parameter {} ('{}') must be a floating leaf", i, p.name());
    if (!seen.insert(p.impl_ptr().get()).second)
      fail<ValueError>("FlatParameters", "parameter {} ('{}') appears more than once", i, p.name());
    offsets_.push_back(total);
    total += (p.numel() + align - 1) / align * align;
  }
  NoGradGuard no_grad;
  data_ = zeros({total}, dtype);
  grad_ = zeros({total}, dtype);
  for (size_t i = 0; i < params_.size(); ++i) {
    TensorImpl& impl = params_[i].impl();
    const Shape strides = contiguous_strides(impl.shape);
    const Tensor values = data_.as_strided(impl.shape, strides, offsets_[i]);
    values.copy_(params_[i].detach());
    const Tensor grad = grad_.as_strided(impl.shape, strides, offsets_[i]);
    if (impl.grad) grad.copy_(Tensor(impl.grad));
    impl.storage = data_.storage();
    impl.strides = strides;
    impl.offset = offsets_[i];
    impl.grad = grad.impl_ptr();
    impl.grad_is_view = true;
  }
}

void FlatParameters::zero_grad() const { grad_.fill_(0.0); }

void FlatParameters::check_intact(std::string_view where) const {
  for (const Tensor& p : params_) {
    const TensorImpl& impl = p.impl();
    if (impl.storage != data_.storage() || !impl.grad || impl.grad->storage != grad_.storage())
      fail<ValueError>(where, "parameter '{}' no longer lives in the flat buffers (converted with Module::to or "
                       "given new storage after flattening?)", p.name());
  }
}

}  // namespace gradformer::nn

// FlatParameters: every parameter of a module in one contiguous buffer and every gradient in another, each
// parameter's data and grad being views into them, so that an allreduce (nn/distributed.h), a broadcast or a
// checksum touches one buffer instead of hundreds of small tensors. Each parameter starts on a 64-byte boundary
// (as Storage aligns its own allocations), so kernels see the same alignment as before; the gaps are zero.
//
// The grads stay views for good: the engine accumulates into an existing grad, zero_grad fills the view with
// zeros instead of dropping it, and set_grad copies into it (TensorImpl::grad_is_view). So after flattening
// every parameter has a defined gradient, and an optimizer updates every parameter every step, even one that
// no loss reached (with a zero gradient). Not here: any collective, optimizer state (kept per parameter).
#pragma once

#include "autograd/tensor.h"
#include "nn/module.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace gradformer::nn {

class FlatParameters {
 public:
  // Moves the values (and any gradient) of `params` into the two buffers. The parameters must be distinct,
  // floating, contiguous-able leaves of one dtype. Convert the module (Module::to) before flattening: a
  // conversion afterwards gives parameters storage of their own again, which check_intact reports.
  explicit FlatParameters(const std::vector<Tensor>& params);
  explicit FlatParameters(const Module& module) : FlatParameters(module.parameters()) {}

  DType dtype() const { return data_.dtype(); }
  int64_t numel() const { return data_.numel(); }  // including the alignment gaps
  const Tensor& data() const { return data_; }     // 1-D, every parameter's values
  const Tensor& grad() const { return grad_; }     // 1-D, every parameter's gradient
  const std::vector<Tensor>& parameters() const { return params_; }
  // Where parameter i starts in both buffers, in elements (increasing with i).
  const std::vector<int64_t>& offsets() const { return offsets_; }
  // Fills the gradient buffer with zeros.
  void zero_grad() const;
  // Throws ValueError naming `where` and the first parameter whose data or grad no longer lives in the buffers.
  void check_intact(std::string_view where) const;

 private:
  std::vector<Tensor> params_;
  std::vector<int64_t> offsets_;
  Tensor data_, grad_;
};

}  // namespace gradformer::nn

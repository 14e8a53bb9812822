// Mixed precision, as torch.autocast(device_type="cpu", dtype=torch.bfloat16): the guard that turns it on for a
// scope of this thread, and the policy of which op computes in which dtype under it. The products themselves
// ask autocast_products.h; the engine runs each node's backward under the autocast state its forward ran in
// (ForwardModes, autograd/engine.h), so an op never re-installs it.
//
// While an AutocastGuard(DType::bf16) is alive, the ops of kAutocastBf16Ops (matmul, bmm, linear, the two
// products of attention, and their backward products) read their f32 operands rounded to bf16 and run on
// oneDNN's bf16 matmul with f32 accumulation and f32 output; every other op (softmax, log_softmax, layer norm,
// losses, reductions, the optimizer) runs in f32 as without it. Tensors stay f32: weights, their gradients and
// optimizer state are the f32 master copies, and no bf16 tensor enters the graph. A product recorded under the
// guard runs its backward products in bf16 too, wherever backward() is called (PyTorch's autocast behaves the
// same way). Products too small to gain from bf16 (gemm::bf16_pays) stay f32. AutocastGuard(DType::f32) turns
// the mode off within its scope; any other dtype throws DTypeError.
#pragma once

#include "autograd/engine.h"

#include <algorithm>
#include <array>

namespace gradformer {

DType autocast_dtype();  // bf16 inside an AutocastGuard(DType::bf16), otherwise f32

class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype);
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  ForwardModesGuard modes_;
};

// The policy: the ops whose products run in bf16 under autocast (PyTorch's "lower_precision_fp" list for CPU);
// every op not listed computes in f32. docs' autocast table is checked against this list by test_autocast.cpp.
inline constexpr std::array kAutocastBf16Ops{Op::matmul, Op::bmm, Op::linear, Op::scaled_dot_product_attention};

// The dtype `op` computes its products in under autocast set to `autocast` (f32 when autocast is off).
constexpr DType autocast_policy(Op op, DType autocast = DType::bf16) {
  const bool listed = std::find(kAutocastBf16Ops.begin(), kAutocastBf16Ops.end(), op) != kAutocastBf16Ops.end();
  return autocast == DType::bf16 && listed ? DType::bf16 : DType::f32;
}

}  // namespace gradformer

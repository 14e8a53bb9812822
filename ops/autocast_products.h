// What an op's matrix products ask autocast (ops/autocast.h): the precision of one product, decided once from the
// policy, the thread's autocast state and whether bf16 pays for its shape; and the cache of weights' bf16
// roundings. Defined in ops/autocast.cpp beside the guard and the policy. Internal to the ops: not installed.
#pragma once

#include "ops/autocast.h"
#include "ops/gemm.h"

namespace gradformer::autocast {

// The precision `op`'s product of these operands runs in on this thread: bf16 when autocast is on, the policy
// lists op, the product is f32 and rounding pays (gemm::bf16_pays); otherwise native.
gemm::Precision product_precision(Op op, DType dtype, const gemm::Matrix& a, const gemm::Matrix& b,
                                  const gemm::Matrix& c);

// The bf16 rounding of a weight (rank 2, f32) that products under autocast read, made once and reused, as
// PyTorch's autocast caches the casts of its leaf tensors: a second call returns the same tensor until the
// weight's storage version changes (Storage::version: any writable access to the bytes, which covers the
// optimizer's step, a checkpoint load, copy_ and fill_), and then rounds the new values. One cache per thread,
// keyed by the storage and the view. With gradients (training) the cache does not keep a rounding alive: it is
// reused while something holds it (the graph, whose products saved it for backward, or the caller), then made
// afresh, as the next optimizer step would renew it anyway. Without gradients (NoGradGuard: inference,
// decoding) the cache keeps it until the weight is written or freed, as PyTorch's autocast keeps its casts, so
// that a decoding step reuses every weight's rounding: a bf16 copy of the weights read, half their f32 size.
Tensor cached_bf16_weight(const Tensor& weight);

}  // namespace gradformer::autocast

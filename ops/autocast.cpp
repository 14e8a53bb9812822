// Autocast's one home: the guard over the engine's forward modes, the precision of each product, and the cache
// of weights' bf16 roundings. Not the kernels (gemm*.cpp) nor the policy's list (ops/autocast.h).
#include "ops/autocast_products.h"

#include "ops/gemm_backends.h"

#include <map>
#include <memory>
#include <vector>

namespace gradformer {
namespace {

DType checked_autocast(DType dtype) {
  if (dtype != DType::bf16 && dtype != DType::f32)
    fail<DTypeError>("autocast", "runs products in bf16 (or f32 to turn it off), not {}", dtype_name(dtype));
  return dtype;
}

ForwardModes with_autocast(DType dtype) {
  ForwardModes modes = current_forward_modes();
  modes.autocast = checked_autocast(dtype);
  return modes;
}

}  // namespace

DType autocast_dtype() { return current_forward_modes().autocast; }

AutocastGuard::AutocastGuard(DType dtype) : modes_(with_autocast(dtype)) {}

}  // namespace gradformer

namespace gradformer::autocast {
namespace {

// A weight's bf16 rounding (cached_bf16_weight), valid while its storage lives and keeps `version`. Made with
// gradients (training), the entry does not own the rounding: it lives as long as a product's saved operand (the
// graph) or a caller holds it, so the cache costs no memory between training steps, whose optimizer renews every
// weight anyway. Made without (inference), the entry keeps it: nothing else would, and a decoding step would
// round every weight again.
struct CachedRounding {
  std::weak_ptr<Storage> storage;
  uint64_t version = 0;
  std::weak_ptr<TensorImpl> rounded;
  Tensor kept{};
};
// By storage address, offset, shape and strides: the view a product reads.
thread_local std::map<std::vector<int64_t>, CachedRounding> weight_roundings;

}  // namespace

gemm::Precision product_precision(Op op, DType dtype, const gemm::Matrix& a, const gemm::Matrix& b,
                                  const gemm::Matrix& c) {
  const bool bf16 = dtype == DType::f32 && autocast_policy(op, autocast_dtype()) == DType::bf16 &&
                    gemm::bf16_pays(a, b, c);
  return bf16 ? gemm::Precision::bf16 : gemm::Precision::native;
}

Tensor cached_bf16_weight(const Tensor& weight) {
  gemm::check_roundable(weight);
  const std::shared_ptr<Storage>& storage = weight.storage();
  const uint64_t version = storage->version();
  const std::vector<int64_t> key{static_cast<int64_t>(reinterpret_cast<uintptr_t>(storage.get())), weight.offset(),
                                 weight.shape()[0], weight.shape()[1], weight.strides()[0], weight.strides()[1]};
  auto it = weight_roundings.find(key);
  // A dead storage whose address came back for a new one fails the lock() comparison.
  if (it != weight_roundings.end() && it->second.storage.lock() == storage && it->second.version == version)
    if (std::shared_ptr<TensorImpl> rounded = it->second.rounded.lock()) return Tensor(std::move(rounded));
  std::erase_if(weight_roundings, [](const auto& entry) {
    const std::shared_ptr<Storage> live = entry.second.storage.lock();
    return !live || live->version() != entry.second.version || entry.second.rounded.expired();
  });
  Tensor rounded = gemm::rounded_to_bf16(weight);
  weight_roundings[key] = CachedRounding{storage, version, rounded.impl_ptr(), grad_mode_enabled() ? Tensor{} : rounded};
  return rounded;
}

}  // namespace gradformer::autocast

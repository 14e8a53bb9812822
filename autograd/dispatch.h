// Runtime dtype → C++ type. A kernel is written once as a generic lambda and called as
//   visit_floating(x.dtype(), "exp", [&]<class T>(std::type_identity<T>) { ... });
// visit_dtype and visit_floating serve ops and throw DTypeError naming the op for a dtype they do not compute in
// (bf16 among them); visit_stored also reaches bf16, as bfloat16, for what only moves values (copies, element
// access, printing).
#pragma once

#include "autograd/tensor.h"

#include <type_traits>

namespace gradformer {

template <class Fn>
decltype(auto) visit_dtype(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(std::type_identity<float>{});
    case DType::f64: return fn(std::type_identity<double>{});
    case DType::i64: return fn(std::type_identity<int64_t>{});
    case DType::boolean: return fn(std::type_identity<bool>{});
    default: fail<DTypeError>(op, "expects f32, f64, i64 or bool, got {}", dtype_name(dtype));
  }
}

template <class Fn>
decltype(auto) visit_stored(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(std::type_identity<float>{});
    case DType::f64: return fn(std::type_identity<double>{});
    case DType::i64: return fn(std::type_identity<int64_t>{});
    case DType::boolean: return fn(std::type_identity<bool>{});
    case DType::bf16: return fn(std::type_identity<bfloat16>{});
  }
  fail<DTypeError>("dispatch", "unknown dtype {}", static_cast<int>(dtype));
}

// For ops defined on real numbers only: names the op and the dtype it was given otherwise.
template <class Fn>
decltype(auto) visit_floating(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(std::type_identity<float>{});
    case DType::f64: return fn(std::type_identity<double>{});
    default: fail<DTypeError>(op, "expects f32 or f64, got {}", dtype_name(dtype));
  }
}

}  // namespace gradformer

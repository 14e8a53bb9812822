// Runtime dtype → C++ type. A kernel is written once as a generic lambda and called as
//   visit_floating(x.dtype(), "exp", [&]<class T>(std::type_identity<T>) { ... });
#pragma once

#include "autograd/tensor.h"

#include <type_traits>

namespace gradformer {

template <class Fn>
decltype(auto) visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(std::type_identity<float>{});
    case DType::f64: return fn(std::type_identity<double>{});
    case DType::i64: return fn(std::type_identity<int64_t>{});
    case DType::boolean: return fn(std::type_identity<bool>{});
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

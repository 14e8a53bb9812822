// The bf16 dtype (autograd/tensor.h): rounding to nearest even from f32, exact widening back, element access and
// printing; bf16 takes part in no op, and each op given one says so by name.
#include "autograd/tensor.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

using namespace gradformer;
using gradformer::testing::message_of;

TEST_CASE("bf16: f32 rounds to the nearest bf16, ties to even; NaN, infinities and signs survive") {
  const float ulp = std::ldexp(1.0f, -7);  // bf16's spacing in [1, 2): 7 stored mantissa bits
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor x = from_vector<float>({1.0f, 1.0f + ulp / 2,                    // a tie: to 1 (even mantissa)
                                       1.0f + 3 * ulp / 2,                      // a tie: up to 1 + 2·ulp (even)
                                       1.0f + ulp / 2 + std::ldexp(1.0f, -20),  // past the tie: up
                                       1.0f + ulp / 2 - std::ldexp(1.0f, -20),  // short of it: down
                                       -2.5f, inf, -inf, std::numeric_limits<float>::max(), 3.0e-39f},
                                      {10});
  const Tensor rounded = x.to(DType::bf16);
  CHECK(rounded.dtype() == DType::bf16);
  CHECK(dtype_size(DType::bf16) == 2);
  const std::vector<float> back = rounded.to_vector<float>();
  CHECK(back == std::vector<float>{1.0f, 1.0f, 1.0f + 2 * ulp, 1.0f + ulp, 1.0f, -2.5f, inf, -inf, inf,
                                   bfloat16(3.0e-39f).to_float()});
  CHECK(back[9] > 0.0f);  // a subnormal stays a (bf16 subnormal) number
  CHECK(std::isnan(tensor<float>({std::nanf("")}).to(DType::bf16).item()));
  CHECK(bfloat16(1.0f).bits == 0x3f80);
  CHECK(bfloat16(-2.0).bits == 0xc000);
}

TEST_CASE("bf16: widening to f32 is exact, so f32 -> bf16 -> f32 -> bf16 changes nothing more") {
  Generator gen(1);
  const Tensor once = randn({64}, gen).to(DType::bf16).to(DType::f32);
  CHECK(once.to(DType::bf16).to(DType::f32).to_vector<float>() == once.to_vector<float>());
  CHECK(once.to(DType::f64).to(DType::bf16).to(DType::f32).to_vector<float>() == once.to_vector<float>());
}

TEST_CASE("bf16: element access, fill, copies of strided views and printing") {
  Tensor t = zeros({2, 3}, DType::bf16);
  t.set_at({1, 2}, 1.0 + 1.0 / 128);
  CHECK(t.at({1, 2}) == 1.0 + 1.0 / 128);
  CHECK(full({2}, 0.1, DType::bf16).at({0}) == static_cast<double>(bfloat16(0.1f).to_float()));
  const Tensor transposed = transpose(t, 0, 1).contiguous();
  CHECK(transposed.dtype() == DType::bf16);
  CHECK(transposed.at({2, 1}) == 1.0 + 1.0 / 128);
  CHECK(to_string(tensor<float>({1.0f, -0.5f, 3.14159f}).to(DType::bf16)) ==
        "tensor([1.0000, -0.5000, 3.1406], dtype=bf16)");
  CHECK(to_string(scalar_tensor(2.0, DType::bf16)) == "tensor(2.0000, dtype=bf16)");
}

TEST_CASE("bf16: a tensor converted to bf16 leaves the graph; ops and gradients refuse bf16 by name") {
  Tensor x = ones({2, 2});
  x.requires_grad_();
  CHECK_FALSE(x.to(DType::bf16).requires_grad());
  const Tensor b = ones({2, 2}, DType::bf16);
  CHECK(message_of<DTypeError>([&] { exp(b); }) == "exp: expects f32 or f64, got bf16");
  CHECK(message_of<DTypeError>([&] { matmul(b, b); }) == "matmul: expects f32 or f64, got bf16");
  CHECK(message_of<DTypeError>([&] { linear(b, b); }) == "linear: expects f32 or f64, got bf16");
  CHECK(message_of<DTypeError>([&] { b + b; }) == "add: expects f32 or f64, got bf16");
  CHECK(message_of<DTypeError>([&] { sum(b); }).starts_with("sum: "));
  CHECK(message_of<DTypeError>([&] { eq(b, 1.0); }) == "eq: expects f32, f64, i64 or bool, got bf16");
  CHECK(message_of<DTypeError>([&] { where(ones({2, 2}, DType::boolean), b, b); }) ==
        "where: expects f32, f64, i64 or bool, got bf16");
  Tensor leaf = ones({2}, DType::bf16);
  CHECK(message_of<DTypeError>([&] { leaf.requires_grad_(); }) ==
        "requires_grad_: only f32 and f64 tensors can require gradients, got bf16");
  CHECK(message_of<DTypeError>([&] { randn({2}, default_generator(), DType::bf16); }) ==
        "randn: expects f32 or f64, got bf16");
}

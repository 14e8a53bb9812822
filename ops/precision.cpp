// choose_precision: oneDNN's ISA first, then a timed product where the ISA alone does not settle it.
#include "ops/precision.h"

#include "autograd/engine.h"
#include "autograd/generator.h"
#include "ops/gemm.h"
#include "ops/gemm_backends.h"
#include "ops/shape.h"

#include <dnnl.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>

namespace gradformer {
namespace {

// The median of five runs of a linear-shaped product ([256, 256] x [256, 1024], the weight's rounding cached as
// linear's is) in `precision`, after one warm-up run that also makes the primitive.
double product_seconds(DType precision) {
  Generator gen(0);
  const Tensor x = randn({256, 256}, gen), out = empty({256, 1024});
  Tensor weight = randn({1024, 256}, gen);
  if (precision == DType::bf16) weight = gemm::rounded_to_bf16(weight);
  const gemm::Matrix a = gemm::operand_of(x), b = gemm::operand_of(transpose(weight, 0, 1)), c = gemm::matrix_of(out);
  gemm::ProductOptions options;
  options.precision = precision == DType::bf16 ? gemm::Precision::bf16 : gemm::Precision::native;
  gemm::multiply(DType::f32, 1, a, b, c, options);
  std::array<double, 5> seconds{};
  for (double& s : seconds) {
    const auto start = std::chrono::steady_clock::now();
    gemm::multiply(DType::f32, 1, a, b, c, options);
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[2];
}

PrecisionChoice decide() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const std::string name = onednn_isa_name();
  if (!bf16_products_supported())
    return {DType::f32, fmt::format("oneDNN's ISA here is {}: no AVX512-BF16 or AMX, and oneDNN has no bf16 matmul "
                                    "for it (bf16 products would be emulated on f32 kernels, slower than f32)",
                                    name)};
  if (isa == dnnl::cpu_isa::avx512_core_amx)
    return {DType::bf16, fmt::format("oneDNN's ISA here is {}: AMX tiles multiply bf16 several times faster than f32",
                                     name)};
  if (isa != dnnl::cpu_isa::avx512_core_bf16)
    return {DType::f32, fmt::format("oneDNN's ISA here is {}: no AVX512-BF16 or AMX, so oneDNN emulates bf16 "
                                    "products, slower than f32",
                                    name)};
  const double f32 = product_seconds(DType::f32), bf16 = product_seconds(DType::bf16);
  const double ratio = f32 / bf16;
  return {ratio > 1.1 ? DType::bf16 : DType::f32,
          fmt::format("oneDNN's ISA here is {} (AVX512-BF16, no AMX): a 256x1024x256 product measured {:.2f} ms in "
                      "f32, {:.2f} ms in bf16 ({:.2f}x){}",
                      name, f32 * 1e3, bf16 * 1e3, ratio, ratio > 1.1 ? "" : ", not enough to pay for rounding")};
}

}  // namespace

std::string onednn_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::all: return "all";
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    default: return fmt::format("isa {}", static_cast<int>(dnnl::get_effective_cpu_isa()));
  }
}

bool bf16_products_supported() { return gemm::onednn_multiplies_bf16(); }

PrecisionChoice choose_precision() {
  static const PrecisionChoice choice = decide();
  return choice;
}

}  // namespace gradformer

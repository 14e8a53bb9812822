// `--precision auto`: which precision a program's products should run in on this CPU. bf16 (autocast: products
// in bf16 with f32 accumulation, everything else f32) pays only where the CPU multiplies bf16 natively and faster
// than f32: AMX tiles always do (5-7x oneDNN's f32 rate on the Xeons measured); AVX512-BF16 alone may or may not
// (1.9x on a Zen 4, slower than f32 on an Intel of family 6 model 207), so it is measured; without either, oneDNN
// 2.6 has no bf16 matmul at all. The library's default stays f32: this is the programs' choice, made at run time.
#pragma once

#include "autograd/tensor.h"

#include <string>

namespace gradformer {

struct PrecisionChoice {
  DType precision = DType::f32;
  std::string reason;  // "oneDNN's ISA here is avx2: no AVX512-BF16 or AMX, and no bf16 matmul", ...
};

// Decides by oneDNN's effective ISA (dnnl::get_effective_cpu_isa, which honours ONEDNN_MAX_CPU_ISA) and, where
// that leaves it open (AVX512-BF16 without AMX), by timing a 256 x 1024 x 256 product in both precisions on the
// current threads (a few milliseconds). Made once per process; later calls return the first answer.
PrecisionChoice choose_precision();

// Whether oneDNN runs bf16 matmuls on this CPU at all (natively, or emulated on AVX512 without BF16): oneDNN
// 2.6 has none below AVX512. gemm::onednn_multiplies_bf16's answer: without it, a bf16 product is emulated on
// f32 kernels (ops/gemm.cpp).
bool bf16_products_supported();

// "oneDNN's ISA" as oneDNN names it: avx2, avx512_core, avx512_core_bf16, avx512_core_amx, ...
std::string onednn_isa_name();

}  // namespace gradformer

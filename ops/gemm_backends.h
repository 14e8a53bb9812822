// What the GEMM dispatcher (gemm.cpp) calls: one function per backend, each in its own file, and the bf16
// conversions of operands they share. Internal to ops/gemm*.cpp and ops/autocast.cpp: not installed, not API.
// gemm_reference.cpp  the textbook loop every backend is held to (declared in gemm.h: tests call it)
// gemm_blas.cpp       OpenBLAS sgemm/dgemm, packing operands whose rows and columns are both strided
// gemm_onednn.cpp     oneDNN matmul primitives (f32, or bf16 operands with f32 accumulation), created once per shape
// gemm_bf16.cpp       f32 operands rounded to bf16 and bf16 operands widened to f32, in the operand's orientation
#pragma once

#include "ops/gemm.h"

namespace gradformer::gemm {

// Below this many multiply-adds per matrix, f32 products go to OpenBLAS's sgemm, which runs them on the calling
// thread: oneDNN opens an OpenMP parallel region for each, and on tiny matrices (an RNN step, a decoding step)
// waking the team costs more than the product. Measured per call, 2 threads, f32 (machine under load, medians
// of repeated runs): 2x64x64 13.8 us oneDNN vs 4.7 us sgemm; 32x32x32 17 us vs 5.6 us; 8x128x128 and 64x64x64
// swing to milliseconds on oneDNN when the second core is busy, tens of microseconds on sgemm.
constexpr int64_t kSmallProduct = 64 * 64 * 64;

// c = alpha · a · b (+ bias) on OpenBLAS, T float or double; c's rows must be contiguous.
template <class T>
void multiply_blas(int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, double alpha,
                   const std::byte* bias);

// c = alpha · a · b (+ bias) on a oneDNN matmul primitive: in f32, or with a and b in bf16 (rounded here unless
// they come rounded; f32 accumulation, f32 bias and output).
void multiply_onednn(int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, float alpha,
                     const std::byte* bias, Precision precision);

// How many elements the operand's matrices hold: one matrix for a repeated one (batch_stride 0), else `batch`.
size_t elements_stored(const Matrix& m, int64_t batch);
// An f32 operand rounded to bf16 into dst (elements_stored(m, batch) of them), dense in m's orientation.
Matrix rounded_operand(const Matrix& m, int64_t batch, bfloat16* dst);
// A bf16 operand widened (exactly) to f32 into `buffer`, for a backend that multiplies f32.
Matrix widened_operand(const Matrix& m, int64_t batch, Tensor& buffer);
// Throws DTypeError unless t is an f32 matrix (rank 2): what rounded_to_bf16 and the weight cache take.
void check_roundable(const Tensor& t);

}  // namespace gradformer::gemm

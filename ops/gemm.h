// The matrix-product kernels under matmul, linear and attention: f32 on oneDNN matmul primitives (created once
// per shape and cached: creating one costs far more than a small product), f64 on OpenBLAS dgemm. Operands are
// strided views, so a transposed operand reaches the kernel as strides (a transpose flag), never as a copy.
#pragma once

#include "autograd/tensor.h"

namespace gradformer::gemm {

// One operand: `batch` matrices of rows × cols with element strides; batch_stride 0 repeats one matrix.
struct Matrix {
  std::byte* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 0, batch_stride = 0;
};

// c[i] = alpha · a[i] · b[i] (+ bias broadcast over rows) (+ c[i] when accumulate), for i < batch.
// bias, when given, is a contiguous vector of c.cols elements. All operands share dtype (f32 or f64).
void multiply(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, double alpha = 1.0,
              bool accumulate = false, const std::byte* bias = nullptr);

// t itself unless one of its matrix dimensions (the last two) has size > 1 and stride 0 (an expanded operand),
// which neither oneDNN nor dgemm takes: then a contiguous copy. Stride 0 across leading (batch) dimensions stays:
// the kernels repeat one matrix for it. No graph: callers pass detached tensors.
Tensor with_dense_matrices(const Tensor& t);

// The matrix view of the last two dimensions of t, which must have rank 2 or 3 (batch first).
Matrix matrix_of(const Tensor& t);

// How many oneDNN primitives the cache holds (for tests of the cache and for the benchmark's report).
size_t cached_primitive_count();

}  // namespace gradformer::gemm

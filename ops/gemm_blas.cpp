// The OpenBLAS backend of the GEMM: f64 products, and f32 products small enough that oneDNN's parallel region
// costs more than the product. dgemm and sgemm take a matrix whose rows or columns are contiguous; anything else
// is packed first. Not the choice of backend (gemm.cpp).
#include "ops/gemm_backends.h"

#include "autograd/strided.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace gradformer::gemm {
namespace {

// An operand as BLAS takes it: its data (or a packed copy), transpose flag, leading dimension and batch stride.
template <class T>
struct BlasOperand {
  const T* data;
  CBLAS_TRANSPOSE transpose;
  int64_t leading;
  int64_t batch_stride;
  std::vector<T> packed;
};

template <class T>
BlasOperand<T> blas_operand(const Matrix& m, int64_t batch) {
  BlasOperand<T> op{reinterpret_cast<const T*>(m.data), CblasNoTrans, 0, m.batch_stride, {}};
  const int64_t rows = std::max<int64_t>(m.rows, 1), cols = std::max<int64_t>(m.cols, 1);
  if ((m.col_stride == 1 || m.cols <= 1) && (m.rows <= 1 || m.row_stride >= cols)) {
    op.leading = m.rows <= 1 ? cols : m.row_stride;
    return op;
  }
  if ((m.row_stride == 1 || m.rows <= 1) && (m.cols <= 1 || m.col_stride >= rows)) {
    op.transpose = CblasTrans;
    op.leading = m.cols <= 1 ? rows : m.col_stride;
    return op;
  }
  const int64_t copies = m.batch_stride == 0 ? 1 : batch;
  op.packed.resize(static_cast<size_t>(copies * m.rows * m.cols));
  const T* src = reinterpret_cast<const T*>(m.data);
  for (int64_t i = 0; i < copies; ++i)
    for (int64_t r = 0; r < m.rows; ++r)
      for (int64_t c = 0; c < m.cols; ++c)
        op.packed[static_cast<size_t>((i * m.rows + r) * m.cols + c)] =
            src[i * m.batch_stride + r * m.row_stride + c * m.col_stride];
  op.data = op.packed.data();
  op.transpose = CblasNoTrans;
  op.leading = std::max<int64_t>(m.cols, 1);
  op.batch_stride = m.batch_stride == 0 ? 0 : m.rows * m.cols;
  return op;
}

// sgemm and dgemm behind one name, so multiply_blas is written once for both.
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha, const float* a,
               blasint lda, const float* b, blasint ldb, double beta, float* c, blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb, static_cast<float>(beta), c, ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha, const double* a,
               blasint lda, const double* b, blasint ldb, double beta, double* c, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

template <class T>
void multiply_blas(int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, double alpha,
                   const std::byte* bias) {
  const BlasOperand<T> pa = blas_operand<T>(a, batch), pb = blas_operand<T>(b, batch);
  auto* out = reinterpret_cast<T*>(c.data);
  // gemm writes row-major output with contiguous rows; multiply() sends only such outputs here.
  const int64_t ldc = std::max<int64_t>({c.rows > 1 ? c.row_stride : c.cols, c.cols, 1});
  const T* bias_values = reinterpret_cast<const T*>(bias);
  // A batch of small matrices (attention's per-head products: a decoding step's are 1 x 64 x S, 256 of them)
  // is split across the team: OpenBLAS runs each on the calling thread, so the batch loop alone would leave the
  // other cores waiting. Larger ones stay in order, since OpenBLAS threads each of them itself.
  const int64_t multiply_adds = a.rows * b.cols * a.cols;
  const bool split = c.batch_stride != 0 && multiply_adds <= kSmallProduct;
  parallel_for(batch, split ? batch * multiply_adds : 0, kMemoryBoundGrain, [&](int64_t i) {
    T* ci = out + i * c.batch_stride;
    double beta = 0.0;
    if (bias_values) {  // c = bias first, then gemm adds the product onto it (beta = 1)
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t col = 0; col < c.cols; ++col) ci[r * ldc + col] = bias_values[col];
      beta = 1.0;
    }
    if (a.cols == 0) {  // an empty inner dimension: the product is zero, gemm would reject lda
      if (beta == 0.0)
        for (int64_t r = 0; r < c.rows; ++r) std::memset(ci + r * ldc, 0, sizeof(T) * static_cast<size_t>(c.cols));
      return;
    }
    blas_gemm(pa.transpose, pb.transpose, static_cast<blasint>(a.rows), static_cast<blasint>(b.cols),
              static_cast<blasint>(a.cols), alpha, pa.data + i * pa.batch_stride, static_cast<blasint>(pa.leading),
              pb.data + i * pb.batch_stride, static_cast<blasint>(pb.leading), beta, ci, static_cast<blasint>(ldc));
  });
}

template void multiply_blas<float>(int64_t, const Matrix&, const Matrix&, const Matrix&, double, const std::byte*);
template void multiply_blas<double>(int64_t, const Matrix&, const Matrix&, const Matrix&, double, const std::byte*);

}  // namespace gradformer::gemm

// The reference GEMM: the textbook triple loop, reading every operand through its strides and summing in double.
// Slow and obviously right: the yardstick every backend is tested against (llm.c keeps matmul_forward_naive for
// the same reason), never chosen for speed except where the product is all bias (an empty inner dimension).
#include "ops/gemm_backends.h"

#include "autograd/dispatch.h"

#include <type_traits>

namespace gradformer::gemm {
namespace {

template <class T>
void reference_loop(int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, double alpha,
                    const std::byte* bias) {
  const T* pa = reinterpret_cast<const T*>(a.data);
  const T* pb = reinterpret_cast<const T*>(b.data);
  T* pc = reinterpret_cast<T*>(c.data);
  const T* bias_values = reinterpret_cast<const T*>(bias);
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < c.cols; ++col) {
        double total = 0.0;
        for (int64_t k = 0; k < a.cols; ++k)
          total += static_cast<double>(pa[i * a.batch_stride + r * a.row_stride + k * a.col_stride]) *
                   static_cast<double>(pb[i * b.batch_stride + k * b.row_stride + col * b.col_stride]);
        total *= alpha;
        if (bias_values) total += static_cast<double>(bias_values[col]);
        pc[i * c.batch_stride + r * c.row_stride + col * c.col_stride] = static_cast<T>(total);
      }
}

}  // namespace

void multiply_reference(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c,
                        const ProductOptions& options) {
  visit_floating(dtype, "gemm", [&]<class T>(std::type_identity<T>) {
    reference_loop<T>(batch, a, b, c, options.alpha, options.bias);
  });
}

}  // namespace gradformer::gemm

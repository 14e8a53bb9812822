// bf16 conversions of GEMM operands: f32 rounded to bf16 (nearest even) for oneDNN's bf16 matmul, bf16 widened to
// f32 for the backends that multiply f32. Each copy is dense and keeps the operand's orientation, so a transposed
// operand stays a transpose for the kernel. Not the weight cache (ops/autocast.cpp) and not a backend.
#include "ops/gemm_backends.h"

namespace gradformer::gemm {
namespace {

// The copy of m that dense_copy writes to `data`: dense and in the same orientation as m (rows or columns
// contiguous); neither contiguous packs by rows.
Matrix dense_layout(const Matrix& m, std::byte* data, bool bf16) {
  const bool by_columns = m.col_stride != 1 && m.row_stride == 1;
  return Matrix{data,
                m.rows,
                m.cols,
                by_columns ? 1 : m.cols,
                by_columns ? m.rows : 1,
                m.batch_stride == 0 ? 0 : m.rows * m.cols,
                bf16};
}

int64_t matrices_stored(const Matrix& m, int64_t batch) { return m.batch_stride == 0 ? 1 : batch; }

// dst = convert(m) in dense_layout(m): To and From are the element types. A contiguous run (the common case)
// is a plain loop that the compiler vectorises (-march=native: 16 floats per AVX-512 step); on the calling
// thread, because the copy streams memory at a few GB/s while a parallel region for it costs a wake-up of
// the OpenMP team that oneDNN's kernels also use: measured 2026-11-28 on an AMD Zen 4 (2 virtual CPUs shared
// with other programs), a region per operand made bf16 products 3x slower than f32, the team's second thread
// being busy or descheduled.
template <class From, class To, class Convert>
Matrix dense_copy(const Matrix& m, int64_t batch, To* dst, bool bf16_result, Convert convert) {
  const Matrix out = dense_layout(m, reinterpret_cast<std::byte*>(dst), bf16_result);
  const bool by_columns = out.row_stride == 1 && out.col_stride != 1;
  const From* src = reinterpret_cast<const From*>(m.data);
  const int64_t outer = by_columns ? m.cols : m.rows, inner = by_columns ? m.rows : m.cols;
  const int64_t outer_stride = by_columns ? m.col_stride : m.row_stride;
  const int64_t inner_stride = by_columns ? m.row_stride : m.col_stride;
  for (int64_t i = 0; i < matrices_stored(m, batch); ++i)
    for (int64_t o = 0; o < outer; ++o) {
      const From* line = src + i * m.batch_stride + o * outer_stride;
      To* to = dst + (i * outer + o) * inner;
      if (inner_stride == 1) {
        for (int64_t k = 0; k < inner; ++k) to[k] = convert(line[k]);
      } else {
        for (int64_t k = 0; k < inner; ++k) to[k] = convert(line[k * inner_stride]);
      }
    }
  return out;
}

}  // namespace

size_t elements_stored(const Matrix& m, int64_t batch) {
  return static_cast<size_t>(matrices_stored(m, batch) * m.rows * m.cols);
}

Matrix rounded_operand(const Matrix& m, int64_t batch, bfloat16* dst) {
  return dense_copy<float>(m, batch, dst, true, [](float value) {
    bfloat16 rounded;
    rounded.bits = bfloat16::round_from(value);
    return rounded;
  });
}

Matrix widened_operand(const Matrix& m, int64_t batch, Tensor& buffer) {
  buffer = empty({static_cast<int64_t>(elements_stored(m, batch))}, DType::f32);
  return dense_copy<bfloat16>(m, batch, buffer.data_ptr<float>(), false,
                              [](bfloat16 value) { return value.to_float(); });
}

void check_roundable(const Tensor& t) {
  if (t.dtype() != DType::f32 || t.dim() != 2)
    fail<DTypeError>("gemm", "rounds f32 matrices to bf16, got {} {}", dtype_name(t.dtype()), shape_str(t.shape()));
}

Tensor rounded_to_bf16(const Tensor& t) {
  check_roundable(t);
  const Tensor elements = empty({t.numel()}, DType::bf16);
  const Matrix rounded = rounded_operand(operand_of(t), 1, elements.data_ptr<bfloat16>());
  return elements.as_strided(t.shape(), {rounded.row_stride, rounded.col_stride}, 0);
}

}  // namespace gradformer::gemm

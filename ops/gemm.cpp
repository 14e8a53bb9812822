// The GEMM dispatcher: which backend a product runs on, and the operand views the ops hand it. The backends
// themselves are one file each (gemm_backends.h lists them); whether a product runs in bf16 is the op's
// argument, decided by autocast (ops/autocast.cpp), never read here from a mode.
#include "ops/gemm.h"

#include "ops/gemm_backends.h"

#include <algorithm>
#include <array>

namespace gradformer::gemm {
namespace {

thread_local std::optional<Backend> forced_backend;
thread_local std::array<int64_t, 4> products_run{};

// Under autocast, rounding an f32 operand pays only when the output's other side is at least this long. Rounding
// a costs about m·k · 0.5 ns here, b about k·n · 0.5 ns, and bf16 saves half the multiply time (m·n·k · 2.5 ps
// at the 200 vs 400 GFLOP/s measured by gradformer-bench --peak): rounding a pays for n above about 200 / 2, b for
// m above the same, both for m·n / (m + n) above about 100. A decoding step's product (m = the batch, 64 in the
// bench) would round a whole weight matrix for a few rows, so it goes to bf16 only when the weight's rounding is
// cached (b.bf16: made once, read at every step).
constexpr int64_t kBf16MinimumSide = 128;

bool small_for_blas(const Matrix& a, const Matrix& b, const Matrix& c) {
  return a.rows * b.cols * a.cols <= kSmallProduct && (c.col_stride == 1 || c.cols == 1);
}

void check_forced(Backend backend, DType dtype, const Matrix& c) {
  if ((backend == Backend::onednn || backend == Backend::onednn_bf16) && dtype != DType::f32)
    fail<ValueError>("gemm", "the oneDNN{} backend takes f32 products, not {}",
                     backend == Backend::onednn_bf16 ? " bf16" : "", dtype_name(dtype));
  if (backend == Backend::blas && c.cols > 1 && c.col_stride != 1)
    fail<ValueError>("gemm", "the BLAS backend writes outputs with contiguous rows; this one has column stride {}",
                     c.col_stride);
}

}  // namespace

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::reference: return "reference";
    case Backend::blas: return "blas";
    case Backend::onednn: return "onednn";
    case Backend::onednn_bf16: return "onednn_bf16";
  }
  return "unknown";
}

bool bf16_pays(const Matrix& a, const Matrix& b, const Matrix& c) {
  if (small_for_blas(a, b, c) || a.cols == 0) return false;
  return (a.bf16 || b.cols >= kBf16MinimumSide) && (b.bf16 || a.rows >= kBf16MinimumSide);
}

Backend choose_backend(DType dtype, const Matrix& a, const Matrix& b, const Matrix& c, Precision precision) {
  if (dtype == DType::f64) return Backend::blas;
  if (precision == Precision::bf16) return Backend::onednn_bf16;
  if (small_for_blas(a, b, c)) return Backend::blas;
  if (a.cols == 0) return Backend::reference;  // the product is zero (+ bias): nothing for a fast kernel to do
  return Backend::onednn;
}

void multiply(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c,
              const ProductOptions& options) {
  if (batch == 0 || c.rows == 0 || c.cols == 0) return;
  if (forced_backend) check_forced(*forced_backend, dtype, c);
  const Backend backend = forced_backend.value_or(choose_backend(dtype, a, b, c, options.precision));
  if (backend != Backend::onednn_bf16 && (a.bf16 || b.bf16)) {
    Tensor a_buffer, b_buffer;
    multiply(dtype, batch, a.bf16 ? widened_operand(a, batch, a_buffer) : a,
             b.bf16 ? widened_operand(b, batch, b_buffer) : b, c, options);
    return;
  }
  ++products_run[static_cast<size_t>(backend)];
  const auto alpha = options.alpha;
  switch (backend) {
    case Backend::reference: multiply_reference(dtype, batch, a, b, c, options); return;
    case Backend::blas:
      if (dtype == DType::f64)
        multiply_blas<double>(batch, a, b, c, alpha, options.bias);
      else
        multiply_blas<float>(batch, a, b, c, alpha, options.bias);
      return;
    case Backend::onednn:
      multiply_onednn(batch, a, b, c, static_cast<float>(alpha), options.bias, Precision::native);
      return;
    case Backend::onednn_bf16:
      multiply_onednn(batch, a, b, c, static_cast<float>(alpha), options.bias, Precision::bf16);
      return;
  }
}

ForceBackend::ForceBackend(Backend backend) : previous_(forced_backend) { forced_backend = backend; }
ForceBackend::~ForceBackend() { forced_backend = previous_; }

int64_t products_run_on(Backend backend) { return products_run[static_cast<size_t>(backend)]; }

Tensor with_dense_matrices(const Tensor& t) {
  for (int64_t d = std::max<int64_t>(t.dim() - 2, 0); d < t.dim(); ++d)
    if (t.shape()[static_cast<size_t>(d)] > 1 && t.strides()[static_cast<size_t>(d)] == 0) return t.contiguous();
  return t;
}

Matrix matrix_of(const Tensor& t) {
  Matrix m = operand_of(t);
  m.data = t.raw_data();
  return m;
}

Matrix operand_of(const Tensor& t) {
  const int64_t r = t.dim();
  return Matrix{const_cast<std::byte*>(t.storage()->read_only_data()) + t.offset() * dtype_size(t.dtype()),
                t.shape()[static_cast<size_t>(r - 2)],
                t.shape()[static_cast<size_t>(r - 1)],
                t.strides()[static_cast<size_t>(r - 2)],
                t.strides()[static_cast<size_t>(r - 1)],
                r == 3 ? (t.shape()[0] == 1 ? 0 : t.strides()[0]) : 0,
                t.dtype() == DType::bf16};
}

}  // namespace gradformer::gemm

#include "ops/gemm.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/onednn.h"

#include <cblas.h>

#include <array>
#include <bit>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace gradformer::gemm {
namespace {

thread_local std::optional<Backend> forced_backend;

// A weight's bf16 rounding (cached_bf16_weight), valid while its storage lives and keeps `version`. Made with
// gradients (training), the entry does not own the rounding: it lives as long as a product's saved operand (the
// graph) or a caller holds it, so the cache costs no memory between training steps, whose optimizer renews every
// weight anyway. Made without (inference), the entry keeps it: nothing else would, and a decoding step would
// round every weight again.
struct CachedRounding {
  std::weak_ptr<Storage> storage;
  uint64_t version = 0;
  std::weak_ptr<TensorImpl> rounded;
  Tensor kept{};
};
// By storage address, offset, shape and strides: the view a product reads.
thread_local std::map<std::vector<int64_t>, CachedRounding> weight_roundings;
thread_local std::array<int64_t, 4> products_run{};

// The oneDNN primitives made so far, by everything that shapes one (sizes, strides, bias, alpha).
struct PrimitiveCache {
  std::mutex mutex;
  std::map<std::vector<int64_t>, dnnl::matmul> primitives;
};

PrimitiveCache& primitive_cache() {
  static PrimitiveCache cache;
  return cache;
}

// A matrix oneDNN sees as a [batch, rows, cols] tensor; a repeated matrix is a batch of 1, which it broadcasts.
dnnl::memory::desc describe(const Matrix& m, int64_t batch,
                            dnnl::memory::data_type type = dnnl::memory::data_type::f32) {
  const int64_t b = m.batch_stride == 0 ? 1 : batch;
  return dnnl::memory::desc({b, m.rows, m.cols}, type,
                            {m.batch_stride == 0 ? m.rows * m.cols : m.batch_stride, m.row_stride, m.col_stride});
}

// The copy of m that dense_copy writes to `data`: dense and in the same orientation as m (rows or columns
// contiguous), so that a transposed operand stays a transpose for the kernel; neither contiguous packs by rows.
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
size_t elements_stored(const Matrix& m, int64_t batch) {
  return static_cast<size_t>(matrices_stored(m, batch) * m.rows * m.cols);
}

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

// An f32 operand rounded to bf16 into dst (elements_stored(m, batch) of them), in dense_layout.
Matrix rounded_operand(const Matrix& m, int64_t batch, bfloat16* dst) {
  return dense_copy<float>(m, batch, dst, true, [](float value) {
    bfloat16 rounded;
    rounded.bits = bfloat16::round_from(value);
    return rounded;
  });
}

// A bf16 operand widened (exactly) to f32 into `buffer`, for a backend that multiplies f32.
Matrix widened_operand(const Matrix& m, int64_t batch, Tensor& buffer) {
  buffer = empty({static_cast<int64_t>(elements_stored(m, batch))}, DType::f32);
  return dense_copy<bfloat16>(m, batch, buffer.data_ptr<float>(), false,
                              [](bfloat16 value) { return value.to_float(); });
}

// c = alpha · a · b (+ bias) on a oneDNN matmul primitive: in f32, or with a and b in bf16 (rounded here
// unless they come rounded; f32 accumulation, f32 bias and output) for autocast.
void multiply_onednn(int64_t batch, const Matrix& given_a, const Matrix& given_b, const Matrix& c, float alpha,
                     const std::byte* bias, bool bf16_operands) {
  // Tensors rather than std::vector: a vector zero-fills what the copy then overwrites (a memset pass as long
  // as the rounding itself in perf's profile of small).
  Tensor a_buffer, b_buffer;
  auto operand = [&](const Matrix& given, Tensor& buffer) {
    if (!bf16_operands || given.bf16) return given;
    buffer = empty({static_cast<int64_t>(elements_stored(given, batch))}, DType::bf16);
    return rounded_operand(given, batch, buffer.data_ptr<bfloat16>());
  };
  const Matrix a = operand(given_a, a_buffer), b = operand(given_b, b_buffer);
  const auto operand_type = bf16_operands ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  PrimitiveCache& cache = primitive_cache();
  const std::vector<int64_t> key{batch,        a.rows,       a.cols,         b.cols,       a.row_stride,
                                 a.col_stride, a.batch_stride, b.row_stride, b.col_stride, b.batch_stride,
                                 c.row_stride, c.col_stride,   c.batch_stride, bias != nullptr,
                                 static_cast<int64_t>(std::bit_cast<uint32_t>(alpha)), bf16_operands};
  const dnnl::memory::desc a_md = describe(a, batch, operand_type), b_md = describe(b, batch, operand_type),
                           c_md = describe(c, batch);
  const dnnl::memory::desc bias_md({1, 1, c.cols}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::abc);
  // oneDNN's output scale multiplies the bias too (dst = alpha · (a·b + bias)), so a scaled product adds its
  // bias afterwards as a binary post-op instead; an unscaled one (linear's) takes it as the bias argument.
  const bool bias_after_scale = bias && alpha != 1.0f;
  dnnl::matmul primitive;
  {
    std::lock_guard lock(cache.mutex);
    auto it = cache.primitives.find(key);
    if (it == cache.primitives.end()) {
      dnnl::primitive_attr attr;
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      if (bias_after_scale) {
        dnnl::post_ops ops;
        ops.append_binary(dnnl::algorithm::binary_add, bias_md);
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::desc desc = bias && !bias_after_scale ? dnnl::matmul::desc(a_md, b_md, bias_md, c_md)
                                                                : dnnl::matmul::desc(a_md, b_md, c_md);
      dnnl::matmul::primitive_desc primitive_desc;
      try {
        primitive_desc = dnnl::matmul::primitive_desc(desc, attr, onednn::engine());
      } catch (const dnnl::error& error) {
        fail<ValueError>("gemm", "oneDNN has no {} matmul for [{}, {}] x [{}, {}] on this CPU ({})",
                         bf16_operands ? "bf16" : "f32", a.rows, a.cols, b.rows, b.cols, error.what());
      }
      it = cache.primitives.emplace(key, dnnl::matmul(primitive_desc)).first;
    }
    primitive = it->second;
  }
  const dnnl::engine& engine = onednn::engine();
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(a_md, engine, a.data)},
                                             {DNNL_ARG_WEIGHTS, dnnl::memory(b_md, engine, b.data)},
                                             {DNNL_ARG_DST, dnnl::memory(c_md, engine, c.data)}};
  if (bias)
    args.emplace(bias_after_scale ? DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1 : DNNL_ARG_BIAS,
                 dnnl::memory(bias_md, engine, const_cast<std::byte*>(bias)));
  dnnl::stream& stream = onednn::stream();
  primitive.execute(stream, args);
  stream.wait();
}

// dgemm takes a matrix whose rows or columns are contiguous; anything else is packed first.
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

// Below this many multiply-adds per matrix, f32 products go to OpenBLAS's sgemm, which runs them on the calling
// thread: oneDNN opens an OpenMP parallel region for each, and on tiny matrices (an RNN step, a decoding step)
// waking the team costs more than the product. Measured
// per call, 2 threads, f32 (machine under load, medians of repeated runs): 2x64x64 13.8 us oneDNN vs 4.7 us
// sgemm; 32x32x32 17 us vs 5.6 us; 8x128x128 and 64x64x64 swing to milliseconds on oneDNN when the second core is
// busy, tens of microseconds on sgemm.
constexpr int64_t kSmallProduct = 64 * 64 * 64;

// Under autocast, rounding an f32 operand pays only when the output's other side is at least this long. Rounding
// a costs about m·k · 0.5 ns here, b about k·n · 0.5 ns, and bf16 saves half the multiply time (m·n·k · 2.5 ps
// at the 200 vs 400 GFLOP/s measured by gradformer-bench --peak): rounding a pays for n above about 200 / 2, b for
// m above the same, both for m·n / (m + n) above about 100. A decoding step's product (m = the batch, 64 in the
// bench) would round a whole weight matrix for a few rows, so it goes to bf16 only when the weight's rounding is
// cached (b.bf16: made once, read at every step).
constexpr int64_t kBf16MinimumSide = 128;

// sgemm and dgemm behind one name, so multiply_blas is written once for both.
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha, const float* a,
               blasint lda, const float* b, blasint ldb, double beta, float* c, blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb, static_cast<float>(beta), c, ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha, const double* a,
               blasint lda, const double* b, blasint ldb, double beta, double* c, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

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

Backend planned_backend(DType dtype, const Matrix& a, const Matrix& b, const Matrix& c) {
  return forced_backend.value_or(choose_backend(dtype, a, b, c));
}

Backend choose_backend(DType dtype, const Matrix& a, const Matrix& b, const Matrix& c) {
  if (dtype == DType::f64) return Backend::blas;
  if (a.rows * b.cols * a.cols <= kSmallProduct && (c.col_stride == 1 || c.cols == 1)) return Backend::blas;
  if (a.cols == 0) return Backend::reference;  // the product is zero (+ bias): nothing for a fast kernel to do
  const bool bf16_pays = (a.bf16 || b.cols >= kBf16MinimumSide) && (b.bf16 || a.rows >= kBf16MinimumSide);
  return autocast_dtype() == DType::bf16 && bf16_pays ? Backend::onednn_bf16 : Backend::onednn;
}

void multiply(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, double alpha,
              const std::byte* bias) {
  if (batch == 0 || c.rows == 0 || c.cols == 0) return;
  if (forced_backend) check_forced(*forced_backend, dtype, c);
  const Backend backend = planned_backend(dtype, a, b, c);
  if (backend != Backend::onednn_bf16 && (a.bf16 || b.bf16)) {
    Tensor a_buffer, b_buffer;
    multiply(dtype, batch, a.bf16 ? widened_operand(a, batch, a_buffer) : a,
             b.bf16 ? widened_operand(b, batch, b_buffer) : b, c, alpha, bias);
    return;
  }
  ++products_run[static_cast<size_t>(backend)];
  switch (backend) {
    case Backend::reference: multiply_reference(dtype, batch, a, b, c, alpha, bias); return;
    case Backend::blas:
      if (dtype == DType::f64)
        multiply_blas<double>(batch, a, b, c, alpha, bias);
      else
        multiply_blas<float>(batch, a, b, c, alpha, bias);
      return;
    case Backend::onednn: multiply_onednn(batch, a, b, c, static_cast<float>(alpha), bias, false); return;
    case Backend::onednn_bf16: multiply_onednn(batch, a, b, c, static_cast<float>(alpha), bias, true); return;
  }
}

void multiply_reference(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c, double alpha,
                        const std::byte* bias) {
  visit_floating(dtype, "gemm", [&]<class T>(std::type_identity<T>) { reference_loop<T>(batch, a, b, c, alpha, bias); });
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

namespace {

void check_roundable(const Tensor& t) {
  if (t.dtype() != DType::f32 || t.dim() != 2)
    fail<DTypeError>("gemm", "rounds f32 matrices to bf16, got {} {}", dtype_name(t.dtype()), shape_str(t.shape()));
}

}  // namespace

Tensor rounded_to_bf16(const Tensor& t) {
  check_roundable(t);
  const Tensor elements = empty({t.numel()}, DType::bf16);
  const Matrix rounded = rounded_operand(operand_of(t), 1, elements.data_ptr<bfloat16>());
  return elements.as_strided(t.shape(), {rounded.row_stride, rounded.col_stride}, 0);
}

Tensor cached_bf16_weight(const Tensor& weight) {
  check_roundable(weight);
  const std::shared_ptr<Storage>& storage = weight.storage();
  const uint64_t version = storage->version();
  const std::vector<int64_t> key{static_cast<int64_t>(reinterpret_cast<uintptr_t>(storage.get())), weight.offset(),
                                 weight.shape()[0], weight.shape()[1], weight.strides()[0], weight.strides()[1]};
  auto it = weight_roundings.find(key);
  // A dead storage whose address came back for a new one fails the lock() comparison.
  if (it != weight_roundings.end() && it->second.storage.lock() == storage && it->second.version == version)
    if (std::shared_ptr<TensorImpl> rounded = it->second.rounded.lock()) return Tensor(std::move(rounded));
  std::erase_if(weight_roundings, [](const auto& entry) {
    const std::shared_ptr<Storage> live = entry.second.storage.lock();
    return !live || live->version() != entry.second.version || entry.second.rounded.expired();
  });
  Tensor rounded = rounded_to_bf16(weight);
  weight_roundings[key] = CachedRounding{storage, version, rounded.impl_ptr(), grad_mode_enabled() ? Tensor{} : rounded};
  return rounded;
}

}  // namespace gradformer::gemm

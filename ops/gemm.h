// The matrix-product kernels under matmul, linear and attention, behind one dispatcher (gemm.cpp) that picks a
// backend per product: f32 on oneDNN matmul primitives (gemm_onednn.cpp) or, for small products, OpenBLAS sgemm
// (gemm_blas.cpp); f32 with bf16 operands on oneDNN's bf16 matmul, accumulating and writing f32, when the op asks
// for Precision::bf16 (autocast decides that, ops/autocast.cpp); f64 on OpenBLAS dgemm; and a plain reference
// loop that tests compare them with (gemm_reference.cpp). Operands are strided views, so a transposed operand
// reaches the kernel as strides (a transpose flag), never as a copy. Internal to the ops: not installed.
#pragma once

#include "autograd/tensor.h"

#include <optional>
#include <string_view>

namespace gradformer::gemm {

// One operand: `batch` matrices of rows × cols with element strides; batch_stride 0 repeats one matrix.
// `bf16` marks an operand of an f32 product already rounded to bf16 (a cached weight, an activation saved in
// bf16): the bf16 backend reads it as it is, the f32 ones widen it to f32 (exactly) first.
struct Matrix {
  std::byte* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 0, batch_stride = 0;
  bool bf16 = false;
};

// What an f32 product multiplies in: f32 itself, or its operands rounded to bf16 (nearest even) with f32
// accumulation and output. The op decides, once per product, through autocast (ops/autocast.cpp); an f64
// product is always `native`.
enum class Precision { native, bf16 };

// Where a product runs. multiply() picks one by choose_backend(); reference is the plain loop that the tests
// hold the others to (llm.c keeps matmul_forward_naive for the same reason), never picked for speed;
// onednn_bf16 rounds f32 operands to bf16 (nearest even) and multiplies them with f32 accumulation and output.
enum class Backend { reference, blas, onednn, onednn_bf16 };
std::string_view backend_name(Backend backend);

// What a product adds to c = a · b: c = alpha · a · b + bias (broadcast over rows), in `precision`. bias, when
// given, is a contiguous vector of c.cols elements.
struct ProductOptions {
  double alpha = 1.0;
  const std::byte* bias = nullptr;
  Precision precision = Precision::native;
};

// c[i] = alpha · a[i] · b[i] (+ bias), for i < batch. All operands share dtype (f32 or f64); c must not overlap
// a, b or bias.
void multiply(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c,
              const ProductOptions& options = {});

// Whether rounding an f32 product's operands to bf16 costs less than bf16 saves on oneDNN: not for products of
// at most 64³ multiply-adds per matrix whose output has unit column stride (they stay on sgemm: there the
// rounding and the primitive call cost more than bf16 saves), nor for an empty inner dimension; otherwise an
// operand still in f32 is worth rounding only when the output's other side is at least 128 long (a, when c has
// 128 columns; b, when c has 128 rows). So a product of two f32 operands needs 128 rows and columns, while a
// decoding step's product with a weight whose rounding is cached (b.bf16) pays at a few rows.
bool bf16_pays(const Matrix& a, const Matrix& b, const Matrix& c);

// The backend multiply() runs these operands on: f64 on OpenBLAS dgemm; an f32 product in Precision::bf16 on
// oneDNN's bf16 matmul; f32 products of at most 64³ multiply-adds per matrix whose output has unit column stride
// on sgemm; f32 with an empty inner dimension (which oneDNN rejects) on the reference loop; every other f32
// product on a oneDNN f32 matmul primitive.
Backend choose_backend(DType dtype, const Matrix& a, const Matrix& b, const Matrix& c,
                       Precision precision = Precision::native);

// The same product as multiply() by the textbook triple loop, reading every operand through its strides and
// summing in double: slow, obviously right, the yardstick for the fast kernels (options.precision is ignored).
void multiply_reference(DType dtype, int64_t batch, const Matrix& a, const Matrix& b, const Matrix& c,
                        const ProductOptions& options = {});

// While alive, multiply() on this thread runs every product on `backend` instead of its choice, so that a test
// can put any shape through any path and an op through the reference. A product the backend cannot take
// (oneDNN with f64, BLAS with an output whose columns are strided) throws ValueError.
class ForceBackend {
 public:
  explicit ForceBackend(Backend backend);
  ~ForceBackend();
  ForceBackend(const ForceBackend&) = delete;
  ForceBackend& operator=(const ForceBackend&) = delete;

 private:
  std::optional<Backend> previous_;
};

// How many products multiply() has run on `backend` on this thread: how a test sees which path an op took.
int64_t products_run_on(Backend backend);

// t itself unless one of its matrix dimensions (the last two) has size > 1 and stride 0 (an expanded operand),
// which neither oneDNN nor dgemm takes: then a contiguous copy. Stride 0 across leading (batch) dimensions stays:
// the kernels repeat one matrix for it. No graph: callers pass detached tensors.
Tensor with_dense_matrices(const Tensor& t);

// The matrix view of the last two dimensions of t, which must have rank 2 or 3 (batch first); a bf16 t gives a
// bf16 operand.
Matrix matrix_of(const Tensor& t);
// matrix_of for an operand the product only reads: taking it does not count as a write to t's storage
// (Storage::version), so reading a weight keeps its cached bf16 rounding valid. Outputs take matrix_of.
Matrix operand_of(const Tensor& t);

// The f32 matrix t (rank 2) rounded to bf16 (nearest even, as bfloat16::round_from), as a dense bf16 tensor in
// the same orientation (a transposed view stays a transpose, so its product keeps its transpose flag). No graph.
Tensor rounded_to_bf16(const Tensor& t);

}  // namespace gradformer::gemm

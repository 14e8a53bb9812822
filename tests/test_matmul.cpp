// matmul, linear and bmm, and the GEMM kernels beneath them (ops/gemm.h): hand-computed products, linear
// against its composition, the errors; then every backend (OpenBLAS, oneDNN) against the plain reference loop
// on every operand layout, and matmul, linear, bmm and attention driven through each path the selection takes
// (small f32 -> sgemm, f64 -> dgemm, large f32 -> oneDNN) against the same op run on the reference, in value and
// gradient. These are the tests that keep a new kernel or precision honest. Under autocast (bf16 operands, f32
// accumulation) the same ops and layouts are held to the reference within bf16's tolerance.
#include "autograd/engine.h"
#include "ops/autocast_products.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "tests/op_helpers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <functional>
#include <string>

using namespace gradformer;
using gradformer::testing::message_of;
using testing::max_abs;
using testing::check_close;
using testing::max_abs_difference;
using testing::value_and_grads;

namespace {

using Inputs = std::vector<Tensor>;

constexpr std::array kBackends{gemm::Backend::reference, gemm::Backend::blas, gemm::Backend::onednn,
                               gemm::Backend::onednn_bf16};

// How many products each backend has run on this thread so far.
struct ProductCounts {
  std::array<int64_t, kBackends.size()> before = [] {
    std::array<int64_t, kBackends.size()> counts{};
    for (gemm::Backend backend : kBackends) counts[static_cast<size_t>(backend)] = gemm::products_run_on(backend);
    return counts;
  }();
  int64_t since(gemm::Backend backend) const {
    return gemm::products_run_on(backend) - before[static_cast<size_t>(backend)];
  }
};

// bf16 keeps 8 significant bits, so each rounded operand is off by up to 2⁻⁹ of itself; products of the sizes
// below, and gradients through attention's softmax, stay within 2⁻⁶ of the largest reference value.
constexpr double kBf16Tolerance = 1.0 / 64;

// An op applied to inputs drawn (as views: transposed, expanded) for a dtype.
struct OpCase {
  std::string name;
  std::function<Inputs(Generator&, DType)> make;
  std::function<Tensor(const Inputs&)> apply;
};

// Runs the case on its views with the backends multiply() picks, and on dense copies with every product forced
// onto the reference loop; the values and gradients must agree, and every product of the first run must have
// gone to `expected` (so a test of the oneDNN path cannot quietly run on BLAS).
void check_path(const OpCase& op, DType dtype, gemm::Backend expected, double tolerance) {
  CAPTURE(op.name);
  CAPTURE(dtype_name(dtype));
  Generator gen(11);
  const Inputs inputs = op.make(gen, dtype);
  Generator weights_gen(12);
  const Tensor probe = op.apply(inputs);
  const Tensor weights = randn(probe.shape(), weights_gen, dtype);

  const ProductCounts before;
  const std::vector<Tensor> fast = value_and_grads(op.apply, inputs, weights);
  const int64_t on_expected = before.since(expected);
  CHECK(on_expected > 0);
  for (gemm::Backend other : kBackends)
    if (other != expected) CHECK_MESSAGE(before.since(other) == 0, gemm::backend_name(other));

  Inputs dense;
  for (const Tensor& t : inputs) dense.push_back(t.contiguous());
  std::vector<Tensor> reference;
  {
    gemm::ForceBackend force(gemm::Backend::reference);
    reference = value_and_grads(op.apply, dense, weights);
  }
  double scale = 0.0;
  for (const Tensor& t : reference) scale = std::max(scale, max_abs(t));
  check_close(fast, reference, tolerance * (1.0 + scale));
}

// The ops over the three size classes: `size` scales every matrix dimension, so that 4 keeps each product
// below the 64³ multiply-adds of sgemm and 70 puts each above it (130: outputs of 128 x 128 and more, which
// autocast runs in bf16).
std::vector<OpCase> op_cases(int64_t size) {
  const int64_t m = size, k = size + 3, n = size + 5;
  auto draw = [](Generator& g, Shape shape, DType dtype) { return randn(std::move(shape), g, dtype); };
  return {
      {"matmul 2-D", [=](Generator& g, DType t) { return Inputs{draw(g, {m, k}, t), draw(g, {k, n}, t)}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul transposed operands",
       [=](Generator& g, DType t) {
         return Inputs{transpose(draw(g, {k, m}, t), 0, 1), transpose(draw(g, {n, k}, t), 0, 1)};
       },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul batched", [=](Generator& g, DType t) { return Inputs{draw(g, {2, m, k}, t), draw(g, {2, k, n}, t)}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [B, M, K] x [K, N] folded", [=](Generator& g, DType t) {
         return Inputs{draw(g, {2, m, k}, t), draw(g, {k, n}, t)}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul broadcast batch",
       [=](Generator& g, DType t) { return Inputs{draw(g, {2, 1, m, k}, t), draw(g, {3, k, n}, t)}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul expanded batch (stride 0)",
       [=](Generator& g, DType t) { return Inputs{expand(draw(g, {1, m, k}, t), {3, m, k}), draw(g, {3, k, n}, t)}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"bmm transposed", [=](Generator& g, DType t) {
         return Inputs{transpose(draw(g, {2, k, m}, t), 1, 2), draw(g, {2, k, n}, t)}; },
       [](const Inputs& x) { return bmm(x[0], x[1]); }},
      {"linear with bias, transposed weight",
       [=](Generator& g, DType t) {
         return Inputs{draw(g, {2, m, k}, t), transpose(draw(g, {k, n}, t), 0, 1), draw(g, {n}, t)};
       },
       [](const Inputs& x) { return linear(x[0], x[1], x[2]); }},
      {"linear without bias", [=](Generator& g, DType t) { return Inputs{draw(g, {m, k}, t), draw(g, {n, k}, t)}; },
       [](const Inputs& x) { return linear(x[0], x[1]); }},
      {"attention causal",
       [=](Generator& g, DType t) { return Inputs{draw(g, {1, 2, m, k}, t), draw(g, {1, 2, n, k}, t),
                                                   draw(g, {1, 2, n, m}, t)}; },
       [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], {.causal = true}).output; }},
      {"attention split heads (per-batch products)",
       [=](Generator& g, DType t) {
         return Inputs{transpose(draw(g, {2, m, 2, k}, t), 1, 2), transpose(draw(g, {2, n, 2, k}, t), 1, 2),
                       transpose(draw(g, {2, n, 2, m}, t), 1, 2)};
       },
       [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]).output; }},
  };
}

// A [batch, rows, cols] tensor's matrices, or with `transposed` the transposes of a [batch, cols, rows] one.
Tensor operand(Generator& gen, int64_t batch, int64_t rows, int64_t cols, bool transposed, DType dtype) {
  return transposed ? transpose(randn({batch, cols, rows}, gen, dtype), 1, 2) : randn({batch, rows, cols}, gen, dtype);
}

}  // namespace

TEST_CASE("linear: hand-computed values, with and without bias") {
  const Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor w = from_vector<double>({1, 0, -1, 2, 1, 0}, {2, 3});
  const Tensor b = tensor<double>({0.5, -1});
  // rows of x · Wᵀ: [1 - 3, 2 + 2] = [-2, 4] and [4 - 6, 8 + 5] = [-2, 13]
  CHECK(linear(x, w).to_vector<double>() == std::vector<double>{-2, 4, -2, 13});
  CHECK(linear(x, w, b).to_vector<double>() == std::vector<double>{-1.5, 3, -1.5, 12});
  CHECK(linear(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32)).to_vector<double>() ==
        std::vector<double>{-1.5, 3, -1.5, 12});
}

TEST_CASE("linear: equals matmul(x, Wᵀ) + b in value and gradient, for 3-D input and a transposed weight") {
  Generator gen(3);
  const Tensor x = randn({2, 3, 4}, gen, DType::f64);
  const Tensor w = transpose(randn({4, 5}, gen, DType::f64), 0, 1);  // [5, 4], non-contiguous
  const Tensor b = randn({5}, gen, DType::f64);
  const Tensor r = randn({2, 3, 5}, gen, DType::f64);
  const auto fused = value_and_grads([](const auto& in) { return linear(in[0], in[1], in[2]); }, {x, w, b}, r);
  const auto composed =
      value_and_grads([](const auto& in) { return matmul(in[0], transpose(in[1], 0, 1)) + in[2]; }, {x, w, b}, r);
  check_close(fused, composed, 1e-12);
  const auto no_bias = value_and_grads([](const auto& in) { return linear(in[0], in[1]); }, {x, w}, r);
  const auto composed_no_bias =
      value_and_grads([](const auto& in) { return matmul(in[0], transpose(in[1], 0, 1)); }, {x, w}, r);
  check_close(no_bias, composed_no_bias, 1e-12);
}

TEST_CASE("linear and bmm: errors name the shapes") {
  CHECK(message_of<ShapeError>([] { linear(zeros({4, 7}), zeros({5, 6})); }) ==
        "linear: input [4, 7] x weight [5, 6]: input features 7 and weight in_features 6 differ");
  CHECK(message_of<ShapeError>([] { linear(zeros({4, 6}), zeros({5, 6}), zeros({4})); }) ==
        "linear: bias [4] does not fit weight [5, 6]: expected [5]");
  CHECK(message_of<ShapeError>([] { linear(zeros({4, 6}), zeros({6})); }) ==
        "linear: weight [6] must be 2-D, [out_features, in_features]");
  CHECK(message_of<DTypeError>([] { linear(zeros({2, 3}), zeros({4, 3}, DType::f64)); }) ==
        "linear: input f32 [2, 3], weight f64 [4, 3]: dtypes differ");
  CHECK(message_of<ShapeError>([] { bmm(zeros({2, 3, 4}), zeros({3, 4, 5})); }) ==
        "bmm: [2, 3, 4] x [3, 4, 5]: batch sizes 2 and 3 differ");
  CHECK(message_of<ShapeError>([] { bmm(zeros({2, 3, 4}), zeros({4, 5})); }) ==
        "bmm: [2, 3, 4] x [4, 5]: both operands must be 3-D, [B, M, K] x [B, K, N]");
  CHECK(message_of<ShapeError>([] { bmm(zeros({2, 3, 4}), zeros({2, 3, 5})); }) ==
        "bmm: [2, 3, 4] x [2, 3, 5]: inner dimensions 4 and 3 differ");
}

TEST_CASE("bmm: hand-computed batched product") {
  const Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 1, 2});
  const Tensor b = from_vector<double>({1, 1, 2, -1}, {2, 2, 1});
  CHECK(bmm(a, b).to_vector<double>() == std::vector<double>{3, 2});  // [1 2]·[1 1]ᵀ, [3 4]·[2 -1]ᵀ
  CHECK(bmm(a, b).shape() == Shape{2, 1, 1});
}

TEST_CASE("gemm: the reference loop by hand, through transposed strides, a repeated matrix, alpha and bias") {
  // a = [[1, 2], [3, 4]] stored transposed; b = [[1, 0, 2], [-1, 1, 0]] one matrix for both batches.
  Tensor a = transpose(from_vector<float>({1, 3, 2, 4, 2, 0, 0, 2}, {2, 2, 2}), 1, 2);  // batch 1 is 2·I
  const Tensor b = from_vector<float>({1, 0, 2, -1, 1, 0}, {1, 2, 3});
  const Tensor bias = tensor<float>({10, 20, 30});
  Tensor c = zeros({2, 2, 3});
  gemm::multiply_reference(DType::f32, 2, gemm::matrix_of(a), gemm::matrix_of(b), gemm::matrix_of(c),
                           {.alpha = 0.5, .bias = bias.raw_data()});
  // 0.5 · a·b + bias: a·b = [[-1, 2, 2], [-1, 4, 6]] and 2·b = [[2, 0, 4], [-2, 2, 0]]
  CHECK(c.to_vector<double>() ==
        std::vector<double>{9.5, 21, 31, 9.5, 22, 33, 11, 20, 32, 9, 21, 30});
}

TEST_CASE("gemm: every backend equals the reference loop on every operand layout") {
  const int64_t m = 5, k = 6, n = 7;
  Generator gen(5);
  // 700 small matrices are enough work for sgemm's batch loop to be split across the OpenMP team.
  for (const int64_t batch : {3, 700}) {
    for (DType dtype : {DType::f32, DType::f64}) {
      for (int layout = 0; layout < 64; ++layout) {
        CAPTURE(batch);
        const bool a_transposed = layout & 1, b_transposed = layout & 2, b_repeated = layout & 4;
        const bool with_bias = layout & 8, c_transposed = layout & 16;
        const double alpha = layout & 32 ? -0.75 : 1.0;  // oneDNN once scaled the bias with the product
        CAPTURE(dtype_name(dtype));
        CAPTURE(a_transposed);
        CAPTURE(b_transposed);
        CAPTURE(b_repeated);
        CAPTURE(with_bias);
        CAPTURE(c_transposed);
        CAPTURE(alpha);
        // The same sizes each time with other strides: a primitive cached under too coarse a key would reuse the
        // wrong layout and fail here.
        const Tensor a = operand(gen, batch, m, k, a_transposed, dtype);
        const Tensor b = operand(gen, b_repeated ? 1 : batch, k, n, b_transposed, dtype);
        const Tensor bias = randn({n}, gen, dtype);
        const std::byte* bias_data = with_bias ? bias.raw_data() : nullptr;
        auto output = [&] {
          return c_transposed ? transpose(zeros({batch, n, m}, dtype), 1, 2) : zeros({batch, m, n}, dtype);
        };
        const Tensor expected = output();
        gemm::multiply_reference(dtype, batch, gemm::matrix_of(a), gemm::matrix_of(b), gemm::matrix_of(expected),
                                 {.alpha = alpha, .bias = bias_data});
        for (gemm::Backend backend : {gemm::Backend::blas, gemm::Backend::onednn, gemm::Backend::onednn_bf16}) {
          if (backend != gemm::Backend::blas && dtype == DType::f64) continue;
          if (backend == gemm::Backend::blas && c_transposed) continue;
          CAPTURE(gemm::backend_name(backend));
          const Tensor c = output();
          const ProductCounts before;
          {
            gemm::ForceBackend force(backend);
            gemm::multiply(dtype, batch, gemm::matrix_of(a), gemm::matrix_of(b), gemm::matrix_of(c),
                           {.alpha = alpha, .bias = bias_data});
          }
          CHECK(before.since(backend) == 1);
          const double tolerance = backend == gemm::Backend::onednn_bf16 ? kBf16Tolerance
                                   : dtype == DType::f32                 ? 1e-5
                                                                         : 1e-12;
          CHECK(max_abs_difference(c, expected) <= tolerance * (1 + max_abs(expected)));
        }
      }
    }
  }
}

TEST_CASE("gemm: the backend choice follows the size, dtype and output layout rules") {
  auto matrix = [](int64_t rows, int64_t cols, int64_t col_stride = 1) {
    return gemm::Matrix{nullptr, rows, cols, col_stride == 1 ? cols : 1, col_stride, 0};
  };
  using gemm::Backend;
  CHECK(gemm::choose_backend(DType::f64, matrix(200, 200), matrix(200, 200), matrix(200, 200)) == Backend::blas);
  CHECK(gemm::choose_backend(DType::f32, matrix(64, 64), matrix(64, 64), matrix(64, 64)) == Backend::blas);
  CHECK(gemm::choose_backend(DType::f32, matrix(65, 64), matrix(64, 64), matrix(65, 64)) == Backend::onednn);
  // A small product whose output columns are strided is past what gemm writes.
  CHECK(gemm::choose_backend(DType::f32, matrix(4, 4), matrix(4, 4), matrix(4, 4, 4)) == Backend::onednn);
  CHECK(gemm::choose_backend(DType::f32, matrix(100, 0), matrix(0, 100, 100), matrix(100, 100, 100)) ==
        Backend::reference);
  // Under autocast a product's precision is autocast's decision (ops/autocast.cpp), passed to the choice.
  AutocastGuard autocast(DType::bf16);  // only what went to oneDNN in f32 goes there in bf16
  auto chosen = [](DType dtype, const gemm::Matrix& a, const gemm::Matrix& b, const gemm::Matrix& c) {
    return gemm::choose_backend(dtype, a, b, c, autocast::product_precision(Op::matmul, dtype, a, b, c));
  };
  CHECK(chosen(DType::f32, matrix(128, 64), matrix(64, 128), matrix(128, 128)) == Backend::onednn_bf16);
  // Too few rows (a decoding step) or columns for rounding the operands to pay: f32 oneDNN.
  CHECK(chosen(DType::f32, matrix(64, 512), matrix(512, 512), matrix(64, 512)) == Backend::onednn);
  CHECK(chosen(DType::f32, matrix(512, 512), matrix(512, 127), matrix(512, 127)) == Backend::onednn);
  CHECK(chosen(DType::f32, matrix(64, 64), matrix(64, 64), matrix(64, 64)) == Backend::blas);
  CHECK(chosen(DType::f64, matrix(200, 200), matrix(200, 200), matrix(200, 200)) == Backend::blas);
  // An operand already in bf16 (a weight's cached rounding) costs nothing to round: only the other side's length
  // counts, so a decoding step's product with a cached weight runs in bf16, one with few columns does not.
  auto rounded = [&](int64_t rows, int64_t cols) {
    gemm::Matrix m = matrix(rows, cols);
    m.bf16 = true;
    return m;
  };
  CHECK(chosen(DType::f32, matrix(64, 512), rounded(512, 512), matrix(64, 512)) == Backend::onednn_bf16);
  CHECK(chosen(DType::f32, matrix(8, 512), rounded(512, 2048), matrix(8, 2048)) == Backend::onednn_bf16);
  CHECK(chosen(DType::f32, matrix(512, 512), rounded(512, 127), matrix(512, 127)) == Backend::onednn);
  CHECK(chosen(DType::f32, rounded(64, 512), matrix(512, 512), matrix(64, 512)) == Backend::onednn);
  CHECK(chosen(DType::f32, rounded(64, 512), rounded(512, 100), matrix(64, 100)) == Backend::onednn_bf16);
}

TEST_CASE("gemm: an empty inner dimension gives bias alone on the path that takes it") {
  const Tensor a = zeros({1, 100, 0}), b = zeros({1, 0, 90});
  const Tensor bias = full({90}, 1.5);
  Tensor c = transpose(full({1, 90, 100}, 7.0), 1, 2);  // strided columns: not a BLAS output
  const ProductCounts before;
  gemm::multiply(DType::f32, 1, gemm::matrix_of(a), gemm::matrix_of(b), gemm::matrix_of(c), {.bias = bias.raw_data()});
  CHECK(before.since(gemm::Backend::reference) == 1);
  CHECK(max_abs_difference(c, full({1, 100, 90}, 1.5)) == 0.0);
}

TEST_CASE("gemm: forcing a backend onto a product it cannot take names the reason") {
  const Tensor a = zeros({1, 2, 2}, DType::f64);
  Tensor c = zeros({1, 2, 2}, DType::f64);
  gemm::ForceBackend force(gemm::Backend::onednn);
  CHECK(message_of<ValueError>([&] {
          gemm::multiply(DType::f64, 1, gemm::matrix_of(a), gemm::matrix_of(a), gemm::matrix_of(c));
        }) == "gemm: the oneDNN backend takes f32 products, not f64");
  {
    gemm::ForceBackend bf16(gemm::Backend::onednn_bf16);
    CHECK(message_of<ValueError>([&] {
            gemm::multiply(DType::f64, 1, gemm::matrix_of(a), gemm::matrix_of(a), gemm::matrix_of(c));
          }) == "gemm: the oneDNN bf16 backend takes f32 products, not f64");
  }
  {
    gemm::ForceBackend inner(gemm::Backend::blas);
    Tensor strided = transpose(zeros({1, 2, 2}), 1, 2);
    const Tensor a32 = zeros({1, 2, 2});
    CHECK(message_of<ValueError>([&] {
            gemm::multiply(DType::f32, 1, gemm::matrix_of(a32), gemm::matrix_of(a32), gemm::matrix_of(strided));
          }) == "gemm: the BLAS backend writes outputs with contiguous rows; this one has column stride 2");
  }
  Tensor c32 = zeros({1, 2, 2});
  const Tensor a32 = ones({1, 2, 2});
  const ProductCounts before;  // the inner guard gave the outer one back
  gemm::multiply(DType::f32, 1, gemm::matrix_of(a32), gemm::matrix_of(a32), gemm::matrix_of(c32));
  CHECK(before.since(gemm::Backend::onednn) == 1);
}

TEST_CASE("matmul, linear, bmm and attention: small f32 products run on sgemm and equal the reference") {
  for (const OpCase& op : op_cases(4)) check_path(op, DType::f32, gemm::Backend::blas, 1e-5);
}

TEST_CASE("matmul, linear, bmm and attention: f64 products run on dgemm and equal the reference") {
  for (const OpCase& op : op_cases(4)) check_path(op, DType::f64, gemm::Backend::blas, 1e-12);
  for (const OpCase& op : op_cases(70)) check_path(op, DType::f64, gemm::Backend::blas, 1e-12);
}

TEST_CASE("matmul, linear, bmm and attention: large f32 products run on oneDNN and equal the reference") {
  for (const OpCase& op : op_cases(70)) check_path(op, DType::f32, gemm::Backend::onednn, 1e-4);
}

TEST_CASE("autocast: large f32 products run on oneDNN's bf16 matmul, within bf16 tolerance of the reference") {
  AutocastGuard autocast(DType::bf16);
  for (const OpCase& op : op_cases(130)) check_path(op, DType::f32, gemm::Backend::onednn_bf16, kBf16Tolerance);
}

TEST_CASE("autocast: small f32 products stay on sgemm in f32; f64 products ignore it") {
  AutocastGuard autocast(DType::bf16);
  for (const OpCase& op : op_cases(4)) check_path(op, DType::f32, gemm::Backend::blas, 1e-5);
  for (const OpCase& op : op_cases(70)) check_path(op, DType::f64, gemm::Backend::blas, 1e-12);
}

TEST_CASE("autocast: every op's bf16 value and gradients are within bf16 tolerance of its f32 ones, and differ") {
  for (const OpCase& op : op_cases(130)) {
    CAPTURE(op.name);
    Generator gen(21);
    const Inputs inputs = op.make(gen, DType::f32);
    const Tensor weights = randn(op.apply(inputs).shape(), gen);
    const std::vector<Tensor> f32 = value_and_grads(op.apply, inputs, weights);
    std::vector<Tensor> bf16;
    {
      AutocastGuard autocast(DType::bf16);
      bf16 = value_and_grads(op.apply, inputs, weights);
    }
    double scale = 0.0, largest_difference = 0.0;
    for (size_t i = 0; i < f32.size(); ++i) {
      scale = std::max(scale, max_abs(f32[i]));
      largest_difference = std::max(largest_difference, max_abs_difference(bf16[i], f32[i]));
    }
    check_close(bf16, f32, kBf16Tolerance * (1.0 + scale));
    CHECK(largest_difference > 1e-4 * scale);  // the bf16 path really ran: f32 would agree to ~1e-6
  }
}

TEST_CASE("gemm: OpenBLAS runs the kernels this CPU's instructions allow, not its generic Prescott fallback") {
  // tests/main.cpp calls use_openblas_kernels_for_this_cpu first, as every program's main does; without it,
  // OpenBLAS 0.3.21 runs Prescott kernels on CPU models newer than itself.
  const std::string wanted = openblas_kernels_for_this_cpu();
  CAPTURE(wanted);
  CAPTURE(openblas_kernels_in_use());
  if (!wanted.empty()) CHECK(openblas_kernels_in_use() != "Prescott");
}

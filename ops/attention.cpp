// scaled_dot_product_attention: forward and its closed-form backward, both over batched GEMMs that read q, k
// and v through their strides. The forward keeps only P = softmax(scores) for backward (B·H·T·S values, the
// scores are overwritten in place) and, under dropout, the mask's key to recompute it.
#include "ops/attention.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/strided.h"
#include "ops/dropout_mask.h"
#include "ops/fast_exp.h"
#include "ops/autocast_products.h"
#include "ops/gemm.h"
#include "ops/elementwise.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "ops/normalization.h"
#include "ops/reduce.h"
#include "ops/selection.h"
#include "ops/shape.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

namespace gradformer {
namespace {

constexpr std::string_view kOp = op_name(Op::scaled_dot_product_attention);

// The matrices in the last two dimensions of a 4-D [B, H, rows, cols] tensor, with both batch strides.
struct HeadMatrices {
  std::byte* data = nullptr;
  int64_t rows = 0, cols = 0, row_stride = 0, col_stride = 0;
  int64_t batch_stride = 0, head_stride = 0;  // in elements
};

HeadMatrices heads_of(const Tensor& t) {
  const Shape& n = t.shape();
  const Shape& s = t.strides();
  return HeadMatrices{t.raw_data(), n[2], n[3], s[2], s[3], s[0], s[1]};
}

// The transposed matrices, as strides: no copy.
HeadMatrices transposed(HeadMatrices m) {
  std::swap(m.rows, m.cols);
  std::swap(m.row_stride, m.col_stride);
  return m;
}

// c = alpha · a · b for each of the batches × heads matrices. One GEMM call over all B·H matrices when every
// operand's (B, H) strides nest into one batch stride (contiguous heads, a single batch or a single head);
// else, as for heads split out of a [B, T, H·D] projection (batch stride T·H·D, head stride D), one call per
// head over the B matrices at the batch stride, or one per batch element over its H heads when there are
// fewer of those: a decoding step of small then makes 4 calls of 64 products of 1 x 64 x S, not 64 of 4.
void head_gemm(DType dtype, int64_t batches, int64_t heads, const HeadMatrices& a, const HeadMatrices& b,
               const HeadMatrices& c, double alpha) {
  auto merged_stride = [&](const HeadMatrices& m) -> std::optional<int64_t> {
    if (batches == 1) return m.head_stride;
    if (heads == 1) return m.batch_stride;
    if (m.batch_stride == m.head_stride * heads) return m.head_stride;
    return std::nullopt;
  };
  const auto element = static_cast<int64_t>(dtype_size(dtype));
  // The matrices of batch element `batch` and head `head` onwards, stepping by `stride`.
  auto matrices = [element](const HeadMatrices& m, int64_t batch, int64_t head, int64_t stride) {
    return gemm::Matrix{m.data + (batch * m.batch_stride + head * m.head_stride) * element,
                        m.rows, m.cols, m.row_stride, m.col_stride, stride};
  };
  // One precision for all of this product's matrices: they share their sizes and layout.
  const gemm::ProductOptions options{
      .alpha = alpha,
      .precision = autocast::product_precision(Op::scaled_dot_product_attention, dtype, matrices(a, 0, 0, 0),
                                               matrices(b, 0, 0, 0), matrices(c, 0, 0, 0))};
  const auto sa = merged_stride(a), sb = merged_stride(b), sc = merged_stride(c);
  if (sa && sb && sc) {
    gemm::multiply(dtype, batches * heads, matrices(a, 0, 0, *sa), matrices(b, 0, 0, *sb), matrices(c, 0, 0, *sc),
                   options);
  } else if (heads <= batches) {
    for (int64_t h = 0; h < heads; ++h)
      gemm::multiply(dtype, batches, matrices(a, 0, h, a.batch_stride), matrices(b, 0, h, b.batch_stride),
                     matrices(c, 0, h, c.batch_stride), options);
  } else {
    for (int64_t i = 0; i < batches; ++i)
      gemm::multiply(dtype, heads, matrices(a, i, 0, a.head_stride), matrices(b, i, 0, b.head_stride),
                     matrices(c, i, 0, c.head_stride), options);
  }
}

// The masks of one call: attn_mask read as [B, H, T, S] through broadcast strides, key_padding_mask as [B, S].
struct Masks {
  const std::byte* attn = nullptr;
  bool attn_is_bool = false;
  std::array<int64_t, 4> attn_strides{};
  const bool* padding = nullptr;
  std::array<int64_t, 2> padding_strides{};
  bool causal = false;
};

// In place over scores [B, H, T, S] (contiguous): masked positions become -inf, then each row becomes its
// softmax. A row with nothing left to attend to becomes zeros instead of 0/0.
template <class T>
void masked_softmax_rows(T* scores, int64_t batches, int64_t heads, int64_t queries, int64_t keys, const Masks& m) {
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
  const int64_t rows = batches * heads * queries;
#pragma omp parallel for schedule(static) if (rows * keys >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r % queries, h = (r / queries) % heads, b = r / (queries * heads);
    T* row = scores + r * keys;
    if (m.causal)
      for (int64_t j = i + 1; j < keys; ++j) row[j] = kMinusInf;
    if (m.attn) {
      const int64_t base = b * m.attn_strides[0] + h * m.attn_strides[1] + i * m.attn_strides[2];
      const int64_t step = m.attn_strides[3];
      if (m.attn_is_bool) {
        const bool* take_part = reinterpret_cast<const bool*>(m.attn) + base;
        for (int64_t j = 0; j < keys; ++j)
          if (!take_part[j * step]) row[j] = kMinusInf;
      } else {
        const T* bias = reinterpret_cast<const T*>(m.attn) + base;
        for (int64_t j = 0; j < keys; ++j) row[j] += bias[j * step];
      }
    }
    if (m.padding) {
      const bool* is_padding = m.padding + b * m.padding_strides[0];
      for (int64_t j = 0; j < keys; ++j)
        if (is_padding[j * m.padding_strides[1]]) row[j] = kMinusInf;
    }
    T max = kMinusInf;
#pragma omp simd reduction(max : max)
    for (int64_t j = 0; j < keys; ++j) max = row[j] > max ? row[j] : max;
    if (max == kMinusInf) {
      std::fill(row, row + keys, T(0));
      continue;
    }
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < keys; ++j) {
      row[j] = kernels::exp_nonpositive(row[j] - max);  // f64 keeps std::exp
      total += row[j];
    }
    const T inverse = T(1) / total;
#pragma omp simd
    for (int64_t j = 0; j < keys; ++j) row[j] *= inverse;
  }
}

// In place over grad (= dP', the gradient of the dropped weights P'): dS = P'⊙dP' − P ⊙ rowsum(P'⊙dP').
// With the keep mask M and scale c, P' = c·M⊙P and dP = c·M⊙dP', so the softmax backward
// P ⊙ (dP − rowsum(P⊙dP)) needs no mask: P⊙dP = P'⊙dP'. Without dropout P' is P. Masked positions have
// P = P' = 0, so they (and whole masked rows) get a zero gradient.
template <class T>
void softmax_backward_rows(const T* probs, const T* dropped, T* grad, int64_t rows, int64_t keys) {
#pragma omp parallel for schedule(static) if (rows * keys >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = probs + r * keys;
    const T* pd = dropped + r * keys;
    T* g = grad + r * keys;
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < keys; ++j) dot += pd[j] * g[j];
    for (int64_t j = 0; j < keys; ++j) g[j] = pd[j] * g[j] - p[j] * dot;
  }
}

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    fail<ShapeError>(kOp, "q {}, k {}, v {}: expected 4-D [B, H, T, D], [B, H, S, D], [B, H, S, Dv]",
                     shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype())
    fail<DTypeError>(kOp, "q {}, k {}, v {}: dtypes differ", dtype_name(q.dtype()), dtype_name(k.dtype()),
                     dtype_name(v.dtype()));
  if (!is_floating(q.dtype())) fail<DTypeError>(kOp, "expects f32 or f64, got {}", dtype_name(q.dtype()));
  const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
  if (qs[0] != ks[0] || qs[0] != vs[0] || qs[1] != ks[1] || qs[1] != vs[1])
    fail<ShapeError>(kOp, "q {}, k {}, v {}: batch and head sizes [B, H] differ", shape_str(qs), shape_str(ks),
                     shape_str(vs));
  if (qs[3] != ks[3])
    fail<ShapeError>(kOp, "q {} and k {}: head dimensions {} and {} differ", shape_str(qs), shape_str(ks), qs[3],
                     ks[3]);
  if (ks[2] != vs[2])
    fail<ShapeError>(kOp, "k {} and v {}: key lengths {} and {} differ", shape_str(ks), shape_str(vs), ks[2], vs[2]);

  const int64_t batches = qs[0], heads = qs[1], queries = qs[2], keys = ks[2];
  if (const Tensor& mask = options.attn_mask; mask.defined()) {
    if (mask.dtype() != DType::boolean && mask.dtype() != q.dtype())
      fail<DTypeError>(kOp, "attn_mask must be bool or {} (the dtype of q), got {}", dtype_name(q.dtype()),
                       dtype_name(mask.dtype()));
    const Shape& m = mask.shape();
    const bool fits = (m.size() == 2 && m[0] == queries && m[1] == keys) ||
                      (m.size() == 4 && (m[0] == 1 || m[0] == batches) && (m[1] == 1 || m[1] == heads) &&
                       m[2] == queries && m[3] == keys);
    if (!fits)
      fail<ShapeError>(kOp, "attn_mask {} does not fit scores [{}, {}, {}, {}]: expected [T, S] or [B|1, H|1, T, S]",
                       shape_str(m), batches, heads, queries, keys);
  }
  if (const Tensor& mask = options.key_padding_mask; mask.defined()) {
    if (mask.dtype() != DType::boolean)
      fail<DTypeError>(kOp, "key_padding_mask must be bool (true = padding), got {}", dtype_name(mask.dtype()));
    if (mask.shape() != Shape{batches, keys})
      fail<ShapeError>(kOp, "key_padding_mask {} does not fit k {}: expected [B, S] = [{}, {}]",
                       shape_str(mask.shape()), shape_str(ks), batches, keys);
  }
  if (!(options.dropout >= 0.0 && options.dropout < 1.0))
    fail<ValueError>(kOp, "dropout {} is outside [0, 1)", options.dropout);
}

// What a differentiated backward reads besides the inputs: the masks as tensors (the forward's Masks are raw
// pointers) and the scale.
struct RecordedMasks {
  Tensor attn_mask, key_padding_mask;
  bool causal = false;
  double scale = 1.0;
};

// The weights P = softmax(scale · q·kᵀ + masks) in ops that record: P as a function of q and k, which the
// saved P (a constant to the graph) is not. (B, H, T, S)
Tensor recorded_weights(const Tensor& q, const Tensor& k, const RecordedMasks& masks) {
  constexpr double kMinusInf = -std::numeric_limits<double>::infinity();
  const int64_t batches = q.size(0), queries = q.size(2), keys = k.size(2);
  Tensor scores = matmul(q, transpose(k, -1, -2)) * masks.scale;
  if (masks.causal) {  // key j > query i is masked out
    std::vector<bool> later(static_cast<size_t>(queries * keys));
    for (int64_t i = 0; i < queries; ++i)
      for (int64_t j = 0; j < keys; ++j) later[static_cast<size_t>(i * keys + j)] = j > i;
    scores = masked_fill(scores, from_vector(later, {queries, keys}), kMinusInf);
  }
  if (const Tensor& mask = masks.attn_mask; mask.defined())
    scores = mask.dtype() == DType::boolean ? masked_fill(scores, logical_not(mask), kMinusInf) : scores + mask;
  if (const Tensor& mask = masks.key_padding_mask; mask.defined())
    scores = masked_fill(scores, reshape(mask, {batches, 1, 1, keys}), kMinusInf);
  return softmax(scores, -1);
}

// The closed-form backward in ops that record, for a backward that is itself differentiated (grad mode on
// during backward): P recomputed as a function of q and k, then dV = P'ᵀ·dO, dP' = dO·vᵀ, dP = M⊙dP' (M the
// dropout's keep mask times its scale, recomputed from the key), dS = P⊙(dP − rowsum(P⊙dP)), dQ = scale·dS·k,
// dK = scale·dSᵀ·q.
void attention_backward_recorded(const Tensor& q, const Tensor& k, const Tensor& v, const RecordedMasks& masks,
                                 double rate, const kernels::DropoutMask& dropout_mask, const Tensor& dout,
                                 InputGrads& g) {
  const Tensor probs = recorded_weights(q, k, masks);  // (B, H, T, S)
  Tensor keep;  // M, a constant
  if (rate > 0.0) {
    const Tensor unit = ones(probs.shape(), probs.dtype());
    keep = empty(probs.shape(), probs.dtype());
    visit_floating(probs.dtype(), kOp, [&]<class T>(std::type_identity<T>) {
      dropout_mask.apply(unit.data_ptr<const T>(), keep.data_ptr<T>(), unit.numel());
    });
  }
  const Tensor dropped = keep.defined() ? probs * keep : probs;  // P'
  if (g.needs(2)) g[2] = matmul(transpose(dropped, -1, -2), dout);
  if (!g.needs(0) && !g.needs(1)) return;
  const Tensor d_dropped = matmul(dout, transpose(v, -1, -2));
  const Tensor d_probs = keep.defined() ? d_dropped * keep : d_dropped;
  const Tensor d_scores = probs * (d_probs - sum(probs * d_probs, {-1}, true));
  if (g.needs(0)) g[0] = matmul(d_scores, k) * masks.scale;
  if (g.needs(1)) g[1] = matmul(transpose(d_scores, -1, -2), q) * masks.scale;
}

}  // namespace

AttentionResult scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const AttentionOptions& options) {
  check_inputs(q, k, v, options);
  const DType dtype = q.dtype();
  const int64_t batches = q.size(0), heads = q.size(1), queries = q.size(2), keys = k.size(2);
  const int64_t value_size = v.size(3);
  const double scale = options.scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const double rate = options.dropout;
  const Tensor qd = gemm::with_dense_matrices(q.detach());
  const Tensor kd = gemm::with_dense_matrices(k.detach());
  const Tensor vd = gemm::with_dense_matrices(v.detach());

  Masks masks;
  masks.causal = options.causal;
  const Shape scores_shape{batches, heads, queries, keys};
  if (const Tensor& mask = options.attn_mask; mask.defined()) {
    const Shape strides = kernels::broadcast_strides(mask, scores_shape);
    masks.attn = mask.raw_data();
    masks.attn_is_bool = mask.dtype() == DType::boolean;
    std::copy(strides.begin(), strides.end(), masks.attn_strides.begin());
  }
  if (const Tensor& mask = options.key_padding_mask; mask.defined()) {
    masks.padding = mask.data_ptr<bool>();
    masks.padding_strides = {mask.strides()[0], mask.strides()[1]};
  }

  // scores = scale · q·kᵀ, then P = softmax(scores + masks) in place: P is all backward keeps.
  Tensor probs = empty(scores_shape, dtype);  // (B, H, T, S)
  head_gemm(dtype, batches, heads, heads_of(qd), transposed(heads_of(kd)), heads_of(probs), scale);
  Tensor dropped = probs;  // P' = P ⊙ keep / (1 - rate), the weights that multiply v
  // The dropout op's mask (ops/dropout_mask.h): the same generator state drops the same elements.
  kernels::DropoutMask dropout_mask;
  visit_floating(dtype, kOp, [&]<class T>(std::type_identity<T>) {
    masked_softmax_rows(probs.data_ptr<T>(), batches, heads, queries, keys, masks);
    if (rate > 0.0) {
      dropout_mask = kernels::DropoutMask::draw(rate, options.generator ? *options.generator : current_generator());
      dropped = empty(scores_shape, dtype);
      dropout_mask.apply(probs.data_ptr<const T>(), dropped.data_ptr<T>(), probs.numel());
    }
  });
  Tensor out = empty({batches, heads, queries, value_size}, dtype);  // (B, H, T, Dv)
  head_gemm(dtype, batches, heads, heads_of(dropped), heads_of(vd), heads_of(out), 1.0);

  // q, k, v and the masks are saved as given too (q, k, v share storage with qd, kd, vd), for a differentiated
  // backward.
  const RecordedMasks recorded_masks{options.attn_mask, options.key_padding_mask, options.causal, scale};
  out = record(out, Op::scaled_dot_product_attention, {q, k, v},
               [qd, kd, vd, probs, scale, rate, dropout_mask, q, k, v, recorded_masks](const Tensor& dout,
                                                                                        InputGrads& g) {
                 if (grad_mode_enabled()) {
                   attention_backward_recorded(q, k, v, recorded_masks, rate, dropout_mask, dout, g);
                   return;
                 }
                 const DType dtype = probs.dtype();
                 const int64_t batches = probs.size(0), heads = probs.size(1);
                 const int64_t queries = probs.size(2), keys = probs.size(3);
                 Tensor dropped = probs;  // P', recomputed from the mask's key instead of saved
                 if (rate > 0.0) {
                   dropped = empty(probs.shape(), dtype);
                   visit_floating(dtype, kOp, [&]<class T>(std::type_identity<T>) {
                     dropout_mask.apply(probs.data_ptr<const T>(), dropped.data_ptr<T>(), probs.numel());
                   });
                 }
                 const Tensor dO = gemm::with_dense_matrices(dout);  // (B, H, T, Dv)
                 if (g.needs(2)) {                    // dV = P'ᵀ · dO
                   g[2] = empty(vd.shape(), dtype);
                   head_gemm(dtype, batches, heads, transposed(heads_of(dropped)), heads_of(dO), heads_of(g[2]), 1.0);
                 }
                 if (!g.needs(0) && !g.needs(1)) return;
                 Tensor dS = empty(probs.shape(), dtype);  // (B, H, T, S): dP' = dO · vᵀ, then dS in place
                 head_gemm(dtype, batches, heads, heads_of(dO), transposed(heads_of(vd)), heads_of(dS), 1.0);
                 visit_floating(dtype, kOp, [&]<class T>(std::type_identity<T>) {
                   softmax_backward_rows(probs.data_ptr<const T>(), dropped.data_ptr<const T>(), dS.data_ptr<T>(),
                                         batches * heads * queries, keys);
                 });
                 if (g.needs(0)) {  // dQ = scale · dS · k
                   g[0] = empty(qd.shape(), dtype);
                   head_gemm(dtype, batches, heads, heads_of(dS), heads_of(kd), heads_of(g[0]), scale);
                 }
                 if (g.needs(1)) {  // dK = scale · dSᵀ · q
                   g[1] = empty(kd.shape(), dtype);
                   head_gemm(dtype, batches, heads, transposed(heads_of(dS)), heads_of(qd), heads_of(g[1]), scale);
                 }
               });
  return AttentionResult{out, options.need_weights ? probs : Tensor()};
}

}  // namespace gradformer

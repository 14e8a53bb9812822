// The rows of the op table. Each row draws its gradient-check inputs and applies its op; shapes are small
// because gradcheck evaluates the op twice per input element.
#include "ops/op_table.h"

#include "ops/ops.h"

#include <array>
#include <utility>
#include <limits>

namespace gradformer {
namespace {

using Inputs = std::vector<Tensor>;

Tensor normal(Generator& gen, Shape shape) { return randn(std::move(shape), gen, DType::f64); }
Tensor positive(Generator& gen, Shape shape) { return uniform(std::move(shape), 0.5, 2.0, gen, DType::f64); }
// Values at least 0.2 away from zero, for ops with a kink or pole there.
Tensor away_from_zero(Generator& gen, Shape shape) {
  Tensor t = uniform(std::move(shape), 0.2, 2.0, gen, DType::f64);
  double* p = t.data_ptr<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (gen.uniform() < 0.5) p[i] = -p[i];
  return t;
}

// Values 0.1 apart in random order: no ties, so max and min have one well-defined argument.
Tensor distinct(Generator& gen, Shape shape) {
  Tensor t = empty(std::move(shape), DType::f64);
  double* p = t.data_ptr<double>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) p[i] = 0.1 * static_cast<double>(i) - 0.05 * static_cast<double>(n);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(p[i], p[static_cast<int64_t>(gen.uniform() * static_cast<double>(i + 1))]);
  return t;
}

// The pieces of split or chunk, each scaled differently so that a gradient sent to the wrong piece shows.
Tensor weighted_concat(const std::vector<Tensor>& pieces, int64_t axis) {
  std::vector<Tensor> scaled;
  for (size_t i = 0; i < pieces.size(); ++i) scaled.push_back(pieces[i] * static_cast<double>(i + 1));
  return concat(scaled, axis);
}

// Pairs of shapes for binary broadcasting ops: equal, broadcast on both sides, a size-1 and a rank-0 operand.
Inputs broadcast_pair(int which, Generator& gen, Tensor (*draw)(Generator&, Shape)) {
  switch (which) {
    case 0: return {normal(gen, {3, 4}), draw(gen, {3, 4})};
    case 1: return {normal(gen, {2, 1, 3}), draw(gen, {4, 1})};
    default: return {normal(gen, {1, 5}), draw(gen, {})};
  }
}

Inputs unary_shapes(int which, Generator& gen, Tensor (*draw)(Generator&, Shape)) {
  switch (which) {
    case 0: return {draw(gen, {7})};
    case 1: return {draw(gen, {2, 1, 3})};
    default: return {draw(gen, {3, 4})};
  }
}

// Integers in [-2, 2] as f64, so that comparisons meet ties.
Tensor small_integers(Generator& gen, Shape shape) {
  Tensor t = empty(std::move(shape), DType::f64);
  double* p = t.data_ptr<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<double>(gen.below(5)) - 2.0;
  return t;
}

Tensor random_mask(Generator& gen, Shape shape) {
  Tensor t = empty(std::move(shape), DType::boolean);
  bool* p = t.data_ptr<bool>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = gen.uniform() < 0.5;
  return t;
}

// i64 indices in [0, bound); drawn from few values, so that repeats (and their accumulation) are common.
Tensor random_indices(Generator& gen, Shape shape, int64_t bound) {
  Tensor t = empty(std::move(shape), DType::i64);
  int64_t* p = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<int64_t>(gen.below(static_cast<uint64_t>(bound)));
  return t;
}

Inputs integer_pair(int which, Generator& gen) {
  switch (which) {
    case 0: return {small_integers(gen, {3, 4}), small_integers(gen, {3, 4})};
    case 1: return {small_integers(gen, {2, 1, 3}), small_integers(gen, {4, 1})};
    default: return {small_integers(gen, {1, 5}), small_integers(gen, {})};
  }
}

Inputs mask_pair(int which, Generator& gen) {
  switch (which) {
    case 0: return {random_mask(gen, {3, 4}), random_mask(gen, {3, 4})};
    case 1: return {random_mask(gen, {2, 1, 3}), random_mask(gen, {4, 1})};
    default: return {random_mask(gen, {1, 5}), random_mask(gen, {})};
  }
}

// Shapes whose axis 1 has several sizes, including 1: for ops over a middle axis or the last two dimensions.
Inputs middle_axis_shapes(int which, Generator& gen) {
  switch (which) {
    case 0: return {normal(gen, {2, 3, 4})};
    case 1: return {normal(gen, {2, 1, 3})};
    default: return {normal(gen, {1, 4, 2})};
  }
}

// x with a weight (and a bias) over its trailing one or two dimensions.
Inputs layer_norm_inputs(int which, Generator& gen, bool with_bias) {
  Inputs inputs;
  switch (which) {
    case 0: inputs = {normal(gen, {3, 4}), normal(gen, {4})}; break;
    case 1: inputs = {normal(gen, {2, 1, 3, 2}), normal(gen, {3, 2})}; break;
    default: inputs = {normal(gen, {1, 5}), normal(gen, {5})}; break;
  }
  if (with_bias) inputs.push_back(normal(gen, inputs[1].shape()));
  return inputs;
}

// Logits (N, C) and i64 class indices (N); with `ignore`, every odd row's target is the default ignore_index.
Inputs class_inputs(int which, Generator& gen, bool ignore) {
  const Shape shape = which == 0 ? Shape{4, 5} : which == 1 ? Shape{1, 3} : Shape{3, 1};
  std::vector<int64_t> targets;
  for (int64_t r = 0; r < shape[0]; ++r)
    targets.push_back(ignore && r % 2 == 1 ? -100 : static_cast<int64_t>(gen.below(static_cast<uint64_t>(shape[1]))));
  return {normal(gen, shape), from_vector(targets, {shape[0]})};
}

Inputs same_shape_pair(int which, Generator& gen) {
  const Shape shape = which == 0 ? Shape{7} : which == 1 ? Shape{2, 1, 3} : Shape{3, 4};
  return {normal(gen, shape), normal(gen, shape)};
}

// Attention inputs q [B, H, T, D], k [B, H, S, D], v [B, H, S, Dv]; with `split_heads`, each is the transposed
// view of a [B, T, H, D] projection, whose (B, H) strides do not nest into one batch stride.
Inputs attention_inputs(Generator& gen, int64_t b, int64_t h, int64_t t, int64_t s, int64_t d, int64_t dv,
                        bool split_heads) {
  auto draw = [&](int64_t rows, int64_t cols) {
    return split_heads ? transpose(normal(gen, {b, rows, h, cols}), 1, 2) : normal(gen, {b, h, rows, cols});
  };
  Tensor q = draw(t, d), k = draw(s, d), v = draw(s, dv);
  return {q, k, v};
}

// A bool mask drawn with P(true) = 1/2, then every last-dimension row given at least one `keep` entry.
Tensor bool_mask(Generator& gen, Shape shape, bool keep) {
  Tensor mask = empty(std::move(shape), DType::boolean);
  bool* p = mask.data_ptr<bool>();
  const int64_t cols = mask.shape().back();
  for (int64_t i = 0; i < mask.numel(); ++i) p[i] = gen.uniform() < 0.5;
  for (int64_t row = 0; row < mask.numel() / cols; ++row) p[row * cols + gen.below(static_cast<uint64_t>(cols))] = keep;
  return mask;
}

// The float form of a bool "take part" mask: -inf where masked out, a small bias elsewhere.
Tensor additive_mask(const Tensor& take_part, DType dtype) {
  const std::vector<bool> allowed = take_part.to_vector<bool>();
  std::vector<double> values(allowed.size());
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = allowed[i] ? 0.1 * static_cast<double>(i % 7) - 0.3 : -std::numeric_limits<double>::infinity();
  return from_vector(values, take_part.shape()).to(dtype);
}

Tensor attention(const Inputs& x, AttentionOptions options) {
  return scaled_dot_product_attention(x[0], x[1], x[2], options).output;
}

constexpr std::array<OpRow, static_cast<size_t>(Op::count)> kRows{{
    // elementwise.cpp: arithmetic
    {Op::add, "add", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return add(x[0], x[1]); }},
    {Op::sub, "sub", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return sub(x[0], x[1]); }},
    {Op::mul, "mul", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return mul(x[0], x[1]); }},
    {Op::div, "div", [](int w, Generator& g) { return broadcast_pair(w, g, away_from_zero); },
     [](const Inputs& x) { return div(x[0], x[1]); }},
    {Op::neg, "neg", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return neg(x[0]); }},
    {Op::exp, "exp", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return exp(x[0]); }},
    {Op::log, "log", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return log(x[0]); }},
    {Op::add_scalar, "add_scalar", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return x[0] + 1.5; }},
    {Op::mul_scalar, "mul_scalar", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return x[0] * -2.5; }},
    {Op::rsub_scalar, "rsub_scalar", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return 3.0 - x[0]; }},
    {Op::rdiv_scalar, "rdiv_scalar", [](int w, Generator& g) { return unary_shapes(w, g, away_from_zero); },
     [](const Inputs& x) { return 2.0 / x[0]; }},
    // elementwise.cpp: unary math, activations, maximum/minimum, comparisons and logical ops
    {Op::abs, "abs", [](int w, Generator& g) { return unary_shapes(w, g, away_from_zero); },
     [](const Inputs& x) { return abs(x[0]); }},
    {Op::sqrt, "sqrt", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return sqrt(x[0]); }},
    {Op::rsqrt, "rsqrt", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return rsqrt(x[0]); }},
    {Op::pow, "pow", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return pow(x[0], 3.0); }},
    {Op::pow_negative, "pow_negative", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return pow(x[0], -1.5); }},
    {Op::tanh, "tanh", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return tanh(x[0]); }},
    {Op::sigmoid, "sigmoid", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return sigmoid(x[0]); }},
    {Op::relu, "relu", [](int w, Generator& g) { return unary_shapes(w, g, away_from_zero); },
     [](const Inputs& x) { return relu(x[0]); }},
    {Op::gelu, "gelu", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return gelu(x[0]); }},
    {Op::gelu_tanh, "gelu_tanh", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return gelu(x[0], GeluApproximation::tanh); }},
    {Op::softplus, "softplus", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return softplus(x[0]); }},
    {Op::maximum, "maximum", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return maximum(x[0], x[1]); }},
    {Op::minimum, "minimum", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return minimum(x[0], x[1]); }},
    {Op::eq, "eq", integer_pair, [](const Inputs& x) { return eq(x[0], x[1]); }, 3, false},
    {Op::ne, "ne", integer_pair, [](const Inputs& x) { return ne(x[0], x[1]); }, 3, false},
    {Op::lt, "lt", integer_pair, [](const Inputs& x) { return lt(x[0], x[1]); }, 3, false},
    {Op::le, "le", integer_pair, [](const Inputs& x) { return le(x[0], x[1]); }, 3, false},
    {Op::gt, "gt", integer_pair, [](const Inputs& x) { return gt(x[0], x[1]); }, 3, false},
    {Op::ge, "ge", integer_pair, [](const Inputs& x) { return ge(x[0], x[1]); }, 3, false},
    {Op::lt_scalar, "lt_scalar", [](int w, Generator& g) { return unary_shapes(w, g, small_integers); },
     [](const Inputs& x) { return lt(x[0], 0.5); }, 3, false},
    {Op::eq_scalar, "eq_scalar", [](int w, Generator& g) { return unary_shapes(w, g, small_integers); },
     [](const Inputs& x) { return eq(x[0], 1.0); }, 3, false},
    {Op::logical_and, "logical_and", mask_pair, [](const Inputs& x) { return logical_and(x[0], x[1]); }, 3, false},
    {Op::logical_or, "logical_or", mask_pair, [](const Inputs& x) { return logical_or(x[0], x[1]); }, 3, false},
    {Op::logical_not, "logical_not", [](int w, Generator& g) { return unary_shapes(w, g, random_mask); },
     [](const Inputs& x) { return logical_not(x[0]); }, 3, false},

    // selection.cpp
    {Op::where, "where",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{random_mask(g, {3, 4}), normal(g, {3, 4}), normal(g, {3, 4})};
         case 1: return Inputs{random_mask(g, {4, 1}), normal(g, {2, 1, 3}), normal(g, {3})};
         default: return Inputs{random_mask(g, {1, 5}), normal(g, {}), normal(g, {2, 1})};
       }
     },
     [](const Inputs& x) { return where(x[0], x[1], x[2]); }},
    {Op::masked_fill, "masked_fill",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), random_mask(g, {3, 4})};
         case 1: return Inputs{normal(g, {2, 3, 4}), random_mask(g, {3, 1})};
         default: return Inputs{normal(g, {5}), random_mask(g, {})};
       }
     },
     [](const Inputs& x) { return masked_fill(x[0], x[1], -1.5); }},
    {Op::index_select, "index_select",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), random_indices(g, {5}, 4)};
         case 1: return Inputs{normal(g, {2, 5, 3}), random_indices(g, {3}, 5)};
         default: return Inputs{normal(g, {2, 1, 2}), random_indices(g, {4}, 1)};
       }
     },
     [](const Inputs& x) { return index_select(x[0], 1, x[1]); }},
    {Op::gather, "gather",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), random_indices(g, {3, 5}, 4)};
         case 1: return Inputs{normal(g, {2, 4, 3}), random_indices(g, {1, 3, 2}, 4)};
         default: return Inputs{normal(g, {4, 1}), random_indices(g, {2, 3}, 1)};
       }
     },
     [](const Inputs& x) { return gather(x[0], 1, x[1]); }},
    {Op::embedding, "embedding",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {6, 3}), random_indices(g, {2, 4}, 6)};
         case 1: return Inputs{normal(g, {5, 1}), random_indices(g, {7}, 5)};
         default: return Inputs{normal(g, {3, 4}), random_indices(g, {}, 3)};
       }
     },
     [](const Inputs& x) { return embedding(x[0], x[1]); }},
    {Op::embedding_padding, "embedding_padding",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {6, 3}), random_indices(g, {2, 4}, 3)};
         case 1: return Inputs{normal(g, {2, 1}), random_indices(g, {7}, 2)};
         default: return Inputs{normal(g, {3, 4}), random_indices(g, {1, 6}, 3)};
       }
     },
     // The padding row is read but deliberately gets no gradient, so the checked function also hides the
     // positions that read it (as a model's padding mask does): then its true gradient is zero as well.
     [](const Inputs& x) {
       Shape mask_shape = x[1].shape();
       mask_shape.push_back(1);
       return masked_fill(embedding(x[0], x[1], 1), reshape(eq(x[1], 1.0), mask_shape), 0.0);
     }},

    // reduce.cpp: sums
    {Op::sum_all, "sum_all", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return sum(x[0]); }},
    {Op::sum_axes, "sum_axes", [](int, Generator& g) { return Inputs{normal(g, {2, 3, 4})}; },
     [](const Inputs& x) { return sum(x[0], {0, -1}); }, 1},
    {Op::sum_keepdim, "sum_keepdim", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return sum(x[0], {-1}, true); }},
    {Op::mean, "mean", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return mean(x[0], {0}); }},
    // reduce.cpp: max/min, var, logsumexp, argmax
    {Op::max_all, "max_all", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return max(x[0]); }},
    {Op::max_axes, "max_axes",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{distinct(g, {2, 3, 4})};
         case 1: return Inputs{distinct(g, {1, 3, 2})};
         default: return Inputs{distinct(g, {3, 5})};
       }
     },
     [](const Inputs& x) { return max(x[0], {0, -1}); }},
    {Op::max_keepdim, "max_keepdim", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return max(x[0], {-1}, true); }},
    {Op::min, "min", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return min(x[0], {0}); }},
    {Op::var_unbiased, "var_unbiased", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return var(x[0], {-1}); }},
    {Op::var_biased, "var_biased",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4})};
         case 1: return Inputs{normal(g, {1, 3, 2})};
         default: return Inputs{normal(g, {3, 1})};
       }
     },
     [](const Inputs& x) { return var(x[0], {0, -1}, 0, true); }},
    {Op::logsumexp, "logsumexp", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return logsumexp(x[0], {-1}); }},
    {Op::logsumexp_keepdim, "logsumexp_keepdim", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return logsumexp(x[0], {0}, true); }},
    {Op::argmax, "argmax", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return argmax(x[0], -1); }, 3, false},
    {Op::argmin, "argmin", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return argmin(x[0], 0, true); }, 3, false},

    // shape.cpp: reshape and transpose
    {Op::reshape, "reshape", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return reshape(x[0], {-1, 1}); }},
    {Op::view, "view", [](int, Generator& g) { return Inputs{normal(g, {2, 3, 4})}; },
     [](const Inputs& x) { return view(x[0].contiguous(), {6, 4}); }, 1},
    {Op::transpose, "transpose", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return transpose(x[0], 0, -1); }},
    // shape.cpp: permute, squeeze, unsqueeze, expand, slice, concat, stack, split, chunk
    {Op::permute, "permute",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4})};
         case 1: return Inputs{normal(g, {1, 3, 2})};
         default: return Inputs{normal(g, {4, 1, 1})};
       }
     },
     [](const Inputs& x) { return permute(x[0], {2, 0, 1}); }},
    {Op::squeeze_all, "squeeze_all",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 1, 3})};
         case 1: return Inputs{normal(g, {1, 4})};
         default: return Inputs{normal(g, {3})};
       }
     },
     [](const Inputs& x) { return squeeze(x[0]); }},
    {Op::squeeze_axis, "squeeze_axis",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 1, 3})};
         case 1: return Inputs{normal(g, {3, 1})};
         default: return Inputs{normal(g, {2, 3})};
       }
     },
     [](const Inputs& x) { return squeeze(x[0], 1); }},
    {Op::unsqueeze, "unsqueeze", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return unsqueeze(x[0], 1); }},
    {Op::expand, "expand",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 1})};
         case 1: return Inputs{normal(g, {1, 4})};
         default: return Inputs{normal(g, {4})};
       }
     },
     [](const Inputs& x) { return expand(x[0], {2, 3, -1}); }},
    {Op::slice, "slice", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return slice(x[0], -1, 1, -1); }},
    {Op::slice_step, "slice_step", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return slice(x[0], 0, -5, 100, 2); }},
    {Op::narrow, "narrow", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return narrow(x[0], -1, 1, 2); }},
    {Op::concat, "concat",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3}), normal(g, {2, 1}), normal(g, {2, 4})};
         case 1: return Inputs{normal(g, {1, 2}), normal(g, {1, 3}), normal(g, {1, 1})};
         default: return Inputs{normal(g, {2, 1, 3}), normal(g, {2, 1, 1}), normal(g, {2, 1, 2})};
       }
     },
     [](const Inputs& x) { return concat(x, -1); }},
    {Op::stack, "stack",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3}), normal(g, {3}), normal(g, {3})};
         case 1: return Inputs{normal(g, {2, 1, 3}), normal(g, {2, 1, 3})};
         default: return Inputs{normal(g, {1, 4}), normal(g, {1, 4}), normal(g, {1, 4})};
       }
     },
     [](const Inputs& x) { return stack(x, 1); }},
    {Op::split, "split", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return weighted_concat(split(x[0], 2, -1), -1); }},
    {Op::chunk, "chunk", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return weighted_concat(chunk(x[0], 3, 0), 0); }},

    // matmul.cpp: matmul
    {Op::matmul_2d, "matmul_2d",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), normal(g, {4, 5})};
         case 1: return Inputs{normal(g, {1, 4}), normal(g, {4, 1})};
         default: return Inputs{transpose(normal(g, {4, 3}), 0, 1), transpose(normal(g, {2, 4}), 0, 1)};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    {Op::matmul_vector, "matmul_vector",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {4}), normal(g, {4})};
         case 1: return Inputs{normal(g, {4}), normal(g, {2, 4, 3})};
         default: return Inputs{normal(g, {2, 3, 4}), normal(g, {4})};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    {Op::matmul_batched, "matmul_batched",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4}), normal(g, {2, 4, 5})};
         case 1: return Inputs{normal(g, {2, 2, 1, 3}), normal(g, {2, 2, 3, 2})};
         default: return Inputs{normal(g, {2, 3, 4}), normal(g, {4, 2})};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    {Op::matmul_broadcast, "matmul_broadcast",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 1, 3, 4}), normal(g, {3, 4, 2})};
         case 1: return Inputs{normal(g, {3, 4}), normal(g, {2, 4, 2})};
         default: return Inputs{normal(g, {1, 2, 3}), normal(g, {2, 2, 3, 1})};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    // matmul.cpp: linear, bmm; attention.cpp
    {Op::linear, "linear",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), transpose(normal(g, {4, 5}), 0, 1), normal(g, {5})};
         case 1: return Inputs{normal(g, {2, 3, 4}), normal(g, {2, 4}), normal(g, {2})};
         default: return Inputs{normal(g, {4}), normal(g, {1, 4}), normal(g, {1})};
       }
     },
     [](const Inputs& x) { return linear(x[0], x[1], x[2]); }},
    {Op::linear_no_bias, "linear_no_bias",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), normal(g, {5, 4})};
         case 1: return Inputs{transpose(normal(g, {4, 3, 2}), 0, 2), normal(g, {3, 4})};
         default: return Inputs{normal(g, {1, 1, 3}), normal(g, {2, 3})};
       }
     },
     [](const Inputs& x) { return linear(x[0], x[1]); }},
    {Op::bmm, "bmm",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4}), normal(g, {2, 4, 5})};
         case 1: return Inputs{normal(g, {1, 1, 3}), normal(g, {1, 3, 1})};
         default: return Inputs{transpose(normal(g, {3, 4, 2}), 1, 2), normal(g, {3, 4, 2})};
       }
     },
     [](const Inputs& x) { return bmm(x[0], x[1]); }},
    {Op::sdpa, "sdpa",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return attention_inputs(g, 1, 2, 3, 5, 4, 3, false);
         case 1: return attention_inputs(g, 2, 1, 1, 4, 3, 2, false);
         default: return attention_inputs(g, 2, 3, 4, 3, 2, 2, true);
       }
     },
     [](const Inputs& x) { return attention(x, {}); }},
    {Op::sdpa_causal, "sdpa_causal",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return attention_inputs(g, 1, 2, 4, 4, 3, 2, false);
         case 1: return attention_inputs(g, 2, 2, 3, 5, 2, 3, true);
         default: return attention_inputs(g, 2, 1, 5, 3, 2, 1, false);
       }
     },
     [](const Inputs& x) { return attention(x, {.causal = true}); }},
    {Op::sdpa_key_padding_mask, "sdpa_key_padding_mask",
     [](int w, Generator& g) {
       switch (w) {
         case 0: {
           Inputs x = attention_inputs(g, 2, 2, 3, 4, 3, 2, false);
           x.push_back(bool_mask(g, {2, 4}, false));
           return x;
         }
         case 1: {
           Inputs x = attention_inputs(g, 3, 1, 1, 5, 2, 2, true);
           x.push_back(bool_mask(g, {3, 5}, false));
           return x;
         }
         default: {  // the dedicated fully masked case: the second sequence is all padding
           Inputs x = attention_inputs(g, 2, 2, 3, 3, 2, 2, false);
           x.push_back(from_vector<bool>({false, false, true, true, true, true}, {2, 3}));
           return x;
         }
       }
     },
     [](const Inputs& x) { return attention(x, {.key_padding_mask = x[3]}); }},
    {Op::sdpa_bool_mask, "sdpa_bool_mask",
     [](int w, Generator& g) {
       Inputs x = w == 1 ? attention_inputs(g, 2, 2, 3, 4, 2, 3, true) : attention_inputs(g, 2, 2, 3, 4, 2, 3, false);
       x.push_back(bool_mask(g, w == 0 ? Shape{3, 4} : w == 1 ? Shape{2, 1, 3, 4} : Shape{1, 2, 3, 4}, true));
       return x;
     },
     [](const Inputs& x) { return attention(x, {.attn_mask = x[3]}); }},
    {Op::sdpa_float_mask, "sdpa_float_mask",
     [](int w, Generator& g) {
       Inputs x = w == 1 ? attention_inputs(g, 2, 2, 3, 4, 2, 3, true) : attention_inputs(g, 2, 2, 3, 4, 2, 3, false);
       x.push_back(bool_mask(g, w == 0 ? Shape{3, 4} : w == 1 ? Shape{2, 1, 3, 4} : Shape{1, 2, 3, 4}, true));
       return x;
     },
     [](const Inputs& x) { return attention(x, {.attn_mask = additive_mask(x[3], x[0].dtype())}); }},
    {Op::sdpa_dropout, "sdpa_dropout",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return attention_inputs(g, 1, 2, 3, 4, 3, 2, false);
         case 1: return attention_inputs(g, 2, 2, 3, 3, 2, 2, true);
         default: return attention_inputs(g, 2, 1, 1, 5, 2, 3, false);
       }
     },
     [](const Inputs& x) {
       Generator gen(7);  // a fixed seed: the same mask on every call, as gradcheck needs
       return attention(x, {.causal = true, .dropout = 0.3, .generator = &gen});
     }},

    // normalization.cpp: softmax, log_softmax, layer_norm, dropout; loss.cpp
    {Op::softmax_last, "softmax_last", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return softmax(x[0], -1); }},
    {Op::softmax_middle, "softmax_middle", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return softmax(x[0], 1); }},
    {Op::log_softmax, "log_softmax", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return log_softmax(x[0], -1); }},
    {Op::log_softmax_middle, "log_softmax_middle", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return log_softmax(x[0], 1); }},
    // normalized_shape is the shape of the weight: one or two trailing dimensions.
    {Op::layer_norm_affine, "layer_norm_affine", [](int w, Generator& g) { return layer_norm_inputs(w, g, true); },
     [](const Inputs& x) { return layer_norm(x[0], x[1].shape(), x[1], x[2]); }},
    {Op::layer_norm_weight, "layer_norm_weight", [](int w, Generator& g) { return layer_norm_inputs(w, g, false); },
     [](const Inputs& x) { return layer_norm(x[0], x[1].shape(), x[1]); }},
    {Op::layer_norm_plain, "layer_norm_plain", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return layer_norm(x[0], {x[0].size(-1)}); }},
    {Op::layer_norm_plain_2d, "layer_norm_plain_2d", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return layer_norm(x[0], {x[0].size(-2), x[0].size(-1)}); }},
    // A generator seeded inside apply: the same mask on every call, as gradcheck requires.
    {Op::dropout_train, "dropout_train", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) {
       Generator gen(42);
       return dropout(x[0], 0.3, true, gen);
     }},
    {Op::cross_entropy, "cross_entropy", [](int w, Generator& g) { return class_inputs(w, g, false); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1]); }},
    {Op::cross_entropy_ignore, "cross_entropy_ignore", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.ignore_index = -100}); }},
    {Op::cross_entropy_smoothing, "cross_entropy_smoothing",
     [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.label_smoothing = 0.2}); }},
    {Op::cross_entropy_sum, "cross_entropy_sum", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.reduction = Reduction::sum}); }},
    {Op::cross_entropy_none, "cross_entropy_none", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.label_smoothing = 0.1, .reduction = Reduction::none}); }},
    {Op::nll_loss, "nll_loss", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return nll_loss(x[0], x[1]); }},
    {Op::mse_loss, "mse_loss", [](int w, Generator& g) { return same_shape_pair(w, g); },
     [](const Inputs& x) { return mse_loss(x[0], x[1]); }},
    {Op::mse_loss_none, "mse_loss_none", [](int w, Generator& g) { return same_shape_pair(w, g); },
     [](const Inputs& x) { return mse_loss(x[0], x[1], Reduction::none); }},

}};

constexpr bool rows_match_ops() {
  for (size_t i = 0; i < kRows.size(); ++i)
    if (static_cast<size_t>(kRows[i].op) != i || kRows[i].name.empty() || kRows[i].make_inputs == nullptr ||
        kRows[i].apply == nullptr)
      return false;
  return true;
}
static_assert(rows_match_ops(), "every Op needs its row in kRows, in the order of the enum");

}  // namespace

std::span<const OpRow> op_table() { return kRows; }

const OpRow* find_op(std::string_view name) {
  for (const OpRow& row : kRows)
    if (row.name == name) return &row;
  return nullptr;
}

std::vector<OpCheck> gradcheck_row(const OpRow& row, uint64_t seed) {
  std::vector<OpCheck> checks;
  if (!row.differentiable) return checks;
  for (int which = 0; which < row.cases; ++which) {
    for (bool strided : {false, true}) {
      OpCheck check{which, strided, {}, {}};
      Generator gen(seed * 1000 + static_cast<uint64_t>(which));
      check.inputs = row.make_inputs(which, gen);
      if (strided)
        for (Tensor& t : check.inputs) t = noncontiguous_copy(t);
      GradcheckOptions options;
      options.atol = row.atol;
      options.rtol = row.rtol;
      options.seed = seed;
      try {
        check.report = gradcheck(row.apply, check.inputs, options);
      } catch (const Error& e) {
        check.report.passed = false;
        check.report.failure = e.what();
      }
      checks.push_back(std::move(check));
    }
  }
  return checks;
}

}  // namespace gradformer

// The rows of the op table. Each row draws its gradient-check inputs and applies its op; shapes are small
// because gradcheck evaluates the op twice per input element.
#include "ops/op_table.h"

#include "ops/ops.h"

#include <fmt/format.h>

#include <array>
#include <utility>
#include <limits>

namespace gradformer {
namespace {

using Inputs = std::vector<Tensor>;

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

constexpr OpRow kRows[] = {
    // elementwise.cpp: arithmetic
    {Op::add, "", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return add(x[0], x[1]); }},
    {Op::sub, "", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return sub(x[0], x[1]); }},
    {Op::mul, "", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return mul(x[0], x[1]); }},
    {Op::div, "", [](int w, Generator& g) { return broadcast_pair(w, g, away_from_zero); },
     [](const Inputs& x) { return div(x[0], x[1]); }},
    {Op::neg, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return neg(x[0]); }},
    {Op::exp, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return exp(x[0]); }},
    {Op::log, "", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return log(x[0]); }},
    {Op::add, "scalar", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return x[0] + 1.5; }},
    {Op::mul, "scalar", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return x[0] * -2.5; }},
    {Op::rsub, "scalar", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return 3.0 - x[0]; }},
    {Op::rdiv, "scalar", [](int w, Generator& g) { return unary_shapes(w, g, away_from_zero); },
     [](const Inputs& x) { return 2.0 / x[0]; }},
    // elementwise.cpp: unary math, activations, maximum/minimum, comparisons and logical ops
    {Op::abs, "", [](int w, Generator& g) { return unary_shapes(w, g, away_from_zero); },
     [](const Inputs& x) { return abs(x[0]); }},
    {Op::sqrt, "", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return sqrt(x[0]); }},
    {Op::rsqrt, "", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return rsqrt(x[0]); }},
    {Op::pow, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return pow(x[0], 3.0); }},
    {Op::pow, "negative", [](int w, Generator& g) { return unary_shapes(w, g, positive); },
     [](const Inputs& x) { return pow(x[0], -1.5); }},
    {Op::tanh, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return tanh(x[0]); }},
    {Op::sigmoid, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return sigmoid(x[0]); }},
    {Op::relu, "", [](int w, Generator& g) { return unary_shapes(w, g, away_from_zero); },
     [](const Inputs& x) { return relu(x[0]); }},
    {Op::gelu, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return gelu(x[0]); }},
    {Op::gelu, "tanh", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return gelu(x[0], GeluApproximation::tanh); }},
    {Op::softplus, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return softplus(x[0]); }},
    {Op::maximum, "", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return maximum(x[0], x[1]); }},
    {Op::minimum, "", [](int w, Generator& g) { return broadcast_pair(w, g, normal); },
     [](const Inputs& x) { return minimum(x[0], x[1]); }},
    {Op::eq, "", integer_pair, [](const Inputs& x) { return eq(x[0], x[1]); }, 3, false},
    {Op::ne, "", integer_pair, [](const Inputs& x) { return ne(x[0], x[1]); }, 3, false},
    {Op::lt, "", integer_pair, [](const Inputs& x) { return lt(x[0], x[1]); }, 3, false},
    {Op::le, "", integer_pair, [](const Inputs& x) { return le(x[0], x[1]); }, 3, false},
    {Op::gt, "", integer_pair, [](const Inputs& x) { return gt(x[0], x[1]); }, 3, false},
    {Op::ge, "", integer_pair, [](const Inputs& x) { return ge(x[0], x[1]); }, 3, false},
    {Op::lt, "scalar", [](int w, Generator& g) { return unary_shapes(w, g, small_integers); },
     [](const Inputs& x) { return lt(x[0], 0.5); }, 3, false},
    {Op::eq, "scalar", [](int w, Generator& g) { return unary_shapes(w, g, small_integers); },
     [](const Inputs& x) { return eq(x[0], 1.0); }, 3, false},
    {Op::logical_and, "", mask_pair, [](const Inputs& x) { return logical_and(x[0], x[1]); }, 3, false},
    {Op::logical_or, "", mask_pair, [](const Inputs& x) { return logical_or(x[0], x[1]); }, 3, false},
    {Op::logical_not, "", [](int w, Generator& g) { return unary_shapes(w, g, random_mask); },
     [](const Inputs& x) { return logical_not(x[0]); }, 3, false},

    // selection.cpp
    {Op::where, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{random_mask(g, {3, 4}), normal(g, {3, 4}), normal(g, {3, 4})};
         case 1: return Inputs{random_mask(g, {4, 1}), normal(g, {2, 1, 3}), normal(g, {3})};
         default: return Inputs{random_mask(g, {1, 5}), normal(g, {}), normal(g, {2, 1})};
       }
     },
     [](const Inputs& x) { return where(x[0], x[1], x[2]); }},
    {Op::masked_fill, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), random_mask(g, {3, 4})};
         case 1: return Inputs{normal(g, {2, 3, 4}), random_mask(g, {3, 1})};
         default: return Inputs{normal(g, {5}), random_mask(g, {})};
       }
     },
     [](const Inputs& x) { return masked_fill(x[0], x[1], -1.5); }},
    {Op::index_select, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), random_indices(g, {5}, 4)};
         case 1: return Inputs{normal(g, {2, 5, 3}), random_indices(g, {3}, 5)};
         default: return Inputs{normal(g, {2, 1, 2}), random_indices(g, {4}, 1)};
       }
     },
     [](const Inputs& x) { return index_select(x[0], 1, x[1]); }},
    {Op::gather, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), random_indices(g, {3, 5}, 4)};
         case 1: return Inputs{normal(g, {2, 4, 3}), random_indices(g, {1, 3, 2}, 4)};
         default: return Inputs{normal(g, {4, 1}), random_indices(g, {2, 3}, 1)};
       }
     },
     [](const Inputs& x) { return gather(x[0], 1, x[1]); }},
    {Op::embedding, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {6, 3}), random_indices(g, {2, 4}, 6)};
         case 1: return Inputs{normal(g, {5, 1}), random_indices(g, {7}, 5)};
         default: return Inputs{normal(g, {3, 4}), random_indices(g, {}, 3)};
       }
     },
     [](const Inputs& x) { return embedding(x[0], x[1]); }},
    {Op::embedding, "padding",
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
    {Op::sum, "all", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return sum(x[0]); }},
    {Op::sum, "axes", [](int, Generator& g) { return Inputs{normal(g, {2, 3, 4})}; },
     [](const Inputs& x) { return sum(x[0], {0, -1}); }, 1},
    {Op::sum, "keepdim", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return sum(x[0], {-1}, true); }},
    {Op::mean, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return mean(x[0], {0}); }},
    // reduce.cpp: max/min, var, logsumexp, argmax
    {Op::max, "all", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return max(x[0]); }},
    {Op::max, "axes",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{distinct(g, {2, 3, 4})};
         case 1: return Inputs{distinct(g, {1, 3, 2})};
         default: return Inputs{distinct(g, {3, 5})};
       }
     },
     [](const Inputs& x) { return max(x[0], {0, -1}); }},
    {Op::max, "keepdim", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return max(x[0], {-1}, true); }},
    {Op::min, "", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return min(x[0], {0}); }},
    {Op::var, "unbiased", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return var(x[0], {-1}); }},
    {Op::var, "biased",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4})};
         case 1: return Inputs{normal(g, {1, 3, 2})};
         default: return Inputs{normal(g, {3, 1})};
       }
     },
     [](const Inputs& x) { return var(x[0], {0, -1}, 0, true); }},
    {Op::logsumexp, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return logsumexp(x[0], {-1}); }},
    {Op::logsumexp, "keepdim", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return logsumexp(x[0], {0}, true); }},
    {Op::argmax, "", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return argmax(x[0], -1); }, 3, false},
    {Op::argmin, "", [](int w, Generator& g) { return unary_shapes(w, g, distinct); },
     [](const Inputs& x) { return argmin(x[0], 0, true); }, 3, false},

    // shape.cpp: reshape and transpose
    {Op::reshape, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return reshape(x[0], {-1, 1}); }},
    {Op::view, "", [](int, Generator& g) { return Inputs{normal(g, {2, 3, 4})}; },
     [](const Inputs& x) { return view(x[0].contiguous(), {6, 4}); }, 1},
    {Op::transpose, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return transpose(x[0], 0, -1); }},
    // shape.cpp: permute, squeeze, unsqueeze, expand, slice, concat, stack, split, chunk
    {Op::permute, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4})};
         case 1: return Inputs{normal(g, {1, 3, 2})};
         default: return Inputs{normal(g, {4, 1, 1})};
       }
     },
     [](const Inputs& x) { return permute(x[0], {2, 0, 1}); }},
    {Op::squeeze, "all",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 1, 3})};
         case 1: return Inputs{normal(g, {1, 4})};
         default: return Inputs{normal(g, {3})};
       }
     },
     [](const Inputs& x) { return squeeze(x[0]); }},
    {Op::squeeze, "axis",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 1, 3})};
         case 1: return Inputs{normal(g, {3, 1})};
         default: return Inputs{normal(g, {2, 3})};
       }
     },
     [](const Inputs& x) { return squeeze(x[0], 1); }},
    {Op::unsqueeze, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return unsqueeze(x[0], 1); }},
    {Op::expand, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 1})};
         case 1: return Inputs{normal(g, {1, 4})};
         default: return Inputs{normal(g, {4})};
       }
     },
     [](const Inputs& x) { return expand(x[0], {2, 3, -1}); }},
    {Op::slice, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return slice(x[0], -1, 1, -1); }},
    {Op::slice, "step", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return slice(x[0], 0, -5, 100, 2); }},
    {Op::narrow, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return narrow(x[0], -1, 1, 2); }},
    {Op::concat, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3}), normal(g, {2, 1}), normal(g, {2, 4})};
         case 1: return Inputs{normal(g, {1, 2}), normal(g, {1, 3}), normal(g, {1, 1})};
         default: return Inputs{normal(g, {2, 1, 3}), normal(g, {2, 1, 1}), normal(g, {2, 1, 2})};
       }
     },
     [](const Inputs& x) { return concat(x, -1); }},
    {Op::stack, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3}), normal(g, {3}), normal(g, {3})};
         case 1: return Inputs{normal(g, {2, 1, 3}), normal(g, {2, 1, 3})};
         default: return Inputs{normal(g, {1, 4}), normal(g, {1, 4}), normal(g, {1, 4})};
       }
     },
     [](const Inputs& x) { return stack(x, 1); }},
    {Op::split, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return weighted_concat(split(x[0], 2, -1), -1); }},
    {Op::chunk, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return weighted_concat(chunk(x[0], 3, 0), 0); }},

    // autograd/tensor.cpp: Tensor::contiguous, clone, to
    {Op::contiguous, "", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return transpose(x[0], 0, 2).contiguous(); }},
    {Op::clone, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return x[0].clone(); }},
    // f64 -> f32 and back in backward. A step of 1e-6 would drown in f32 rounding (half an ulp of 1 is 6e-8,
    // a 3% error on a 2e-6 difference); the function is linear, so a large step costs no accuracy.
    {Op::to, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return x[0].to(DType::f32); }, 3, true, 1e-5, 1e-3, 1e-2},

    // matmul.cpp: matmul
    {Op::matmul, "2d",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), normal(g, {4, 5})};
         case 1: return Inputs{normal(g, {1, 4}), normal(g, {4, 1})};
         default: return Inputs{transpose(normal(g, {4, 3}), 0, 1), transpose(normal(g, {2, 4}), 0, 1)};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    {Op::matmul, "vector",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {4}), normal(g, {4})};
         case 1: return Inputs{normal(g, {4}), normal(g, {2, 4, 3})};
         default: return Inputs{normal(g, {2, 3, 4}), normal(g, {4})};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    {Op::matmul, "batched",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4}), normal(g, {2, 4, 5})};
         case 1: return Inputs{normal(g, {2, 2, 1, 3}), normal(g, {2, 2, 3, 2})};
         default: return Inputs{normal(g, {2, 3, 4}), normal(g, {4, 2})};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    {Op::matmul, "broadcast",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 1, 3, 4}), normal(g, {3, 4, 2})};
         case 1: return Inputs{normal(g, {3, 4}), normal(g, {2, 4, 2})};
         default: return Inputs{normal(g, {1, 2, 3}), normal(g, {2, 2, 3, 1})};
       }
     },
     [](const Inputs& x) { return matmul(x[0], x[1]); }},
    // matmul.cpp: linear, bmm; attention.cpp
    {Op::linear, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), transpose(normal(g, {4, 5}), 0, 1), normal(g, {5})};
         case 1: return Inputs{normal(g, {2, 3, 4}), normal(g, {2, 4}), normal(g, {2})};
         default: return Inputs{normal(g, {4}), normal(g, {1, 4}), normal(g, {1})};
       }
     },
     [](const Inputs& x) { return linear(x[0], x[1], x[2]); }},
    {Op::linear, "no_bias",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {3, 4}), normal(g, {5, 4})};
         case 1: return Inputs{transpose(normal(g, {4, 3, 2}), 0, 2), normal(g, {3, 4})};
         default: return Inputs{normal(g, {1, 1, 3}), normal(g, {2, 3})};
       }
     },
     [](const Inputs& x) { return linear(x[0], x[1]); }},
    {Op::bmm, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return Inputs{normal(g, {2, 3, 4}), normal(g, {2, 4, 5})};
         case 1: return Inputs{normal(g, {1, 1, 3}), normal(g, {1, 3, 1})};
         default: return Inputs{transpose(normal(g, {3, 4, 2}), 1, 2), normal(g, {3, 4, 2})};
       }
     },
     [](const Inputs& x) { return bmm(x[0], x[1]); }},
    {Op::scaled_dot_product_attention, "",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return attention_inputs(g, 1, 2, 3, 5, 4, 3, false);
         case 1: return attention_inputs(g, 2, 1, 1, 4, 3, 2, false);
         default: return attention_inputs(g, 2, 3, 4, 3, 2, 2, true);
       }
     },
     [](const Inputs& x) { return attention(x, {}); }},
    {Op::scaled_dot_product_attention, "causal",
     [](int w, Generator& g) {
       switch (w) {
         case 0: return attention_inputs(g, 1, 2, 4, 4, 3, 2, false);
         case 1: return attention_inputs(g, 2, 2, 3, 5, 2, 3, true);
         default: return attention_inputs(g, 2, 1, 5, 3, 2, 1, false);
       }
     },
     [](const Inputs& x) { return attention(x, {.causal = true}); }},
    {Op::scaled_dot_product_attention, "key_padding_mask",
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
    {Op::scaled_dot_product_attention, "bool_mask",
     [](int w, Generator& g) {
       Inputs x = w == 1 ? attention_inputs(g, 2, 2, 3, 4, 2, 3, true) : attention_inputs(g, 2, 2, 3, 4, 2, 3, false);
       x.push_back(bool_mask(g, w == 0 ? Shape{3, 4} : w == 1 ? Shape{2, 1, 3, 4} : Shape{1, 2, 3, 4}, true));
       return x;
     },
     [](const Inputs& x) { return attention(x, {.attn_mask = x[3]}); }},
    {Op::scaled_dot_product_attention, "float_mask",
     [](int w, Generator& g) {
       Inputs x = w == 1 ? attention_inputs(g, 2, 2, 3, 4, 2, 3, true) : attention_inputs(g, 2, 2, 3, 4, 2, 3, false);
       x.push_back(bool_mask(g, w == 0 ? Shape{3, 4} : w == 1 ? Shape{2, 1, 3, 4} : Shape{1, 2, 3, 4}, true));
       return x;
     },
     [](const Inputs& x) { return attention(x, {.attn_mask = additive_mask(x[3], x[0].dtype())}); }},
    {Op::scaled_dot_product_attention, "dropout",
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
    {Op::softmax, "last", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return softmax(x[0], -1); }},
    {Op::softmax, "middle", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return softmax(x[0], 1); }},
    {Op::log_softmax, "", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return log_softmax(x[0], -1); }},
    {Op::log_softmax, "middle", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return log_softmax(x[0], 1); }},
    // normalized_shape is the shape of the weight: one or two trailing dimensions.
    {Op::layer_norm, "affine", [](int w, Generator& g) { return layer_norm_inputs(w, g, true); },
     [](const Inputs& x) { return layer_norm(x[0], x[1].shape(), x[1], x[2]); }},
    {Op::layer_norm, "weight", [](int w, Generator& g) { return layer_norm_inputs(w, g, false); },
     [](const Inputs& x) { return layer_norm(x[0], x[1].shape(), x[1]); }},
    {Op::layer_norm, "plain", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return layer_norm(x[0], {x[0].size(-1)}); }},
    {Op::layer_norm, "plain_2d", [](int w, Generator& g) { return middle_axis_shapes(w, g); },
     [](const Inputs& x) { return layer_norm(x[0], {x[0].size(-2), x[0].size(-1)}); }},
    // A generator seeded inside apply: the same mask on every call, as gradcheck requires.
    {Op::dropout, "train", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) {
       Generator gen(42);
       return dropout(x[0], 0.3, true, gen);
     }},
    {Op::cross_entropy, "", [](int w, Generator& g) { return class_inputs(w, g, false); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1]); }},
    {Op::cross_entropy, "ignore", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.ignore_index = -100}); }},
    {Op::cross_entropy, "smoothing",
     [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.label_smoothing = 0.2}); }},
    {Op::cross_entropy, "sum", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.reduction = Reduction::sum}); }},
    {Op::cross_entropy, "none", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return cross_entropy(x[0], x[1], {.label_smoothing = 0.1, .reduction = Reduction::none}); }},
    {Op::nll_loss, "", [](int w, Generator& g) { return class_inputs(w, g, true); },
     [](const Inputs& x) { return nll_loss(x[0], x[1]); }},
    {Op::mse_loss, "", [](int w, Generator& g) { return same_shape_pair(w, g); },
     [](const Inputs& x) { return mse_loss(x[0], x[1]); }},
    {Op::mse_loss, "none", [](int w, Generator& g) { return same_shape_pair(w, g); },
     [](const Inputs& x) { return mse_loss(x[0], x[1], Reduction::none); }},
};

constexpr bool every_op_has_a_row() {
  std::array<bool, static_cast<size_t>(Op::count)> covered{};
  for (const OpRow& row : kRows) {
    if (row.op == Op::count || row.make_inputs == nullptr || row.apply == nullptr) return false;
    covered[static_cast<size_t>(row.op)] = true;
  }
  for (bool has_row : covered)
    if (!has_row) return false;
  return true;
}
static_assert(every_op_has_a_row(), "every Op (autograd/op.h) needs at least one row in kRows");

}  // namespace

Tensor normal(Generator& gen, Shape shape) { return randn(std::move(shape), gen, DType::f64); }

std::span<const OpRow> op_table() { return kRows; }

std::string row_name(const OpRow& row) {
  return row.variant.empty() ? std::string(op_name(row.op)) : fmt::format("{}_{}", op_name(row.op), row.variant);
}

const OpRow* find_op(std::string_view name) {
  for (const OpRow& row : kRows)
    if (row_name(row) == name) return &row;
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
      options.eps = row.eps;
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

// The rows of the op table. Each row draws its gradient-check inputs and applies its op; shapes are small
// because gradcheck evaluates the op twice per input element.
#include "ops/op_table.h"

#include "ops/ops.h"

#include <array>
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

    // selection.cpp

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

    // shape.cpp: reshape and transpose
    {Op::reshape, "reshape", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return reshape(x[0], {-1, 1}); }},
    {Op::view, "view", [](int, Generator& g) { return Inputs{normal(g, {2, 3, 4})}; },
     [](const Inputs& x) { return view(x[0].contiguous(), {6, 4}); }, 1},
    {Op::transpose, "transpose", [](int w, Generator& g) { return unary_shapes(w, g, normal); },
     [](const Inputs& x) { return transpose(x[0], 0, -1); }},
    // shape.cpp: permute, squeeze, unsqueeze, expand, slice, concat, stack, split, chunk

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

}  // namespace gradformer

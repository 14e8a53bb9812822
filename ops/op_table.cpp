// The rows of the op table. Each row draws its gradient-check inputs and applies its op; shapes are small
// because gradcheck evaluates the op twice per input element.
#include "ops/op_table.h"

#include "ops/ops.h"

#include <array>

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

}  // namespace gradformer

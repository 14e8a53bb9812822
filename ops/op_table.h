// The op table: one row per differentiable op (and per mask-returning op), the contract that the gradient-check
// test, gradformer-gradcheck and the f32-vs-f64 test walk. Adding an op = its function in its family's file,
// its name in `Op`, its row in op_table.cpp. A name without a row, or rows out of order, fails to compile.
#pragma once

#include "autograd/generator.h"
#include "autograd/gradcheck.h"
#include "autograd/tensor.h"

#include <span>
#include <string_view>
#include <vector>

namespace gradformer {

enum class Op : int {
  // elementwise.cpp: arithmetic
  add, sub, mul, div, neg, exp, log, add_scalar, mul_scalar, rsub_scalar, rdiv_scalar,
  // elementwise.cpp: unary math, activations, maximum/minimum, comparisons and logical ops
  abs, sqrt, rsqrt, pow, pow_negative, tanh, sigmoid, relu, gelu, gelu_tanh, softplus, maximum, minimum,
  eq, ne, lt, le, gt, ge, lt_scalar, eq_scalar, logical_and, logical_or, logical_not,

  // selection.cpp
  where, masked_fill, index_select, gather, embedding, embedding_padding,

  // reduce.cpp: sums
  sum_all, sum_axes, sum_keepdim, mean,
  // reduce.cpp: max/min, var, logsumexp, argmax
  max_all, max_axes, max_keepdim, min, var_unbiased, var_biased, logsumexp, logsumexp_keepdim, argmax, argmin,

  // shape.cpp: reshape and transpose
  reshape, view, transpose,
  // shape.cpp: permute, squeeze, unsqueeze, expand, slice, concat, stack, split, chunk
  permute, squeeze_all, squeeze_axis, unsqueeze, expand, slice, slice_step, narrow, concat, stack, split, chunk,

  // matmul.cpp: matmul
  matmul_2d, matmul_vector, matmul_batched, matmul_broadcast,
  // matmul.cpp: linear, bmm; attention.cpp
  linear, linear_no_bias, bmm, sdpa, sdpa_causal, sdpa_key_padding_mask, sdpa_bool_mask, sdpa_float_mask,
  sdpa_dropout,

  // normalization.cpp: softmax, log_softmax, layer_norm, dropout; loss.cpp
  softmax_last, softmax_middle, log_softmax, log_softmax_middle, layer_norm_affine, layer_norm_weight, layer_norm_plain,
  layer_norm_plain_2d, dropout_train, cross_entropy, cross_entropy_ignore, cross_entropy_smoothing, cross_entropy_sum,
  cross_entropy_none, nll_loss, mse_loss, mse_loss_none,

  count  // not an op: the number of rows
};

struct OpRow {
  Op op;
  std::string_view name;
  // Draws the inputs of case `which` (0 <= which < cases) in f64: each case another shape, covering
  // broadcasting and size-1 dimensions; the test adds non-contiguous copies of the same inputs.
  std::vector<Tensor> (*make_inputs)(int which, Generator& gen);
  // Applies the op to those inputs; options the op takes are fixed by the row (one row per mode).
  Tensor (*apply)(const std::vector<Tensor>& inputs);
  int cases = 3;
  bool differentiable = true;  // false for ops that return masks or indices
  double atol = 1e-5;
  double rtol = 1e-3;
};

std::span<const OpRow> op_table();
// The row called `name`, or nullptr.
const OpRow* find_op(std::string_view name);

// One gradient check of a row: case `which`, with the inputs as drawn or as non-contiguous copies.
struct OpCheck {
  int which = 0;
  bool strided = false;
  std::vector<Tensor> inputs;
  GradcheckReport report;  // an exception thrown by the op is reported as a failure holding its message
};

// Gradient-checks every case of a differentiable row, contiguous and strided; empty for other rows.
std::vector<OpCheck> gradcheck_row(const OpRow& row, uint64_t seed = 0);

}  // namespace gradformer

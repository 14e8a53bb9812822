// The op table: one row per differentiable op (and per mask-returning op), the contract that the gradient-check
// test, gradformer-gradcheck and the f32-vs-f64 test walk. Adding an op = its function in its family's file,
// its name in `Op`, its row in op_table.cpp. A name without a row, or rows out of order, fails to compile.
#pragma once

#include "autograd/generator.h"
#include "autograd/tensor.h"

#include <span>
#include <string_view>
#include <vector>

namespace gradformer {

enum class Op : int {
  // elementwise.cpp: arithmetic
  add, sub, mul, div, neg, exp, log, add_scalar, mul_scalar, rsub_scalar, rdiv_scalar,
  // elementwise.cpp: unary math, activations, maximum/minimum, comparisons and logical ops

  // selection.cpp

  // reduce.cpp: sums
  sum_all, sum_axes, sum_keepdim, mean,
  // reduce.cpp: max/min, var, logsumexp, argmax

  // shape.cpp: reshape and transpose
  reshape, view, transpose,
  // shape.cpp: permute, squeeze, unsqueeze, expand, slice, concat, stack, split, chunk

  // matmul.cpp: matmul
  matmul_2d, matmul_vector, matmul_batched, matmul_broadcast,
  // matmul.cpp: linear, bmm; attention.cpp
  linear, linear_no_bias, bmm, sdpa, sdpa_causal, sdpa_key_padding_mask, sdpa_bool_mask, sdpa_float_mask,
  sdpa_dropout,

  // normalization.cpp: softmax, log_softmax, layer_norm, dropout; loss.cpp

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

}  // namespace gradformer

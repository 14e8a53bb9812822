// The library's ops by name: what record() tags a graph node with, and what the op table (ops/op_table.cpp)
// must give at least one gradient-checked row each; a compile-time check there fails for an op without one, and
// the op-table test fails for an op that records a node but has no differentiable row. The engine stores the
// name and never looks inside it: it still knows no op. Ops that record no node of their own (comparisons,
// argmax, and compositions such as mean and bmm) are listed too, because the table checks them as well.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace gradformer {

enum class Op : uint8_t {
  // ops/elementwise.cpp
  add, sub, mul, div, neg, exp, log, rsub, rdiv, abs, sqrt, rsqrt, pow, tanh, sigmoid, relu, gelu, softplus, silu,
  sin, cos, erf, log1p, expm1, maximum, minimum, eq, ne, lt, le, gt, ge, logical_and, logical_or, logical_not,
  // ops/selection.cpp
  where, masked_fill, index_select, gather, embedding,
  // ops/reduce.cpp
  sum, mean, max, min, var, logsumexp, argmax, argmin,
  // ops/shape.cpp
  reshape, view, transpose, permute, squeeze, unsqueeze, expand, slice, narrow, concat, stack, split, chunk,
  // autograd/tensor.cpp: Tensor::contiguous, clone, to
  contiguous, clone, to,
  // ops/matmul.cpp, ops/attention.cpp
  matmul, linear, bmm, scaled_dot_product_attention,
  // ops/normalization.cpp, ops/loss.cpp
  softmax, log_softmax, layer_norm, dropout, cross_entropy, nll_loss, mse_loss,

  count  // not an op: the number of ops
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Op::count)> kOpNames{
    "add", "sub", "mul", "div", "neg", "exp", "log", "rsub", "rdiv", "abs", "sqrt", "rsqrt", "pow", "tanh", "sigmoid",
    "relu", "gelu", "softplus", "silu", "sin", "cos", "erf", "log1p", "expm1", "maximum", "minimum", "eq", "ne", "lt",
    "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
    "where", "masked_fill", "index_select", "gather", "embedding",
    "sum", "mean", "max", "min", "var", "logsumexp", "argmax", "argmin",
    "reshape", "view", "transpose", "permute", "squeeze", "unsqueeze", "expand", "slice", "narrow", "concat", "stack",
    "split", "chunk",
    "contiguous", "clone", "to",
    "matmul", "linear", "bmm", "scaled_dot_product_attention",
    "softmax", "log_softmax", "layer_norm", "dropout", "cross_entropy", "nll_loss", "mse_loss"};

// The name errors and graph nodes show, as the op's function is called ("log_softmax").
constexpr std::string_view op_name(Op op) { return kOpNames[static_cast<size_t>(op)]; }

constexpr bool op_names_filled() {
  for (std::string_view name : kOpNames)
    if (name.empty()) return false;
  return true;
}
static_assert(op_names_filled(), "every Op needs its name in kOpNames, in the order of the enum");

}  // namespace gradformer

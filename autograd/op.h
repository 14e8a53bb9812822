// The library's ops by name: what record() tags a graph node with, and what the op table (ops/op_table.cpp)
// must give at least one gradient-checked row each; a compile-time check there fails for an op without one, and
// the op-table test fails for an op that records a node but has no differentiable row. The engine stores the
// name and never looks inside it: it still knows no op. Ops that record no node of their own (comparisons,
// argmax, and compositions such as mean and bmm) are listed too, because the table checks them as well.
//
// GRADFORMER_OPS is the one list: `enum class Op` and the names come from it, each name spelled from its
// enumerator, so an op cannot be named wrongly or out of order. Adding an op = one X(name) here.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

// clang-format off
#define GRADFORMER_OPS(X)                                                                                           \
  /* ops/elementwise.cpp */                                                                                          \
  X(add) X(sub) X(mul) X(div) X(neg) X(exp) X(log) X(rsub) X(rdiv) X(abs) X(sqrt) X(rsqrt) X(pow) X(tanh)           \
  X(sigmoid) X(relu) X(gelu) X(softplus) X(maximum) X(minimum) X(eq) X(ne) X(lt) X(le) X(gt) X(ge)                  \
  X(logical_and) X(logical_or) X(logical_not)                                                                        \
  /* ops/selection.cpp */                                                                                            \
  X(where) X(masked_fill) X(index_select) X(gather) X(embedding)                                                     \
  /* ops/reduce.cpp */                                                                                               \
  X(sum) X(mean) X(max) X(min) X(var) X(logsumexp) X(argmax) X(argmin)                                              \
  /* ops/shape.cpp */                                                                                                \
  X(reshape) X(view) X(transpose) X(permute) X(squeeze) X(unsqueeze) X(expand) X(slice) X(narrow) X(concat)         \
  X(stack) X(split) X(chunk)                                                                                         \
  /* autograd/tensor.cpp: Tensor::contiguous, clone, to */                                                           \
  X(contiguous) X(clone) X(to)                                                                                       \
  /* ops/matmul.cpp, ops/attention.cpp */                                                                            \
  X(matmul) X(linear) X(bmm) X(scaled_dot_product_attention)                                                         \
  /* ops/normalization.cpp, ops/loss.cpp */                                                                          \
  X(softmax) X(log_softmax) X(layer_norm) X(dropout) X(cross_entropy) X(nll_loss) X(mse_loss)
// clang-format on

namespace gradformer {

enum class Op : uint8_t {
#define GRADFORMER_OP_ENUMERATOR(name) name,
  GRADFORMER_OPS(GRADFORMER_OP_ENUMERATOR)
#undef GRADFORMER_OP_ENUMERATOR
  count  // not an op: the number of ops
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Op::count)> kOpNames{
#define GRADFORMER_OP_NAME(name) #name,
    GRADFORMER_OPS(GRADFORMER_OP_NAME)
#undef GRADFORMER_OP_NAME
};

// The name errors and graph nodes show, as the op's function is called ("log_softmax").
constexpr std::string_view op_name(Op op) { return kOpNames[static_cast<size_t>(op)]; }

}  // namespace gradformer

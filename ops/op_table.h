// The op table: one or more rows per op of `Op` (autograd/op.h), one per mode the op is checked in (`sum`:
// all, axes, keepdim), the contract that the gradient-check test, gradformer-gradcheck and the f32-vs-f64 test
// walk. An Op without a row fails to compile; an op that records a node without a differentiable row fails the
// op-table test, which runs every row and every layer of nn/layer_table.cpp and looks at the nodes they record.
#pragma once

#include "autograd/generator.h"
#include "autograd/gradcheck.h"
#include "autograd/op.h"
#include "autograd/tensor.h"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer {

struct OpRow {
  Op op;
  std::string_view variant;  // the mode this row checks ("axes", "keepdim"); empty for an op's plain call
  // Draws the inputs of case `which` (0 <= which < cases) in f64: each case another shape, covering
  // broadcasting and size-1 dimensions; the test adds non-contiguous copies of the same inputs.
  std::vector<Tensor> (*make_inputs)(int which, Generator& gen);
  // Applies the op to those inputs; options the op takes are fixed by the row (one row per mode).
  Tensor (*apply)(const std::vector<Tensor>& inputs);
  int cases = 3;
  bool differentiable = true;  // false for ops that return masks or indices
  double atol = 1e-5;
  double rtol = 1e-3;
  double eps = 1e-6;  // gradcheck's finite-difference step
};

std::span<const OpRow> op_table();
// A tensor of `shape` drawn from N(0, 1) in f64: what the op and layer tables' rows draw most inputs from.
Tensor normal(Generator& gen, Shape shape);
// "sum_axes" for the row of sum with variant "axes", "exp" for a row without a variant.
std::string row_name(const OpRow& row);
// The row called `name` (as row_name gives it), or nullptr.
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

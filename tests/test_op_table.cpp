// Walks the op table: every row is gradient-checked in f64 on each of its cases, once with the inputs as drawn
// and once with non-contiguous copies of them; every row's f32 result agrees with its f64 result; and every op
// that records a node while the op and layer tables run has a differentiable row.
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "nn/layer_table.h"
#include "ops/op_table.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <array>
#include <set>
#include <string>
#include <unordered_set>

using namespace gradformer;

namespace {

// The ops of the nodes in out's graph: library ops in `recorded`, nodes tagged with a bare name in `unnamed`.
void collect_recorded_ops(const Tensor& out, std::array<bool, static_cast<size_t>(Op::count)>& recorded,
                          std::set<std::string>& unnamed) {
  std::vector<const Node*> stack;
  std::unordered_set<const Node*> seen;
  if (out.grad_fn()) stack.push_back(out.grad_fn().get());
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    if (const std::optional<Op> op = node->library_op())
      recorded[static_cast<size_t>(*op)] = true;
    else
      unnamed.insert(node->op());
    for (const Node::Edge& edge : node->inputs())
      if (edge.node) stack.push_back(edge.node.get());
  }
}

std::vector<Tensor> requiring_grad(std::vector<Tensor> inputs) {
  for (Tensor& t : inputs)
    if (is_floating(t.dtype())) t = t.detach().requires_grad_();
  return inputs;
}

}  // namespace

TEST_CASE("op table: every op recorded while the op and layer tables run has a gradient-checked row") {
  std::array<bool, static_cast<size_t>(Op::count)> recorded{};
  std::set<std::string> unnamed;
  for (const OpRow& row : op_table()) {
    for (int which = 0; which < row.cases; ++which) {
      Generator gen(4000 + static_cast<uint64_t>(which));
      collect_recorded_ops(row.apply(requiring_grad(row.make_inputs(which, gen))), recorded, unnamed);
    }
  }
  for (const nn::LayerRow& row : nn::layer_table()) {
    for (int which = 0; which < row.cases; ++which) {
      Generator gen(5000 + static_cast<uint64_t>(which));
      const nn::LayerCase layer = row.make(which, gen);
      collect_recorded_ops(layer.forward(requiring_grad(layer.inputs)), recorded, unnamed);
    }
  }
  // A library op that records under a bare name instead of an Op escapes the table's compile-time check.
  INFO(fmt::format("nodes recorded under names outside Op: {}", fmt::join(unnamed, ", ")));
  CHECK(unnamed.empty());
  for (size_t i = 0; i < recorded.size(); ++i) {
    if (!recorded[i]) continue;
    bool checked = false;
    for (const OpRow& row : op_table()) checked = checked || (static_cast<size_t>(row.op) == i && row.differentiable);
    CAPTURE(op_name(static_cast<Op>(i)));
    CHECK_MESSAGE(checked, "records a node but has no differentiable row in ops/op_table.cpp");
  }
  CHECK(recorded[static_cast<size_t>(Op::to)]);  // the table reaches Tensor's own recording ops too
  CHECK(recorded[static_cast<size_t>(Op::contiguous)]);
  CHECK(recorded[static_cast<size_t>(Op::clone)]);
}

TEST_CASE("op table: ops that return masks or indices record nothing, even from inputs that require grad") {
  for (const OpRow& row : op_table()) {
    if (row.differentiable) continue;
    CAPTURE(row_name(row));
    for (int which = 0; which < row.cases; ++which) {
      Generator gen(1000 + static_cast<uint64_t>(which));
      const std::vector<Tensor> inputs = requiring_grad(row.make_inputs(which, gen));
      const Tensor out = row.apply(inputs);
      CHECK_FALSE(out.requires_grad());
      CHECK(out.grad_fn() == nullptr);
      CHECK_FALSE(is_floating(out.dtype()));
    }
  }
}

TEST_CASE("op table: every differentiable op passes gradcheck on every case, contiguous or not") {
  for (const OpRow& row : op_table()) {
    if (!row.differentiable) continue;
    for (const OpCheck& check : gradcheck_row(row, 1)) {
      CAPTURE(row_name(row));
      CAPTURE(check.which);
      CAPTURE(check.strided);
      INFO(check.report.failure);
      CHECK(check.report.passed);
    }
  }
}

TEST_CASE("op table: f32 results agree with f64 results within f32 precision") {
  for (const OpRow& row : op_table()) {
    for (int which = 0; which < row.cases; ++which) {
      Generator gen(2000 + static_cast<uint64_t>(which));
      const std::vector<Tensor> inputs64 = row.make_inputs(which, gen);
      std::vector<Tensor> inputs32;
      for (const Tensor& t : inputs64) inputs32.push_back(is_floating(t.dtype()) ? t.to(DType::f32) : t);
      // The reference is the f64 op applied to exactly the f32-rounded inputs.
      std::vector<Tensor> rounded;
      for (const Tensor& t : inputs32) rounded.push_back(is_floating(t.dtype()) ? t.to(DType::f64) : t);
      const Tensor out32 = row.apply(inputs32);
      const Tensor out64 = row.apply(rounded);
      CAPTURE(row_name(row));
      CAPTURE(which);
      REQUIRE(out32.shape() == out64.shape());
      CHECK(testing::max_abs_difference(out32, out64) <= 1e-4 * (1.0 + testing::max_abs(out64)));
    }
  }
}

TEST_CASE("op table: names are unique and find_op finds each") {
  for (const OpRow& row : op_table()) {
    const OpRow* found = find_op(row_name(row));
    REQUIRE(found != nullptr);
    CHECK(found == &row);
  }
  CHECK(find_op("no_such_op") == nullptr);
}

TEST_CASE("op table: a zero upstream gradient gives exactly zero input gradients") {
  for (const OpRow& row : op_table()) {
    if (!row.differentiable) continue;
    Generator gen(3000);
    std::vector<Tensor> inputs = row.make_inputs(0, gen);
    for (Tensor& t : inputs)
      if (is_floating(t.dtype())) t = t.detach().requires_grad_();
    const Tensor out = row.apply(inputs);
    if (!out.requires_grad()) continue;
    out.backward(zeros_like(out));
    CAPTURE(row_name(row));
    for (const Tensor& t : inputs)
      if (t.requires_grad() && t.grad().defined()) CHECK(testing::max_abs(t.grad()) == 0.0);
  }
}

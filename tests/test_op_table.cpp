// Walks the op table: every row is gradient-checked in f64 on each of its cases, once with the inputs as drawn
// and once with non-contiguous copies of them; every row's f32 result agrees with its f64 result.
#include "autograd/gradcheck.h"
#include "ops/op_table.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

using namespace gradformer;

TEST_CASE("op table: every differentiable op passes gradcheck on every case, contiguous or not") {
  for (const OpRow& row : op_table()) {
    if (!row.differentiable) {
      Generator gen(1000);
      CHECK_FALSE(row.apply(row.make_inputs(0, gen)).requires_grad());
      continue;
    }
    for (const OpCheck& check : gradcheck_row(row, 1)) {
      CAPTURE(row.name);
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
      CAPTURE(row.name);
      CAPTURE(which);
      REQUIRE(out32.shape() == out64.shape());
      CHECK(testing::max_abs_difference(out32, out64) <= 1e-4 * (1.0 + testing::max_abs(out64)));
    }
  }
}

TEST_CASE("op table: names are unique and find_op finds each") {
  for (const OpRow& row : op_table()) {
    const OpRow* found = find_op(row.name);
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
    CAPTURE(row.name);
    for (const Tensor& t : inputs)
      if (t.requires_grad() && t.grad().defined()) CHECK(testing::max_abs(t.grad()) == 0.0);
  }
}

#include "autograd/gradcheck.h"
#include "ops/ops.h"
#include "tests/op_helpers.h"

#include <doctest/doctest.h>

using namespace gradformer;

namespace {

// x² with a backward that forgets the factor 2: gradcheck must catch it.
Tensor wrong_square(const Tensor& x) {
  Tensor out = x.detach() * x.detach();
  return record(out, "wrong_square", {x}, [x = x.detach()](const Tensor& dout, InputGrads& g) { g[0] = dout * x; });
}

}  // namespace

TEST_CASE("gradcheck: passes a correct function of several inputs, f32 inputs converted to f64") {
  const auto fn = [](const std::vector<Tensor>& x) { return matmul(exp(x[0]), x[1]) / (x[2] + 3.0); };
  Generator gen(3);
  const GradcheckReport report =
      gradcheck(fn, {randn({2, 3}, gen), randn({3, 2}, gen), uniform({2}, 0.5, 1.0, gen)});
  CHECK(report.passed);
  CHECK(report.failure.empty());
  CHECK(report.max_abs_error < 1e-6);
}

TEST_CASE("gradcheck: reports the worst element of a wrong backward") {
  Generator gen(4);
  const Tensor x = uniform({3}, 1.0, 2.0, gen, DType::f64);
  const GradcheckReport report = gradcheck([](const std::vector<Tensor>& in) { return wrong_square(in[0]); }, {x});
  CHECK_FALSE(report.passed);
  CHECK(report.worst_input == 0);
  CHECK(report.worst_numeric == doctest::Approx(2.0 * report.worst_analytic).epsilon(1e-6));
  CHECK(report.failure.find("input 0 [3] at index") == 0);
}

TEST_CASE("gradcheck: a failure in a module's parameter names the parameter and the element") {
  const Tensor weight = testing::nested_parameter();
  REQUIRE(weight.name() == "0.0.weight");
  const GradcheckReport report =
      gradcheck([](const std::vector<Tensor>& in) { return wrong_square(in[0]); }, {weight});
  CHECK_FALSE(report.passed);
  CHECK(report.worst_name == "0.0.weight");
  CHECK(report.failure == fmt::format("0.0.weight{}: analytic {:.10g}, numeric {:.10g}", shape_str(report.worst_index),
                                      report.worst_analytic, report.worst_numeric));
}

TEST_CASE("gradcheck: a non-floating output is an error; integer inputs pass through untouched") {
  CHECK_THROWS_AS(gradcheck([](const std::vector<Tensor>&) { return arange(3); }, {zeros({2})}), DTypeError);
  const auto fn = [](const std::vector<Tensor>& in) {
    CHECK(in[1].dtype() == DType::i64);
    return in[0] * 2.0;
  };
  CHECK(gradcheck(fn, {zeros({2}), arange(2)}).passed);
}

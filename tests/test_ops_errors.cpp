// Each error of the first ops: its type and a message naming the op and the shapes or dtypes.
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

using namespace gradformer;
using gradformer::testing::message_of;

TEST_CASE("errors: matmul names both shapes and the inner dimensions") {
  const std::string m = message_of<ShapeError>([] { matmul(zeros({32, 64}), zeros({48, 16})); });
  CHECK(m == "matmul: [32, 64] x [48, 16]: inner dimensions 64 and 48 differ");
  CHECK(message_of<ShapeError>([] { matmul(zeros({}), zeros({2})); }).find("at least one dimension") !=
        std::string::npos);
  CHECK(message_of<DTypeError>([] { matmul(zeros({2, 2}), zeros({2, 2}, DType::f64)); }).find("f32") !=
        std::string::npos);
}

TEST_CASE("errors: broadcasting names the op, both shapes and the dimension") {
  const std::string m = message_of<ShapeError>([] { add(zeros({2, 3}), zeros({4})); });
  CHECK(m == "add: shapes [2, 3] and [4] cannot be broadcast: dimension -1 is 3 in one and 4 in the other");
}

TEST_CASE("errors: mixing dtypes names both") {
  const std::string m = message_of<DTypeError>([] { mul(zeros({2}), zeros({2}, DType::f64)); });
  CHECK(m == "mul: operands have different dtypes: f32 [2] and f64 [2]");
  CHECK(message_of<DTypeError>([] { exp(arange(3)); }) == "exp: expects f32 or f64, got i64");
}

TEST_CASE("errors: axes out of range and duplicated") {
  CHECK(message_of<IndexError>([] { sum(zeros({2, 3}), {2}); }) ==
        "sum: axis 2 is out of range for a tensor of rank 2 (expected -2..1)");
  CHECK(message_of<IndexError>([] { sum(zeros({2, 3}), {1, -1}); }).find("twice") != std::string::npos);
  CHECK(message_of<IndexError>([] { transpose(zeros({2, 3}), 0, 5); }).find("transpose") == 0);
}

TEST_CASE("errors: every error derives from gradformer::Error") {
  CHECK_THROWS_AS(matmul(zeros({2, 3}), zeros({2, 3})), Error);
  CHECK_THROWS_AS(reshape(zeros({2, 3}), {5}), Error);
}

TEST_CASE("errors: misuse of the engine names what is wrong and what to do") {
  CHECK(message_of<AutogradError>([] { sum(zeros({2})).backward(); }) ==
        "backward: the tensor of shape [] does not require grad and has no grad_fn");
  Tensor x = tensor<double>({1.0, 2.0}).requires_grad_();
  CHECK(message_of<AutogradError>([&] { (x * 3.0).backward(); }) ==
        "backward: grad can be implicitly created only for scalar outputs; got shape [2], pass a gradient of that shape");
  CHECK(message_of<ShapeError>([&] { (x * 3.0).backward(zeros({3}, DType::f64)); }) ==
        "backward: gradient f64 [3] does not match the output f64 [2]");
  const Tensor y = sum(exp(x));
  y.backward();
  CHECK(message_of<AutogradError>([&] { y.backward(); })
            .ends_with(": backward through a graph whose saved tensors were already freed by an earlier backward(); "
                       "pass retain_graph=true to the first call"));
  CHECK(message_of<DTypeError>([] { arange(3).requires_grad_(); }) ==
        "requires_grad_: only f32 and f64 tensors can require gradients, got i64");
  CHECK(message_of<ShapeError>([] { zeros({2, 3}).item(); }) == "item: needs a tensor with one element, got shape [2, 3]");
  CHECK(message_of<ShapeError>([] { from_vector(std::vector<double>{1, 2, 3}, {2, 2}); }) ==
        "from_vector: 3 values do not fill shape [2, 2] (4 elements)");
}

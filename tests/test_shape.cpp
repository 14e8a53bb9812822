// Shape ops: views share storage and hold the expected values, slices follow Python's rules, the joins and
// splits round-trip with their gradients, and errors name the op and the shapes.
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <limits>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

// 0, 1, 2, ... in the given shape, f64.
Tensor iota(Shape shape) { return reshape(arange(0, static_cast<double>(numel_of(shape)), 1, DType::f64), shape); }

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

}  // namespace

TEST_CASE("shape: permute, squeeze, unsqueeze and expand are views with the expected values") {
  const Tensor x = iota({2, 3, 4});
  const Tensor p = permute(x, {2, 0, -2});
  CHECK(p.storage() == x.storage());
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.at({3, 1, 2}) == x.at({1, 2, 3}));
  CHECK(p.at({1, 0, 2}) == 9.0);

  const Tensor y = iota({2, 1, 3, 1});
  CHECK(squeeze(y).shape() == Shape{2, 3});
  CHECK(squeeze(y).storage() == y.storage());
  CHECK(squeeze(y, 1).shape() == Shape{2, 3, 1});
  CHECK(squeeze(y, -1).shape() == Shape{2, 1, 3});
  CHECK(squeeze(y, 0).shape() == Shape{2, 1, 3, 1});  // not size 1: unchanged, as PyTorch
  CHECK(values(squeeze(y)) == values(y));

  const Tensor u = unsqueeze(x, -1);
  CHECK(u.shape() == Shape{2, 3, 4, 1});
  CHECK(unsqueeze(x, 0).shape() == Shape{1, 2, 3, 4});
  CHECK(unsqueeze(x, 1).is_contiguous());
  CHECK(u.storage() == x.storage());

  const Tensor column = iota({3, 1});
  const Tensor e = expand(column, {2, -1, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.storage() == column.storage());
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(e.at({1, 2, 3}) == 2.0);
  CHECK(e.at({0, 1, 0}) == 1.0);
}

TEST_CASE("shape: slice follows Python's negative indices, clamping and step") {
  const Tensor x = iota({10});
  CHECK(values(slice(x, 0, 2, 5)) == std::vector<double>{2, 3, 4});
  CHECK(values(slice(x, 0, -3, 100)) == std::vector<double>{7, 8, 9});     // x[-3:]
  CHECK(values(slice(x, 0, 1, -6, 2)) == std::vector<double>{1, 3});       // x[1:-6:2]
  CHECK(values(slice(x, 0, -100, 4, 3)) == std::vector<double>{0, 3});     // start clamped to 0
  CHECK(values(slice(x, -1, 0, 10, 4)) == std::vector<double>{0, 4, 8});
  CHECK(slice(x, 0, 7, 3).numel() == 0);                                   // end before start: empty
  CHECK(slice(x, 0, 12, 20).numel() == 0);
  CHECK(values(slice(x, 0, 6)) == std::vector<double>{6, 7, 8, 9});        // end defaults to the end
  CHECK(values(slice(x, 0, 3, 100, std::numeric_limits<int64_t>::max())) == std::vector<double>{3});

  const Tensor m = iota({3, 4});
  Tensor s = slice(m, 1, 1, 4, 2);
  CHECK(s.storage() == m.storage());
  CHECK(s.shape() == Shape{3, 2});
  CHECK(values(s) == std::vector<double>{1, 3, 5, 7, 9, 11});
  CHECK(values(narrow(m, 0, -2, 2)) == std::vector<double>{4, 5, 6, 7, 8, 9, 10, 11});

  // A view writes through to its base.
  s.set_at({0, 0}, -1.0);
  CHECK(m.at({0, 1}) == -1.0);
}

TEST_CASE("shape: slice backward writes dout into the matching slice of zeros") {
  Tensor x = iota({2, 5});
  x.requires_grad_();
  Tensor s = slice(x, 1, -4, 5, 2);  // columns 1 and 3
  sum(s * tensor<double>({10, 20})).backward();
  CHECK(values(x.grad()) == std::vector<double>{0, 10, 0, 20, 0, 0, 10, 0, 20, 0});
}

TEST_CASE("shape: expand backward sums over the repeats") {
  Tensor x = iota({3, 1});
  x.requires_grad_();
  sum(expand(x, {2, 3, 4})).backward();
  CHECK(values(x.grad()) == std::vector<double>{8, 8, 8});
}

TEST_CASE("shape: concat and stack round-trip with split and chunk, and their gradients reach each input") {
  Tensor a = iota({2, 3}), b = iota({2, 1}) + 100.0, c = iota({2, 2}) + 200.0;
  for (Tensor* t : {&a, &b, &c}) t->requires_grad_();
  const Tensor joined = concat({a, b, c}, -1);
  CHECK(joined.shape() == Shape{2, 6});
  CHECK(values(joined) == std::vector<double>{0, 1, 2, 100, 200, 201, 3, 4, 5, 101, 202, 203});
  CHECK(values(cat({a, b}, 1)) == values(concat({a, b}, 1)));

  const std::vector<Tensor> pieces = split(joined, 3, 1);
  REQUIRE(pieces.size() == 2);
  CHECK(pieces[0].storage() == joined.storage());
  CHECK(values(pieces[0]) == values(a));
  CHECK(pieces[0].grad_fn() != pieces[1].grad_fn());

  const std::vector<Tensor> thirds = split(joined, 4, -1);
  REQUIRE(thirds.size() == 2);
  CHECK(thirds[1].shape() == Shape{2, 2});

  // Weigh every element by its position so the gradients show where each piece came from.
  sum(joined * iota({2, 6})).backward();
  CHECK(values(a.grad()) == std::vector<double>{0, 1, 2, 6, 7, 8});
  CHECK(values(b.grad()) == std::vector<double>{3, 9});
  CHECK(values(c.grad()) == std::vector<double>{4, 5, 10, 11});

  const Tensor x = iota({2, 3}), y = iota({2, 3}) * 2.0;
  const Tensor stacked = stack({x, y}, 1);
  CHECK(stacked.shape() == Shape{2, 2, 3});
  CHECK(values(stacked) == std::vector<double>{0, 1, 2, 0, 2, 4, 3, 4, 5, 6, 8, 10});
  CHECK(stack({x, y}, -1).shape() == Shape{2, 3, 2});
  const std::vector<Tensor> halves = chunk(stacked, 2, 1);
  REQUIRE(halves.size() == 2);
  CHECK(values(squeeze(halves[1], 1)) == values(y));
  CHECK(halves[1].storage() == stacked.storage());

  CHECK(chunk(iota({7}), 3).size() == 3);
  CHECK(chunk(iota({7}), 3)[2].numel() == 1);
  CHECK(chunk(iota({6}), 4).size() == 3);  // pieces of 2: torch.chunk gives fewer when the size runs out
}

TEST_CASE("shape: gradients through split pieces and stack") {
  Tensor x = iota({5});
  x.requires_grad_();
  const std::vector<Tensor> pieces = split(x, 2);
  REQUIRE(pieces.size() == 3);
  sum(pieces[0] * 1.0 + 0.0).backward();
  sum(pieces[2] * 3.0).backward();
  CHECK(values(x.grad()) == std::vector<double>{1, 1, 0, 0, 3});

  Tensor p = iota({2}), q = iota({2});
  p.requires_grad_();
  q.requires_grad_();
  sum(stack({p, q}) * iota({2, 2})).backward();
  CHECK(values(p.grad()) == std::vector<double>{0, 1});
  CHECK(values(q.grad()) == std::vector<double>{2, 3});
}

TEST_CASE("shape: errors name the op and the shapes") {
  CHECK(message_of<ShapeError>([] { concat({zeros({2, 3}), zeros({2, 4})}, 0); }) ==
        "concat: tensor 1 has shape [2, 4] but tensor 0 has [2, 3] (dimension 1 may differ only along axis 0)");
  CHECK(message_of<ShapeError>([] { concat({zeros({2, 3}), zeros({2})}, 0); }) ==
        "concat: tensor 1 has shape [2] but tensor 0 has [2, 3] (ranks differ)");
  CHECK(message_of<DTypeError>([] { concat({zeros({2}), zeros({2}, DType::f64)}); }) ==
        "concat: tensor 1 is f64 [2] but tensor 0 is f32 [2]");
  CHECK(message_of<ValueError>([] { concat({}); }) == "concat: expects at least one tensor, got none");
  CHECK(message_of<ShapeError>([] { stack({zeros({2, 3}), zeros({3, 2})}); }) ==
        "stack: tensor 1 has shape [3, 2] but tensor 0 has [2, 3] (stack needs equal shapes)");
  CHECK(message_of<ShapeError>([] { expand(zeros({3, 2}), {4, 2}); }) ==
        "expand: cannot expand [3, 2] to [4, 2] (dimension 0 is 3, not 1)");
  CHECK(message_of<ShapeError>([] { expand(zeros({3, 2}), {2}); }) ==
        "expand: cannot expand [3, 2] to [2] (the target has fewer dimensions)");
  CHECK(message_of<ShapeError>([] { expand(zeros({2}), {-1, 2}); }) ==
        "expand: cannot expand [2] to [-1, 2] (new leading dimension 0 cannot be -1)");
  CHECK(message_of<ShapeError>([] { permute(zeros({2, 3}), {0}); }) ==
        "permute: dims [0] has 1 entries for a tensor of shape [2, 3] (rank 2)");
  CHECK(message_of<IndexError>([] { permute(zeros({2, 3}), {1, -1}); }) ==
        "permute: axis 1 appears twice in dims [1, -1] for shape [2, 3]");
  CHECK(message_of<IndexError>([] { unsqueeze(zeros({2, 3}), 3); }) ==
        "unsqueeze: axis 3 is out of range for a tensor of rank 3 (expected -3..2)");
  CHECK(message_of<ValueError>([] { slice(zeros({4}), 0, 0, 4, 0); }) ==
        "slice: step must be positive, got 0 (shape [4])");
  CHECK(message_of<IndexError>([] { slice(zeros({}), 0, 0, 1); }) ==
        "slice: cannot slice a 0-dimensional tensor (shape [])");
  CHECK(message_of<IndexError>([] { narrow(zeros({2, 5}), 1, 3, 3); }) ==
        "narrow: start 3 with length 3 does not fit in dimension 1 of size 5 (shape [2, 5])");
  CHECK(message_of<IndexError>([] { narrow(zeros({2, 5}), 1, -6, 1); }) ==
        "narrow: start -6 is out of range for dimension 1 of size 5 (shape [2, 5])");
  CHECK(message_of<ValueError>([] { split(zeros({4}), 0); }) ==
        "split: split_size must be positive, got 0 (shape [4])");
  CHECK(message_of<ValueError>([] { chunk(zeros({4}), -1); }) ==
        "chunk: chunks must be positive, got -1 (shape [4])");
}

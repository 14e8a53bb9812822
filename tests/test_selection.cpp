// where, masked_fill, index_select, gather and embedding: values and gradients by hand (masked positions,
// repeated indices accumulating, the padding row getting exactly zero), and their index and dtype errors.
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

Tensor leaf(const std::vector<double>& values, Shape shape) {
  Tensor t = from_vector(values, std::move(shape));
  t.requires_grad_();
  return t;
}

}  // namespace

TEST_CASE("selection: where broadcasts and routes the gradient by the mask") {
  const Tensor mask = from_vector<bool>({true, false}, {2, 1});  // (2, 1)
  const Tensor a = leaf({1, 2, 3}, {3});
  const Tensor b = leaf({-1}, {});
  const Tensor out = where(mask, a, b);  // (2, 3)
  CHECK(out.shape() == Shape{2, 3});
  CHECK(out.to_vector<double>() == std::vector<double>{1, 2, 3, -1, -1, -1});
  sum(out * from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3})).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1, 2, 3});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{15});
}

TEST_CASE("selection: masked_fill fills and blocks the gradient of filled positions") {
  const Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor mask = tensor<bool>({false, true, false});  // broadcast over rows
  const Tensor out = masked_fill(x, mask, -1e9);
  CHECK(out.to_vector<double>() == std::vector<double>{1, -1e9, 3, 4, -1e9, 6});
  sum(out).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 0, 1, 1, 0, 1});
  // ids are i64: masked_fill works there too (no gradient to carry).
  CHECK(masked_fill(tensor<int64_t>({3, 4}), tensor<bool>({true, false}), 0).to_vector<int64_t>() ==
        std::vector<int64_t>{0, 4});
}

TEST_CASE("selection: index_select picks slices and accumulates repeated indices") {
  const Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor out = index_select(x, 1, tensor<int64_t>({2, 0, 2}));
  CHECK(out.shape() == Shape{2, 3});
  CHECK(out.to_vector<double>() == std::vector<double>{3, 1, 3, 6, 4, 6});
  sum(out).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 0, 2, 1, 0, 2});

  const Tensor rows = index_select(from_vector<double>({1, 2, 3, 4}, {2, 2}), 0, tensor<int64_t>({1, 1, 0}));
  CHECK(rows.to_vector<double>() == std::vector<double>{3, 4, 3, 4, 1, 2});
}

TEST_CASE("selection: gather follows PyTorch and accumulates repeated indices") {
  const Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  // out[i][j] = x[i][index[i][j]]
  const Tensor out = gather(x, 1, from_vector<int64_t>({2, 2, 0, 1}, {2, 2}));
  CHECK(out.to_vector<double>() == std::vector<double>{3, 3, 4, 5});
  sum(out).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 2, 1, 1, 0});

  // Along axis 0, with an index smaller than x in the other dimension: out[i][j] = x[index[i][j]][j].
  const Tensor y = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(gather(y, 0, from_vector<int64_t>({1, 0, 0, 1}, {2, 2})).to_vector<double>() ==
        std::vector<double>{4, 2, 1, 5});
}

TEST_CASE("selection: index_select takes i64 and bool tensors as they are, without a float in between") {
  const int64_t beyond_f64 = (int64_t{1} << 53) + 1;  // the first integer f64 cannot hold
  const Tensor ids = from_vector<int64_t>({7, beyond_f64, -3}, {3});
  const Tensor picked = index_select(ids, 0, tensor<int64_t>({1, 1, 2}));
  CHECK(picked.dtype() == DType::i64);
  CHECK(picked.to_vector<int64_t>() == std::vector<int64_t>{beyond_f64, beyond_f64, -3});
  const Tensor mask = from_vector<bool>({true, false, false, true}, {2, 2});
  const Tensor rows = index_select(mask, 0, tensor<int64_t>({1, 0}));
  CHECK(rows.dtype() == DType::boolean);
  CHECK(rows.to_vector<bool>() == std::vector<bool>{false, true, true, false});
}

TEST_CASE("selection: large index_select and gather (the multithreaded paths) count every repeat") {
  // x[b, r, c] = r, so a selected value names the row it came from.
  const int64_t B = 4, R = 100, C = 128, N = 300;
  Tensor x = reshape(arange(0.0, static_cast<double>(R), 1.0, DType::f64), {1, R, 1}) * ones({B, R, C}, DType::f64);
  x = x.detach();
  x.requires_grad_();
  std::vector<int64_t> picks(static_cast<size_t>(N));
  for (size_t i = 0; i < picks.size(); ++i) picks[i] = static_cast<int64_t>(i * 7 % 10);  // rows 0..9, 30 each
  const Tensor selected = index_select(x, 1, from_vector(picks, {N}));
  CHECK(selected.at({3, 11, 5}) == static_cast<double>(picks[11]));
  sum(selected).backward();
  CHECK(x.grad().at({2, 4, 127}) == 30.0);
  CHECK(x.grad().at({2, 10, 0}) == 0.0);

  Tensor y = x.detach();
  y.requires_grad_();
  std::vector<int64_t> rows(static_cast<size_t>(B * R * C));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i % 3);
  const Tensor gathered = gather(y, 1, from_vector(rows, {B, R, C}));  // out[b, r, c] = y[b, rows[...], c]
  CHECK(gathered.at({1, 50, 7}) == static_cast<double>(rows[static_cast<size_t>((1 * R + 50) * C + 7)]));
  sum(gathered).backward();
  double total = 0;
  for (double v : y.grad().to_vector<double>()) total += v;
  CHECK(total == static_cast<double>(B * R * C));
  CHECK(y.grad().at({0, 3, 0}) == 0.0);
}

TEST_CASE("selection: embedding looks up rows; padding_idx gets exactly zero, repeats accumulate") {
  const Tensor weight = leaf({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2});  // (V=4, D=2)
  const Tensor ids = from_vector<int64_t>({1, 3, 1, 0, 1, 2}, {2, 3});  // (B=2, T=3)
  const Tensor out = embedding(weight, ids, 0);  // (2, 3, 2)
  CHECK(out.shape() == Shape{2, 3, 2});
  CHECK(out.to_vector<double>() == std::vector<double>{10, 11, 30, 31, 10, 11, 0, 1, 10, 11, 20, 21});
  sum(out * 2.0).backward();
  CHECK(weight.grad().to_vector<double>() == std::vector<double>{0, 0, 6, 6, 2, 2, 2, 2});

  for (DType dtype : {DType::f32, DType::f64}) {
    // Large enough for the OpenMP paths of forward and backward.
    const int64_t V = 50, D = 256, N = 400;
    Tensor table = arange(0.0, static_cast<double>(V * D), 1.0, dtype);
    table = reshape(table, {V, D}).detach();
    table.requires_grad_();
    std::vector<int64_t> many(static_cast<size_t>(N));
    for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int64_t>(i % 7);
    const Tensor big = embedding(table, from_vector(many, {N}), 3);
    CHECK(big.at({13, 5}) == static_cast<double>(6 * D + 5));
    sum(big).backward();
    CHECK(table.grad().at({0, 100}) == 58.0);  // ids 0, 7, ..., 399: 58 times
    CHECK(table.grad().at({3, 0}) == 0.0);
    CHECK(table.grad().at({7, 0}) == 0.0);
  }
}

TEST_CASE("selection: indices out of range name the index and the size") {
  const Tensor ids = from_vector<int64_t>({1, 12, 3, 0, 0, 0}, {2, 3});
  CHECK(message_of<IndexError>([&] { embedding(zeros({10, 4}), ids); }) ==
        "embedding: index 12 is out of range for a table of 10 rows (ids shape [2, 3])");
  CHECK(message_of<IndexError>([] { embedding(zeros({10, 4}), tensor<int64_t>({-1})); }) ==
        "embedding: index -1 is out of range for a table of 10 rows (ids shape [1])");
  CHECK(message_of<IndexError>([] { embedding(zeros({10, 4}), tensor<int64_t>({1}), 10); }) ==
        "embedding: padding_idx 10 is out of range for a table of 10 rows (-1 for none)");
  CHECK(message_of<IndexError>([] { index_select(zeros({2, 4}), 1, tensor<int64_t>({0, 5})); }) ==
        "index_select: index 5 is out of range for axis 1 of size 4 (x shape [2, 4])");
  CHECK(message_of<IndexError>([] { gather(zeros({2, 4}), -1, from_vector<int64_t>({0, 7}, {2, 1})); }) ==
        "gather: index 7 is out of range for axis 1 of size 4 (x shape [2, 4])");
  CHECK(message_of<IndexError>([] { gather(zeros({2, 4}), 2, from_vector<int64_t>({0, 1}, {2, 1})); }) ==
        "gather: axis 2 is out of range for a tensor of rank 2 (expected -2..1)");
}

TEST_CASE("selection: masks must be bool, indices i64, shapes must fit") {
  CHECK(message_of<DTypeError>([] { where(zeros({2, 3}), zeros({2, 3}), zeros({2, 3})); }) ==
        "where: mask must be bool, got f32 [2, 3]");
  CHECK(message_of<DTypeError>([] { masked_fill(zeros({2}), arange(2), 0.0); }) ==
        "masked_fill: mask must be bool, got i64 [2]");
  CHECK(message_of<DTypeError>([] { where(tensor<bool>({true}), zeros({1}), zeros({1}, DType::f64)); }) ==
        "where: a and b have different dtypes: f32 [1] and f64 [1]");
  CHECK(message_of<DTypeError>([] { embedding(zeros({10, 4}), zeros({2, 3})); }) ==
        "embedding: ids must be i64, got f32 [2, 3]");
  CHECK(message_of<DTypeError>([] { index_select(zeros({3}), 0, tensor<double>({0.0})); }) ==
        "index_select: index must be i64, got f64 [1]");
  CHECK(message_of<DTypeError>([] { gather(zeros({3}), 0, tensor<bool>({true})); }) ==
        "gather: index must be i64, got bool [1]");
  CHECK(message_of<ShapeError>([] { masked_fill(zeros({3}), tensor<bool>({true, false, true, true}), 0.0); })
            .find("masked_fill: shapes [3] and [4] cannot be broadcast") == 0);
  CHECK(message_of<ShapeError>([] { masked_fill(zeros({3}), zeros({2, 3}, DType::boolean), 0.0); }) ==
        "masked_fill: mask [2, 3] cannot be broadcast to x [3]");
  CHECK(message_of<ShapeError>([] { embedding(zeros({10}), tensor<int64_t>({1})); }) ==
        "embedding: weight must be 2-D [V, D], got shape [10]");
  CHECK(message_of<ShapeError>([] { index_select(zeros({3}), 0, from_vector<int64_t>({0}, {1, 1})); }) ==
        "index_select: index must be 1-D, got shape [1, 1]");
  CHECK(message_of<ShapeError>([] { gather(zeros({2, 3}), 0, from_vector<int64_t>({0, 0, 0, 0}, {1, 4})); }) ==
        "gather: index shape [1, 4] exceeds x shape [2, 3] in dimension 1 (4 > 3)");
  CHECK(message_of<ShapeError>([] { gather(zeros({2, 3}), 0, tensor<int64_t>({0})); }) ==
        "gather: index has rank 1 but x has rank 2 (index shape [1], x shape [2, 3])");
}

#include "autograd/tensor.h"
#include "ops/ops.h"

#include <doctest/doctest.h>

using namespace gradformer;

TEST_CASE("tensor: creation, shape, strides, element access") {
  Tensor t = zeros({2, 3}, DType::f64);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.strides() == Shape{3, 1});
  CHECK(t.numel() == 6);
  CHECK(t.is_contiguous());
  t.set_at({1, -1}, 4.5);
  CHECK(t.at({1, 2}) == 4.5);
  CHECK_THROWS_AS(t.at({2, 0}), IndexError);
  CHECK_THROWS_AS(t.at({0}), IndexError);
  CHECK(full({2}, 7.0, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{7, 7});
  CHECK(arange(4).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(arange(0.0, 1.0, 0.25, DType::f64).to_vector<double>() == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(ones({3}).to_vector<float>() == std::vector<float>{1, 1, 1});
  CHECK(scalar_tensor(2.5, DType::f64).item() == 2.5);
  CHECK_THROWS_AS(from_vector<double>({1, 2, 3}, {2, 2}), ShapeError);
  CHECK_THROWS_AS(zeros({2, 3}).item(), ShapeError);
  CHECK_THROWS_AS(zeros({-1}), ShapeError);
}

TEST_CASE("tensor: randn and uniform are reproducible from a seed") {
  Generator a(5), b(5);
  CHECK(randn({4, 4}, a, DType::f64).to_vector<double>() == randn({4, 4}, b, DType::f64).to_vector<double>());
  const auto u = uniform({1000}, -1.0, 1.0, a).to_vector<float>();
  for (float v : u) CHECK((v >= -1.0f && v < 1.0f));
}

TEST_CASE("tensor: views share storage; contiguous copies only when needed") {
  Tensor t = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor tt = transpose(t, 0, 1);
  CHECK(tt.storage() == t.storage());
  CHECK_FALSE(tt.is_contiguous());
  CHECK(tt.at({2, 1}) == 6);
  Tensor c = tt.contiguous();
  CHECK(c.storage() != t.storage());
  CHECK(c.to_vector<double>() == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(t.contiguous().storage() == t.storage());
  Tensor r = reshape(t, {3, 2});
  CHECK(r.storage() == t.storage());
  Tensor rt = reshape(tt, {6});  // not viewable: copies
  CHECK(rt.storage() != t.storage());
  CHECK(rt.to_vector<double>() == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK_THROWS_AS(view(tt, {6}), ShapeError);
  CHECK_THROWS_AS(reshape(t, {4, -1}), ShapeError);
  CHECK(reshape(t, {-1}).shape() == Shape{6});
}

TEST_CASE("tensor: to(dtype) converts and carries the gradient back") {
  Tensor x = tensor<float>({1.5f, -2.0f}).requires_grad_();
  Tensor y = x.to(DType::f64);
  CHECK(y.dtype() == DType::f64);
  sum(y * 2.0).backward();
  CHECK(x.grad().dtype() == DType::f32);
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 2});
  CHECK(tensor<double>({2.7, -1.2}).to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{2, -1});
}

TEST_CASE("tensor: printing through fmt, truncated for big tensors") {
  Tensor t = from_vector<double>({1, 2, 3, 4}, {2, 2});
  CHECK(fmt::format("{}", t) == "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=f64)");
  CHECK(fmt::format("{}", arange(3)) == "tensor([0, 1, 2], dtype=i64)");
  Tensor x = tensor<double>({1.0}).requires_grad_();
  CHECK(fmt::format("{}", x).find("requires_grad=true") != std::string::npos);
  CHECK(fmt::format("{}", x * 2.0).find("grad_fn=mul") != std::string::npos);
  const std::string big = fmt::format("{}", zeros({100, 100}));
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.size() < 1000);
  CHECK(fmt::format("{}", scalar_tensor(3, DType::i64)) == "tensor(3, dtype=i64)");
}

TEST_CASE("tensor: the storage version moves with every writable pointer handed out, not with reads") {
  const Tensor t = zeros({4, 4});
  const Tensor view = t.as_strided({2, 2}, {4, 1}, 5);
  auto version = [&] { return t.storage()->version(); };
  uint64_t seen = version();
  auto moved = [&] {
    const bool changed = version() != seen;
    seen = version();
    return changed;
  };
  CHECK(t.data_ptr<const float>()[0] == 0.0f);
  CHECK(t.at({1, 1}) == 0.0);
  CHECK(t.to_vector<float>().size() == 16);
  CHECK_FALSE(moved());
  view.fill_(1.0);
  CHECK(moved());  // through a view: the version belongs to the shared storage
  t.set_at({0, 0}, 2.0);
  CHECK(moved());
  t.copy_(ones({4, 4}));
  CHECK(moved());
  t.data_ptr<float>()[3] = 4.0f;
  CHECK(moved());
}

// softmax, log_softmax, layer_norm and dropout: values against hand computations, the edge cases (huge
// logits, fully masked rows, constant rows), the fused layer_norm against the same formula built from basic
// ops, dropout's mask, and the errors. Gradients of every mode are checked by the op table.
#include "ops/dropout_mask.h"
#include "ops/fast_exp.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector<double>())
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("softmax of [1, 2, 3] is e^i / (e + e² + e³)") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor y = softmax(tensor<double>({1, 2, 3}).to(dtype));
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    const double tol = dtype == DType::f32 ? 1e-6 : 1e-15;
    CHECK(y.at({0}) == doctest::Approx(std::exp(1.0) / z).epsilon(tol));  // 0.09003057317038046
    CHECK(y.at({1}) == doctest::Approx(std::exp(2.0) / z).epsilon(tol));  // 0.24472847105479767
    CHECK(y.at({2}) == doctest::Approx(std::exp(3.0) / z).epsilon(tol));  // 0.6652409557748219
  }
}

TEST_CASE("softmax over a middle axis normalises each slice along that axis") {
  Generator gen(3);
  const Tensor x = randn({2, 3, 4}, gen, DType::f64);
  const Tensor y = softmax(x, 1);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 4; ++k) {
      double z = 0;
      for (int64_t j = 0; j < 3; ++j) z += std::exp(x.at({i, j, k}));
      for (int64_t j = 0; j < 3; ++j) CHECK(y.at({i, j, k}) == doctest::Approx(std::exp(x.at({i, j, k})) / z));
    }
  // The same values as moving the axis last, taking the fast path, and moving it back.
  const Tensor via_last = transpose(softmax(transpose(x, 1, 2), -1), 1, 2);
  CHECK(testing::max_abs_difference(y, via_last) < 1e-15);
}

TEST_CASE("log_softmax of [1e4, -1e4, 0] is finite and exact") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor y = log_softmax(tensor<double>({1e4, -1e4, 0}).to(dtype));
    CHECK(all_finite(y));
    // logsumexp = 1e4 + log(1 + e^-2e4 + e^-1e4) = 1e4 exactly in floating point.
    CHECK(y.at({0}) == 0.0);
    CHECK(y.at({1}) == -2e4);
    CHECK(y.at({2}) == -1e4);
    const Tensor p = softmax(tensor<double>({1e4, -1e4, 0}).to(dtype));
    CHECK(p.to_vector<double>() == std::vector<double>{1.0, 0.0, 0.0});
  }
}

TEST_CASE("a fully -inf row gives softmax zeros and log_softmax -inf, never NaN, also in backward") {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = from_vector<double>({-inf, -inf, -inf, 0.0, 1.0, 2.0}, {2, 3});
  x.requires_grad_();
  const Tensor y = softmax(x);
  for (int64_t j = 0; j < 3; ++j) CHECK(y.at({0, j}) == 0.0);
  CHECK(all_finite(y));
  y.backward(ones({2, 3}, DType::f64));
  CHECK(all_finite(x.grad()));
  const Tensor ly = log_softmax(x.detach());
  for (int64_t j = 0; j < 3; ++j) CHECK(ly.at({0, j}) == -inf);
  CHECK(std::isfinite(ly.at({1, 0})));
  // The same along a leading axis (the column-wise kernel): column 0 is entirely -inf there.
  const Tensor columns = from_vector<double>({-inf, 1, -inf, 2}, {2, 2});
  const Tensor by_column = softmax(columns, 0);
  CHECK(by_column.at({0, 0}) == 0.0);
  CHECK(by_column.at({1, 0}) == 0.0);
  CHECK(by_column.at({0, 1}) == doctest::Approx(1.0 / (1.0 + std::exp(1.0))));
  CHECK(log_softmax(columns, 0).at({1, 0}) == -inf);
}

TEST_CASE("exp_nonpositive (the f32 exp of the softmax kernels) is within 2 ulp of std::exp on [-87, 0]") {
  double worst = 0;
  for (float x = -87.f; x <= 0.f; x += 1.3e-3f) {
    const double expected = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(kernels::exp_nonpositive(x) - expected) / expected);
  }
  CHECK(worst < 2 * 5.97e-8);
  CHECK(kernels::exp_nonpositive(0.f) == 1.f);
  CHECK(kernels::exp_nonpositive(-std::numeric_limits<float>::infinity()) == 0.f);
  CHECK(kernels::exp_nonpositive(-100.f) == 0.f);
  CHECK(std::isnan(kernels::exp_nonpositive(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(kernels::exp_nonpositive(-std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("softmax backward: repeated over a retained graph is bitwise equal, zero upstream gives zeros") {
  Generator gen(5);
  Tensor x = randn({64, 700}, gen, DType::f32);  // big enough for the OpenMP path
  x.requires_grad_();
  const Tensor y = log_softmax(x);
  const Tensor dy = randn({64, 700}, gen, DType::f32);
  y.backward(dy, true);
  const std::vector<float> first = x.grad().to_vector<float>();
  x.zero_grad();
  y.backward(dy, true);
  CHECK(x.grad().to_vector<float>() == first);
  x.zero_grad();
  softmax(x).backward(zeros({64, 700}));
  CHECK(testing::max_abs(x.grad()) == 0.0);
}

TEST_CASE("layer_norm: each row has mean 0 and biased variance 1; a constant row stays finite") {
  Generator gen(7);
  const Tensor x = randn({5, 8}, gen, DType::f64) * 3.0 + 10.0;
  const Tensor y = layer_norm(x, {8}, Tensor(), Tensor(), 0.0);
  for (int64_t r = 0; r < 5; ++r) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < 8; ++j) m += y.at({r, j}) / 8;
    for (int64_t j = 0; j < 8; ++j) v += (y.at({r, j}) - m) * (y.at({r, j}) - m) / 8;
    CHECK(std::abs(m) < 1e-12);
    CHECK(v == doctest::Approx(1.0).epsilon(1e-12));
  }
  Tensor constant = full({2, 4}, 3.5, DType::f32);
  constant.requires_grad_();
  const Tensor bias = tensor<float>({0.5f, -1.f, 2.f, 0.f});
  const Tensor out = layer_norm(constant, {4}, Tensor(), bias);
  CHECK(out.to_vector<float>() == std::vector<float>{0.5f, -1.f, 2.f, 0.f, 0.5f, -1.f, 2.f, 0.f});
  out.backward(ones({2, 4}));
  CHECK(all_finite(constant.grad()));
}

TEST_CASE("layer_norm: the fused op matches the formula built from basic ops, in value and gradient") {
  Generator gen(11);
  const Tensor x0 = randn({3, 2, 4}, gen, DType::f64);
  const Tensor w0 = randn({2, 4}, gen, DType::f64);
  const Tensor b0 = randn({2, 4}, gen, DType::f64);
  const Tensor dy = randn({3, 2, 4}, gen, DType::f64);
  const double eps = 1e-5;

  auto run = [&](bool fused) {
    Tensor x = x0.clone(), w = w0.clone(), b = b0.clone();
    x.requires_grad_();
    w.requires_grad_();
    b.requires_grad_();
    Tensor y;
    if (fused) {
      y = layer_norm(x, {2, 4}, w, b, eps);
    } else {
      // No pow or rsqrt among the basic ops: 1 / sqrt(v) is taken as exp(-log(v) / 2).
      const Tensor mu = mean(x, {1, 2}, true);
      const Tensor centred = x - mu;
      const Tensor var = mean(centred * centred, {1, 2}, true);
      const Tensor rstd = exp(log(var + eps) * -0.5);
      y = centred * rstd * w + b;
    }
    y.backward(dy);
    return std::vector<Tensor>{y.detach(), x.grad(), w.grad(), b.grad()};
  };
  const auto fused = run(true), composed = run(false);
  for (size_t i = 0; i < fused.size(); ++i) {
    CAPTURE(i);
    CHECK(testing::max_abs_difference(fused[i], composed[i]) < 1e-12);
  }
}

TEST_CASE("layer_norm backward: bitwise repeatable on many rows (threaded), zero upstream gives zeros") {
  Generator gen(13);
  Tensor x = randn({256, 192}, gen, DType::f32);
  Tensor w = randn({192}, gen, DType::f32);
  Tensor b = randn({192}, gen, DType::f32);
  for (Tensor* t : {&x, &w, &b}) t->requires_grad_();
  const Tensor y = layer_norm(x, {192}, w, b);
  const Tensor dy = randn({256, 192}, gen, DType::f32);
  y.backward(dy, true);
  const auto gx = x.grad().to_vector<float>(), gw = w.grad().to_vector<float>(), gb = b.grad().to_vector<float>();
  for (Tensor* t : {&x, &w, &b}) t->zero_grad();
  y.backward(dy, true);
  CHECK(x.grad().to_vector<float>() == gx);
  CHECK(w.grad().to_vector<float>() == gw);
  CHECK(b.grad().to_vector<float>() == gb);
  for (Tensor* t : {&x, &w, &b}) t->zero_grad();
  y.backward(zeros({256, 192}), true);
  CHECK(testing::max_abs(x.grad()) == 0.0);
  CHECK(testing::max_abs(w.grad()) == 0.0);
  CHECK(testing::max_abs(b.grad()) == 0.0);
}

TEST_CASE("dropout: eval and p = 0 return the input itself") {
  Generator gen(1);
  const Tensor x = randn({4, 4}, gen);
  CHECK(dropout(x, 0.5, false, gen).is_same(x));
  CHECK(dropout(x, 0.0, true, gen).is_same(x));
}

TEST_CASE("dropout: the dropped fraction is about p, kept values are scaled, the same seed gives the same mask") {
  const double p = 0.3;
  const Tensor x = ones({100000});
  Generator gen_a(123), gen_b(123), gen_c(124);
  const Tensor a = dropout(x, p, true, gen_a);
  const Tensor b = dropout(x, p, true, gen_b);
  const Tensor c = dropout(x, p, true, gen_c);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  CHECK(a.to_vector<float>() != c.to_vector<float>());
  int64_t dropped = 0;
  for (float v : a.to_vector<float>()) {
    if (v == 0.f)
      ++dropped;
    else
      CHECK(v == doctest::Approx(1.0 / 0.7));
  }
  // Binomial standard deviation sqrt(1e5 * 0.3 * 0.7) ≈ 145: 0.3 ± 0.005 is more than 3 of them.
  CHECK(std::abs(static_cast<double>(dropped) / 1e5 - p) < 0.005);
}

TEST_CASE("dropout: the gradient is dout times the forward's mask, recomputed from its key; p = 1 gives zeros") {
  Generator gen(9);
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    Tensor x = randn({3, 50}, gen, dtype);
    x.requires_grad_();
    const Tensor dout = randn({3, 50}, gen, dtype);
    Generator mask_gen(77), same(77);
    const Tensor y = dropout(x, 0.4, true, mask_gen);
    y.backward(dout);
    // The mask, drawn from the same generator state: 0 or 1 / (1 - p) per element.
    const Tensor mask = empty({3, 50}, DType::f64);
    const std::vector<double> all_ones(150, 1.0);
    kernels::DropoutMask::draw(0.4, same).apply(all_ones.data(), mask.data_ptr<double>(), 150);
    const auto xs = x.to_vector<double>(), ys = y.to_vector<double>(), gs = x.grad().to_vector<double>();
    const auto ds = dout.to_vector<double>(), ms = mask.to_vector<double>();
    int64_t kept = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      CAPTURE(i);
      CHECK((ms[i] == 0.0 || ms[i] == doctest::Approx(1.0 / 0.6)));
      CHECK(gs[i] == doctest::Approx(ds[i] * ms[i]).epsilon(1e-6));
      CHECK(ys[i] == doctest::Approx(xs[i] * ms[i]).epsilon(1e-6));
      kept += ms[i] != 0.0;
    }
    CHECK(kept > 0);
    CHECK(kept < 150);
  }
  Tensor x = randn({3, 50}, gen, DType::f64);
  x.requires_grad_();
  const Tensor all_dropped = dropout(x, 1.0, true, gen);
  all_dropped.backward(ones({3, 50}, DType::f64));
  CHECK(testing::max_abs(all_dropped) == 0.0);
  CHECK(testing::max_abs(x.grad()) == 0.0);
}

TEST_CASE("dropout: a call draws one generator word whatever the size, eval draws none") {
  for (int64_t n : {1, 7, 100000}) {
    CAPTURE(n);
    Generator gen(4), one_word(4);
    dropout(ones({n}), 0.2, true, gen);
    one_word.next_u64();
    CHECK(gen.state() == one_word.state());
    dropout(ones({n}), 0.2, false, gen);
    CHECK(gen.state() == one_word.state());
  }
}

TEST_CASE("dropout: without a generator it draws from the thread's current one") {
  const Tensor x = ones({3, 7});
  Generator masks(5), same(5);
  Tensor guarded;
  {
    const GeneratorGuard guard(masks);
    guarded = dropout(x, 0.5, true);
  }
  CHECK(guarded.to_vector<float>() == dropout(x, 0.5, true, same).to_vector<float>());
  CHECK(masks.state() == same.state());
}

TEST_CASE("normalization errors: type and message") {
  CHECK(message_of<IndexError>([] {
          softmax(zeros({2, 3}), 2);
        }) == "softmax: axis 2 is out of range for a tensor of rank 2 (expected -2..1)");
  CHECK(message_of<DTypeError>([] { log_softmax(arange(3)); }) == "log_softmax: expects f32 or f64, got i64");
  CHECK(message_of<DTypeError>([] { layer_norm(arange(3), {3}); }) == "layer_norm: expects f32 or f64, got i64");
  CHECK(message_of<DTypeError>([] { dropout(arange(3), 0.5, true); }) == "dropout: expects f32 or f64, got i64");
  CHECK(message_of<ShapeError>([] {
          layer_norm(zeros({2, 3}), {4});
        }) == "layer_norm: normalized_shape [4] is not the trailing dimensions of the input [2, 3]");
  CHECK(message_of<ShapeError>([] {
          layer_norm(zeros({2, 3}), {3}, zeros({2}));
        }) == "layer_norm: weight has shape [2] but normalized_shape is [3]");
  CHECK(message_of<DTypeError>([] {
          layer_norm(zeros({2, 3}), {3}, Tensor(), zeros({3}, DType::f64));
        }) == "layer_norm: bias is f64 but the input is f32");
  CHECK(message_of<ValueError>([] {
          layer_norm(zeros({2, 3}), {3}, Tensor(), Tensor(), -1.0);
        }) == "layer_norm: eps must be >= 0, got -1");
  CHECK(message_of<ValueError>([] { dropout(zeros({2}), 1.5, true); }) == "dropout: p must be in [0, 1], got 1.5");
  CHECK(message_of<ValueError>([] { dropout(zeros({2}), -0.1, false); }) == "dropout: p must be in [0, 1], got -0.1");
}

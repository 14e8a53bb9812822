// cross_entropy, nll_loss and mse_loss against hand computations (numbers worked out with Python's math
// module, written below), with ignore_index, label smoothing, every reduction, the all-ignored case, repeated
// backward and the errors. Gradients of every mode are checked by the op table.
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

// Three rows of three classes; the middle target is ignored.
Tensor hand_logits() { return from_vector<double>({1, 2, 3, 1, 1, 1, 0, 0, 5}, {3, 3}); }
Tensor hand_targets() { return from_vector<int64_t>({2, -100, 0}, {3}); }

}  // namespace

TEST_CASE("cross_entropy: ignore_index and label smoothing against a hand computation") {
  // logsumexp(1, 2, 3) = 3.40760596444438, logsumexp(0, 0, 5) = 5.013385901721449.
  // ε = 0: row 0 loses 3.4076 − 3, row 2 loses 5.0134 − 0; the mean is over the two counted rows.
  const Tensor plain = cross_entropy(hand_logits(), hand_targets());
  CHECK(plain.item() == doctest::Approx(2.710495933082915).epsilon(1e-14));
  // ε = 0.1: loss = 0.9·(lse − x_t) + 0.1·(lse − mean(x)): 0.5076059644443801 and 4.846719235054783.
  Tensor logits = hand_logits();
  logits.requires_grad_();
  const Tensor smoothed = cross_entropy(logits, hand_targets(), {.label_smoothing = 0.1});
  CHECK(smoothed.item() == doctest::Approx(2.6771625997495816).epsilon(1e-14));
  smoothed.backward();
  // (softmax − 0.9·onehot − 0.1/3) / 2 on counted rows, zero on the ignored one.
  const std::vector<double> expected{
      0.02834861991852357,  0.10569756886073219,   -0.13404618877925567,  // row 0, target 2
      0,                    0,                     0,                     // row 1, ignored
      -0.46334248942723366, -0.013342489427233664, 0.47668497885446726};  // row 2, target 0
  const auto grad = logits.grad().to_vector<double>();
  for (size_t i = 0; i < expected.size(); ++i) CHECK(grad[i] == doctest::Approx(expected[i]).epsilon(1e-12));
}

TEST_CASE("cross_entropy: reductions none, sum and mean agree; smoothing skips ignored rows") {
  const Tensor none =
      cross_entropy(hand_logits(), hand_targets(), {.label_smoothing = 0.1, .reduction = Reduction::none});
  REQUIRE(none.shape() == Shape{3});
  CHECK(none.at({0}) == doctest::Approx(0.5076059644443801).epsilon(1e-14));
  CHECK(none.at({1}) == 0.0);  // ignored: no smoothing term either
  CHECK(none.at({2}) == doctest::Approx(4.846719235054783).epsilon(1e-14));
  const Tensor total =
      cross_entropy(hand_logits(), hand_targets(), {.label_smoothing = 0.1, .reduction = Reduction::sum});
  const Tensor average = cross_entropy(hand_logits(), hand_targets(), {.label_smoothing = 0.1});
  CHECK(total.item() == doctest::Approx(none.at({0}) + none.at({2})).epsilon(1e-14));
  CHECK(average.item() == doctest::Approx(total.item() / 2).epsilon(1e-14));
  // A custom ignore_index: the row with target 0 is skipped instead.
  const Tensor custom = cross_entropy(hand_logits(), from_vector<int64_t>({2, 1, 0}, {3}),
                                      {.ignore_index = 0, .reduction = Reduction::none});
  CHECK(custom.at({2}) == 0.0);
  CHECK(custom.at({1}) == doctest::Approx(std::log(3.0)).epsilon(1e-14));
}

TEST_CASE("cross_entropy: every target ignored gives 0 (PyTorch: NaN) and zero gradients") {
  Tensor logits = hand_logits();
  logits.requires_grad_();
  const Tensor loss = cross_entropy(logits, from_vector<int64_t>({-100, -100, -100}, {3}), {.label_smoothing = 0.2});
  CHECK(loss.item() == 0.0);
  loss.backward();
  CHECK(testing::max_abs(logits.grad()) == 0.0);
}

TEST_CASE("cross_entropy backward: bitwise repeatable over a retained graph; zero upstream gives zeros") {
  Generator gen(17);
  Tensor logits = randn({512, 100}, gen, DType::f32);  // over kParallelGrain elements: the threaded path
  logits.requires_grad_();
  std::vector<int64_t> t;
  for (int i = 0; i < 512; ++i) t.push_back(i % 7 == 0 ? -100 : static_cast<int64_t>(gen.below(100)));
  const Tensor targets = from_vector(t, {512});
  const Tensor loss = cross_entropy(logits, targets, {.label_smoothing = 0.1});
  loss.backward({}, true);
  const auto first = logits.grad().to_vector<float>();
  logits.zero_grad();
  loss.backward({}, true);
  CHECK(logits.grad().to_vector<float>() == first);
  logits.zero_grad();
  loss.backward(zeros({}), true);
  CHECK(testing::max_abs(logits.grad()) == 0.0);
}

TEST_CASE("nll_loss picks −log_probs[i, t_i] and matches cross_entropy on log_softmax") {
  const Tensor log_probs = log_softmax(hand_logits());
  const Tensor nll = nll_loss(log_probs, hand_targets());
  CHECK(nll.item() == doctest::Approx(2.710495933082915).epsilon(1e-14));
  const Tensor rows = nll_loss(log_probs, hand_targets(), -100, Reduction::none);
  CHECK(rows.at({1}) == 0.0);
  CHECK(nll_loss(log_probs, hand_targets(), -100, Reduction::sum).item() ==
        doctest::Approx(rows.at({0}) + rows.at({2})));
  Tensor x = from_vector<double>({0.1, 0.2, 0.3, 0.4}, {2, 2});
  x.requires_grad_();
  nll_loss(x, from_vector<int64_t>({1, 0}, {2})).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, -0.5, -0.5, 0});
}

TEST_CASE("mse_loss: mean, sum and none of (a − b)², gradient 2(a − b)/n") {
  Tensor a = tensor<double>({1, 2, 3, 4});
  const Tensor b = tensor<double>({0, 2, 5, 1});
  a.requires_grad_();
  const Tensor loss = mse_loss(a, b);  // (1 + 0 + 4 + 9) / 4
  CHECK(loss.item() == 3.5);
  CHECK(mse_loss(a, b, Reduction::sum).item() == 14.0);
  CHECK(mse_loss(a, b, Reduction::none).to_vector<double>() == std::vector<double>{1, 0, 4, 9});
  loss.backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0.5, 0, -1, 1.5});
}

TEST_CASE("loss errors: type and message") {
  CHECK(message_of<IndexError>([] {
          cross_entropy(zeros({2, 5}), from_vector<int64_t>({1, 7}, {2}));
        }) == "cross_entropy: target 7 at row 1 is out of range for 5 classes (expected 0..4 or ignore_index -100)");
  CHECK(message_of<IndexError>([] {
          nll_loss(zeros({1, 3}), from_vector<int64_t>({-1}, {1}));
        }) == "nll_loss: target -1 at row 0 is out of range for 3 classes (expected 0..2 or ignore_index -100)");
  CHECK(message_of<ShapeError>([] {
          cross_entropy(zeros({2, 3, 4}), zeros({2}, DType::i64));
        }) == "cross_entropy: expects scores of shape (N, C), got [2, 3, 4]; reshape (..., C) to (-1, C) first");
  CHECK(message_of<ShapeError>([] {
          cross_entropy(zeros({2, 3}), zeros({3}, DType::i64));
        }) == "cross_entropy: targets [3] do not match scores [2, 3]: expected [2]");
  CHECK(message_of<DTypeError>([] {
          cross_entropy(zeros({2, 3}), zeros({2}));
        }) == "cross_entropy: expects i64 class indices as targets, got f32");
  CHECK(message_of<DTypeError>([] { cross_entropy(zeros({2, 3}, DType::i64), zeros({2}, DType::i64)); }) ==
        "cross_entropy: expects f32 or f64, got i64");
  CHECK(message_of<ValueError>([] {
          cross_entropy(zeros({2, 3}), zeros({2}, DType::i64), {.label_smoothing = 1.5});
        }) == "cross_entropy: label_smoothing must be in [0, 1], got 1.5");
  CHECK(message_of<ShapeError>([] {
          mse_loss(zeros({2, 3}), zeros({3}));
        }) == "mse_loss: input [2, 3] and target [3] must have the same shape");
  CHECK(message_of<DTypeError>([] { mse_loss(zeros({2}), zeros({2}, DType::f64)); }) ==
        "mse_loss: input is f32 but target is f64");
}

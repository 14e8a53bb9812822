// The fused scaled_dot_product_attention against hand-computed numbers and against the same formula built from
// basic ops (matmul, transpose, exp, sum), in value and gradient; masks, fully masked rows, dropout and the
// errors with their messages. Its GEMM paths against the reference kernel are in test_matmul.cpp.
#include "ops/gemm.h"
#include "ops/ops.h"
#include "tests/op_helpers.h"

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>

using namespace gradformer;
using gradformer::testing::message_of;
using testing::check_close;
using testing::max_abs_difference;
using testing::value_and_grads;

namespace {

// The composed reference: softmax(q·kᵀ·scale + additive) · v with softmax as exp / sum (no row here is fully
// masked, and the scores are small, so no max subtraction is needed).
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive, double scale) {
  const Tensor scores = matmul(q, transpose(k, -1, -2)) * scale + additive;  // (B, H, T, S)
  const Tensor e = exp(scores);
  return matmul(e / sum(e, {-1}, true), v);
}

// An additive [B, H, T, S] mask filled by allowed(b, h, i, j): 0 where allowed, -inf elsewhere.
Tensor additive_mask(Shape shape, const std::function<bool(int64_t, int64_t, int64_t, int64_t)>& allowed) {
  Tensor mask = zeros(shape, DType::f64);
  for (int64_t b = 0; b < shape[0]; ++b)
    for (int64_t h = 0; h < shape[1]; ++h)
      for (int64_t i = 0; i < shape[2]; ++i)
        for (int64_t j = 0; j < shape[3]; ++j)
          if (!allowed(b, h, i, j)) mask.set_at({b, h, i, j}, -std::numeric_limits<double>::infinity());
  return mask;
}

bool all_finite(const Tensor& t) {
  for (double x : t.to_vector<double>())
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace

TEST_CASE("attention: a hand-computed single query") {
  // q = [1, 0], keys [1, 0] and [0, 1], scale 1: scores [1, 0], weights [e, 1] / (e + 1).
  const Tensor q = from_vector<double>({1, 0}, {1, 1, 1, 2});
  const Tensor k = from_vector<double>({1, 0, 0, 1}, {1, 1, 2, 2});
  const Tensor v = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  const AttentionResult r = scaled_dot_product_attention(q, k, v, {.scale = 1.0, .need_weights = true});
  const double e = std::exp(1.0), w0 = e / (e + 1), w1 = 1 / (e + 1);
  const auto out = r.output.to_vector<double>();
  CHECK(out[0] == doctest::Approx(w0 * 1 + w1 * 3));
  CHECK(out[1] == doctest::Approx(w0 * 2 + w1 * 4));
  CHECK(r.weights.to_vector<double>()[0] == doctest::Approx(w0));
  // Default scale 1 / sqrt(D): the same as passing it.
  const Tensor by_default = scaled_dot_product_attention(q, k, v).output;
  const Tensor explicit_scale = scaled_dot_product_attention(q, k, v, {.scale = 1 / std::sqrt(2.0)}).output;
  CHECK(max_abs_difference(by_default, explicit_scale) == 0.0);
}

TEST_CASE("attention: the f32 softmax agrees with f64 over scores spanning a wide range") {
  Generator gen(17);
  const Tensor q = randn({2, 2, 8, 4}, gen, DType::f64), k = randn({2, 2, 40, 4}, gen, DType::f64);
  const Tensor v = randn({2, 2, 40, 3}, gen, DType::f64);
  for (double scale : {0.01, 1.0, 10.0, 40.0}) {  // scores from about ±0.05 to beyond ±100
    CAPTURE(scale);
    const AttentionOptions options{.scale = scale, .need_weights = true};
    const AttentionResult r32 = scaled_dot_product_attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), options);
    const AttentionResult r64 = scaled_dot_product_attention(q.to(DType::f32).to(DType::f64),
                                                             k.to(DType::f32).to(DType::f64),
                                                             v.to(DType::f32).to(DType::f64), options);
    CHECK(max_abs_difference(r32.weights, r64.weights) <= 1e-6 * (1 + scale));
    CHECK(max_abs_difference(r32.output, r64.output) <= 1e-5 * (1 + scale));
  }
}

TEST_CASE("attention: causal equals the composition of basic ops, in value and gradient") {
  Generator gen(11);
  for (const auto& [t, s] : {std::pair<int64_t, int64_t>{4, 4}, {3, 5}, {5, 3}}) {
    CAPTURE(t);
    CAPTURE(s);
    const Tensor q = randn({2, 3, t, 4}, gen, DType::f64), k = randn({2, 3, s, 4}, gen, DType::f64);
    const Tensor v = randn({2, 3, s, 2}, gen, DType::f64), r = randn({2, 3, t, 2}, gen, DType::f64);
    const Tensor causal = additive_mask({1, 1, t, s}, [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; });
    const auto fused = value_and_grads(
        [](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {.causal = true}).output; },
        {q, k, v}, r);
    const auto composed = value_and_grads(
        [&](const auto& in) { return composed_attention(in[0], in[1], in[2], causal, 0.5); }, {q, k, v}, r);
    check_close(fused, composed, 1e-12);
  }
}

TEST_CASE("attention: split heads (a transposed [B, T, H, D] view) give the same values and gradients in f32") {
  Generator gen(5);
  const Tensor q = transpose(randn({2, 4, 3, 8}, gen), 1, 2), k = transpose(randn({2, 6, 3, 8}, gen), 1, 2);
  const Tensor v = transpose(randn({2, 6, 3, 5}, gen), 1, 2), r = randn({2, 3, 4, 5}, gen);
  auto attend = [](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2]).output; };
  const auto strided = value_and_grads(attend, {q, k, v}, r);
  const auto dense = value_and_grads(attend, {q.contiguous(), k.contiguous(), v.contiguous()}, r);
  check_close(strided, dense, 1e-5);
  const auto in64 = value_and_grads(attend, {q.to(DType::f64), k.to(DType::f64), v.to(DType::f64)}, r.to(DType::f64));
  check_close(strided, in64, 1e-4);
}

TEST_CASE("attention: heads split from one projection take a product call per head, not per batch element") {
  // As MultiheadAttention splits them: q, k and v are views into one [B, T, 3·H·D] projection, whose heads do
  // not nest into a single batch stride. Each GEMM that reads one of them is one call per head (2 here) over
  // the 5 batch elements: both of forward's, and three of backward's four (dV = P'ᵀ·dO reads none, one call).
  Generator gen(7);
  const int64_t batches = 5, steps = 3, heads = 2, size = 4;
  const Tensor projection = randn({batches, steps, 3 * heads * size}, gen), r = randn({batches, heads, steps, size}, gen);
  auto heads_of = [&](int64_t part) {  // (B, H, T, D)
    const Tensor columns = narrow(projection, 2, part * heads * size, heads * size);
    return transpose(reshape(columns, {batches, steps, heads, size}), 1, 2);
  };
  auto products = [] {
    int64_t total = 0;
    for (auto backend : {gemm::Backend::reference, gemm::Backend::blas, gemm::Backend::onednn, gemm::Backend::onednn_bf16})
      total += gemm::products_run_on(backend);
    return total;
  };
  auto attend = [](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2]).output; };
  const int64_t before = products();
  const auto split = value_and_grads(attend, {heads_of(0), heads_of(1), heads_of(2)}, r);
  CHECK(products() - before == 5 * heads + 1);
  const auto dense = value_and_grads(attend, {heads_of(0).contiguous(), heads_of(1).contiguous(), heads_of(2).contiguous()}, r);
  check_close(split, dense, 1e-6);
}

TEST_CASE("attention: k and v expanded over the heads (stride 0) equal their dense copies") {
  Generator gen(6);
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    const Tensor q = randn({2, 4, 3, 5}, gen, dtype), r = randn({2, 4, 3, 2}, gen, dtype);
    const Tensor k1 = randn({2, 1, 6, 5}, gen, dtype), v1 = randn({2, 1, 6, 2}, gen, dtype);
    const Tensor k = k1.as_strided({2, 4, 6, 5}, {30, 0, 5, 1}, 0), v = v1.as_strided({2, 4, 6, 2}, {12, 0, 2, 1}, 0);
    auto attend = [](const auto& in) {
      return scaled_dot_product_attention(in[0], in[1], in[2], {.causal = true}).output;
    };
    check_close(value_and_grads(attend, {q, k, v}, r), value_and_grads(attend, {q, k.contiguous(), v.contiguous()}, r),
                dtype == DType::f64 ? 1e-12 : 1e-5);
  }
}

TEST_CASE("attention: key_padding_mask and attn_mask (bool and float) equal the composition") {
  Generator gen(12);
  const Tensor q = randn({2, 2, 3, 4}, gen, DType::f64), k = randn({2, 2, 5, 4}, gen, DType::f64);
  const Tensor v = randn({2, 2, 5, 3}, gen, DType::f64), r = randn({2, 2, 3, 3}, gen, DType::f64);
  const double scale = 0.5;

  SUBCASE("key_padding_mask: true = padding") {
    const Tensor padding = from_vector<bool>({false, false, false, true, true, false, true, false, false, true}, {2, 5});
    const Tensor additive = additive_mask({2, 1, 3, 5}, [&](int64_t b, int64_t, int64_t, int64_t j) {
      return !padding.to_vector<bool>()[static_cast<size_t>(b * 5 + j)];
    });
    const auto fused = value_and_grads(
        [&](const auto& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], {.key_padding_mask = padding}).output;
        },
        {q, k, v}, r);
    check_close(fused, value_and_grads([&](const auto& in) { return composed_attention(in[0], in[1], in[2], additive, scale); },
                                       {q, k, v}, r),
                1e-12);
  }
  SUBCASE("bool attn_mask: true = takes part, [T, S] broadcast, combined with causal") {
    const Tensor take_part = from_vector<bool>(
        {true, false, true, true, false, false, true, true, true, true, true, true, false, true, false}, {3, 5});
    const Tensor additive = additive_mask({1, 1, 3, 5}, [&](int64_t, int64_t, int64_t i, int64_t j) {
      return take_part.to_vector<bool>()[static_cast<size_t>(i * 5 + j)] && j <= i;
    });
    const auto fused = value_and_grads(
        [&](const auto& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], {.attn_mask = take_part, .causal = true}).output;
        },
        {q, k, v}, r);
    check_close(fused, value_and_grads([&](const auto& in) { return composed_attention(in[0], in[1], in[2], additive, scale); },
                                       {q, k, v}, r),
                1e-12);
  }
  SUBCASE("float attn_mask: added to the scores, per batch [B, 1, T, S]") {
    Tensor bias = randn({2, 1, 3, 5}, gen, DType::f64);
    bias.set_at({1, 0, 2, 4}, -std::numeric_limits<double>::infinity());
    const auto fused = value_and_grads(
        [&](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {.attn_mask = bias}).output; },
        {q, k, v}, r);
    check_close(fused, value_and_grads([&](const auto& in) { return composed_attention(in[0], in[1], in[2], bias, scale); },
                                       {q, k, v}, r),
                1e-12);
  }
}

TEST_CASE("attention: a fully masked row gives zeros and zero gradients, never NaN") {
  Generator gen(13);
  const Tensor q = randn({1, 2, 3, 4}, gen, DType::f64), k = randn({1, 2, 3, 4}, gen, DType::f64);
  const Tensor v = randn({1, 2, 3, 2}, gen, DType::f64), r = randn({1, 2, 3, 2}, gen, DType::f64);
  // Query 1 may see nothing; the others see something.
  const Tensor take_part = from_vector<bool>({true, false, true, false, false, false, true, true, true}, {3, 3});
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    const auto result = value_and_grads(
        [&](const auto& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], {.attn_mask = take_part, .need_weights = true})
              .output;
        },
        {q.to(dtype), k.to(dtype), v.to(dtype)}, r.to(dtype));
    for (const Tensor& t : result) CHECK(all_finite(t));
    const Tensor& out = result[0];
    const Tensor& dq = result[1];
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t c = 0; c < 2; ++c) CHECK(out.at({0, h, 1, c}) == 0.0);
      for (int64_t c = 0; c < 4; ++c) CHECK(dq.at({0, h, 1, c}) == 0.0);
    }
    const Tensor weights =
        scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), {.attn_mask = take_part, .need_weights = true})
            .weights;
    for (int64_t j = 0; j < 3; ++j) CHECK(weights.at({0, 1, 1, j}) == 0.0);
  }
}

TEST_CASE("attention: an all-padding sequence leaves the others' gradients exactly as without it") {
  Generator gen(14);
  const Tensor q0 = randn({1, 2, 3, 4}, gen, DType::f64), k0 = randn({1, 2, 5, 4}, gen, DType::f64);
  const Tensor v0 = randn({1, 2, 5, 3}, gen, DType::f64), r0 = randn({1, 2, 3, 3}, gen, DType::f64);
  const Tensor pad0 = from_vector<bool>({false, false, false, true, true}, {1, 5});
  // The batch of two: sequence 0 as above, sequence 1 random and all padding.
  auto with_second = [&gen](const Tensor& first) {
    Shape shape = first.shape();
    shape[0] = 2;
    Tensor both = randn(shape, gen, DType::f64);
    both.as_strided(first.shape(), both.strides(), 0).copy_(first);
    return both;
  };
  const Tensor q = with_second(q0), k = with_second(k0), v = with_second(v0), r = with_second(r0);
  const Tensor padding = from_vector<bool>({false, false, false, true, true, true, true, true, true, true}, {2, 5});

  auto attend = [](const Tensor& mask) {
    return [mask](const std::vector<Tensor>& in) {
      return scaled_dot_product_attention(in[0], in[1], in[2], {.key_padding_mask = mask}).output;
    };
  };
  const auto alone = value_and_grads(attend(pad0), {q0, k0, v0}, r0);
  const auto batched = value_and_grads(attend(padding), {q, k, v}, r);
  for (size_t i = 0; i < alone.size(); ++i) {
    CAPTURE(i);
    const Tensor& full = batched[i];
    const Tensor first = full.as_strided(alone[i].shape(), full.strides(), full.offset());
    const Tensor second = full.as_strided(alone[i].shape(), full.strides(), full.offset() + full.strides()[0]);
    CHECK(max_abs_difference(first, alone[i]) == 0.0);
    CHECK(testing::max_abs(second) == 0.0);  // the padded sequence: zero output, zero gradients
  }
}

TEST_CASE("attention: dropout is deterministic for a seed and matches its expectation") {
  Generator gen(15);
  const Tensor q = randn({2, 2, 4, 3}, gen), k = randn({2, 2, 6, 3}, gen), v = randn({2, 2, 6, 2}, gen);
  auto run = [&](uint64_t seed) {
    Generator dropout_gen(seed);
    return scaled_dot_product_attention(q, k, v, {.dropout = 0.5, .generator = &dropout_gen, .need_weights = true});
  };
  const AttentionResult a = run(42), b = run(42), c = run(43);
  CHECK(max_abs_difference(a.output, b.output) == 0.0);
  CHECK(max_abs_difference(a.output, c.output) > 0.0);
  // The weights are returned before dropout: the same for every seed, each row summing to 1.
  CHECK(max_abs_difference(a.weights, c.weights) == 0.0);
  const Tensor plain = scaled_dot_product_attention(q, k, v).output;
  CHECK(max_abs_difference(a.output, plain) > 0.0);

  // Gradients replay the same mask: twice the same.
  auto grads = [&](uint64_t seed) {
    Generator dropout_gen(seed);
    return value_and_grads(
        [&](const auto& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], {.dropout = 0.3, .generator = &dropout_gen}).output;
        },
        {q, k, v}, ones({2, 2, 4, 2}));
  };
  check_close(grads(7), grads(7), 0.0);
}

TEST_CASE("attention: dropout drops what the dropout op drops for the same generator state, current by default") {
  // q = k = 0 makes every weight 1/S, and v = I (S = Dv) copies the dropped weights into the output, so
  // S · output is the dropout of a [B, H, T, S] tensor of ones.
  const int64_t B = 2, H = 3, T = 4, S = 5;
  std::vector<float> identity(static_cast<size_t>(B * H * S * S), 0.f);
  for (int64_t m = 0; m < B * H; ++m)
    for (int64_t s = 0; s < S; ++s) identity[static_cast<size_t>((m * S + s) * S + s)] = 1.f;
  const Tensor q = zeros({B, H, T, 2}), k = zeros({B, H, S, 2}), v = from_vector(identity, {B, H, S, S});
  Generator masks(21), same(21);
  Tensor attended;
  {
    const GeneratorGuard guard(masks);  // no .generator given: the thread's current one
    attended = scaled_dot_product_attention(q, k, v, {.dropout = 0.3}).output;
  }
  const Tensor expected = dropout(ones({B, H, T, S}), 0.3, true, same);
  CHECK(max_abs_difference(attended * static_cast<double>(S), expected) < 1e-5);
  CHECK(masks.state() == same.state());  // the same number of draws
}

TEST_CASE("attention: dropout's gradients are the composed formula's with the dropout op on the same mask") {
  // dP = dP' · mask, so every gradient agrees with softmax → dropout op → matmul built from the same generator
  // state: backward recomputes the mask forward used.
  Generator gen(18);
  const int64_t B = 2, H = 2, T = 5, S = 7;
  const Tensor q = randn({B, H, T, 3}, gen, DType::f64), k = randn({B, H, S, 3}, gen, DType::f64);
  const Tensor v = randn({B, H, S, 4}, gen, DType::f64), weights = randn({B, H, T, 4}, gen, DType::f64);
  const double scale = 1 / std::sqrt(3.0);
  auto fused = [&](const std::vector<Tensor>& in) {
    Generator masks(31);
    return scaled_dot_product_attention(in[0], in[1], in[2], {.dropout = 0.4, .generator = &masks}).output;
  };
  auto composed = [&](const std::vector<Tensor>& in) {
    Generator masks(31);
    const Tensor e = exp(matmul(in[0], transpose(in[1], -1, -2)) * scale);  // (B, H, T, S)
    return matmul(dropout(e / sum(e, {-1}, true), 0.4, true, masks), in[2]);
  };
  const std::vector<Tensor> got = value_and_grads(fused, {q, k, v}, weights);
  check_close(got, value_and_grads(composed, {q, k, v}, weights), 1e-12);
  // And dropout did drop: the result differs from attention without it.
  CHECK(max_abs_difference(got[0], scaled_dot_product_attention(q, k, v).output) > 0.1);
}

TEST_CASE("attention: need_weights returns rows summing to 1, without gradient") {
  Generator gen(16);
  const Tensor q = randn({2, 3, 4, 5}, gen).requires_grad_(), k = randn({2, 3, 6, 5}, gen).requires_grad_();
  const Tensor v = randn({2, 3, 6, 2}, gen).requires_grad_();
  const Tensor padding = from_vector<bool>(
      {false, false, false, false, true, true, false, true, false, false, false, false}, {2, 6});
  const AttentionResult r =
      scaled_dot_product_attention(q, k, v, {.key_padding_mask = padding, .causal = true, .need_weights = true});
  REQUIRE(r.weights.shape() == Shape{2, 3, 4, 6});
  CHECK_FALSE(r.weights.requires_grad());
  CHECK(r.output.requires_grad());
  const Tensor row_sums = sum(r.weights, {-1});
  for (double s : row_sums.to_vector<double>()) CHECK(s == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(r.weights.at({0, 0, 0, 1}) == 0.0);  // causal
  CHECK(r.weights.at({1, 2, 3, 1}) == 0.0);  // padding
  CHECK_FALSE(scaled_dot_product_attention(q, k, v).weights.defined());
}

TEST_CASE("attention: errors name the shapes, dtypes and values") {
  const Tensor q = zeros({2, 3, 4, 5}), k = zeros({2, 3, 6, 5}), v = zeros({2, 3, 6, 7});
  const std::string op = "scaled_dot_product_attention: ";
  CHECK(message_of<ShapeError>([&] { scaled_dot_product_attention(q, zeros({2, 3, 6, 4}), v); }) ==
        op + "q [2, 3, 4, 5] and k [2, 3, 6, 4]: head dimensions 5 and 4 differ");
  CHECK(message_of<ShapeError>([&] { scaled_dot_product_attention(q, zeros({2, 2, 6, 5}), v); }) ==
        op + "q [2, 3, 4, 5], k [2, 2, 6, 5], v [2, 3, 6, 7]: batch and head sizes [B, H] differ");
  CHECK(message_of<ShapeError>([&] { scaled_dot_product_attention(q, k, zeros({1, 3, 6, 7})); }) ==
        op + "q [2, 3, 4, 5], k [2, 3, 6, 5], v [1, 3, 6, 7]: batch and head sizes [B, H] differ");
  CHECK(message_of<ShapeError>([&] { scaled_dot_product_attention(q, k, zeros({2, 3, 5, 7})); }) ==
        op + "k [2, 3, 6, 5] and v [2, 3, 5, 7]: key lengths 6 and 5 differ");
  CHECK(message_of<ShapeError>([&] { scaled_dot_product_attention(zeros({3, 4, 5}), k, v); }) ==
        op + "q [3, 4, 5], k [2, 3, 6, 5], v [2, 3, 6, 7]: expected 4-D [B, H, T, D], [B, H, S, D], [B, H, S, Dv]");
  CHECK(message_of<DTypeError>([&] { scaled_dot_product_attention(q, k.to(DType::f64), v); }) ==
        op + "q f32, k f64, v f32: dtypes differ");
  CHECK(message_of<ShapeError>([&] {
          scaled_dot_product_attention(q, k, v, {.attn_mask = ones({6, 4}, DType::boolean)});
        }) == op + "attn_mask [6, 4] does not fit scores [2, 3, 4, 6]: expected [T, S] or [B|1, H|1, T, S]");
  CHECK(message_of<ShapeError>([&] {
          scaled_dot_product_attention(q, k, v, {.attn_mask = ones({2, 2, 4, 6}, DType::boolean)});
        }) == op + "attn_mask [2, 2, 4, 6] does not fit scores [2, 3, 4, 6]: expected [T, S] or [B|1, H|1, T, S]");
  CHECK(message_of<DTypeError>([&] { scaled_dot_product_attention(q, k, v, {.attn_mask = zeros({4, 6}, DType::f64)}); }) ==
        op + "attn_mask must be bool or f32 (the dtype of q), got f64");
  CHECK(message_of<DTypeError>([&] {
          scaled_dot_product_attention(q, k, v, {.key_padding_mask = zeros({2, 6})});
        }) == op + "key_padding_mask must be bool (true = padding), got f32");
  CHECK(message_of<ShapeError>([&] {
          scaled_dot_product_attention(q, k, v, {.key_padding_mask = ones({2, 4}, DType::boolean)});
        }) == op + "key_padding_mask [2, 4] does not fit k [2, 3, 6, 5]: expected [B, S] = [2, 6]");
  CHECK(message_of<ValueError>([&] { scaled_dot_product_attention(q, k, v, {.dropout = 1.0}); }) ==
        op + "dropout 1 is outside [0, 1)");
}

// AutocastGuard (ops/autocast.h): its scope and nesting; backward products in the precision their forward
// ran in; gradients through a Transformer under autocast against f32 and against rounding its inputs only; bf16 training deterministic for a seed;
// the cache of weights' bf16 roundings and its invalidation by in-place writes; linear's input saved in bf16.
// The per-op tolerances against f32 and the reference are in test_matmul.cpp, beside the other GEMM paths.
#include "autograd/engine.h"
#include "nn/flat_parameters.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "ops/autocast_products.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <cmath>
#include <functional>

using namespace gradformer;
using gradformer::testing::message_of;

namespace {

int64_t bf16_products() { return gemm::products_run_on(gemm::Backend::onednn_bf16); }

// ‖got − expected‖ / ‖expected‖, the 2-norm error the bf16 tolerances are stated in.
double relative_error(const Tensor& got, const Tensor& expected) {
  const Tensor error = got - expected;
  return std::sqrt(sum(error * error).item() / sum(expected * expected).item());
}

// A Transformer with one encoder and one decoder layer whose projections and feed-forward products are large
// enough (192 and 160 tokens x 128 x 128 and up) for autocast to run them in bf16. Dropout as given.
struct TinyTransformer {
  Generator gen;
  nn::Transformer model;
  Tensor src, tgt, weights;
  explicit TinyTransformer(double dropout)
      : gen(7),
        model({.layer = {.d_model = 128, .nhead = 4, .dim_feedforward = 256, .dropout = dropout},
               .num_encoder_layers = 1,
               .num_decoder_layers = 1},
              gen) {
    src = randn({8, 24, 128}, gen);
    tgt = randn({8, 20, 128}, gen);
    weights = randn({8, 20, 128}, gen);
  }
  // sum(out · R) and every parameter's gradient, by name order.
  std::pair<double, std::vector<Tensor>> loss_and_grads() {
    for (const Tensor& p : model.parameters()) p.zero_grad();
    const GeneratorGuard dropout_stream(gen);  // dropout draws from this model's own stream, as the trainer's does
    const Tensor loss = sum(model.forward(src, tgt) * weights);
    loss.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : model.parameters()) grads.push_back(p.grad().clone());
    return {loss.item(), grads};
  }
};

}  // namespace

TEST_CASE("AutocastGuard: scoped, nested, thread-local; only f32 and bf16") {
  CHECK(autocast_dtype() == DType::f32);
  {
    AutocastGuard outer(DType::bf16);
    CHECK(autocast_dtype() == DType::bf16);
    {
      AutocastGuard off(DType::f32);
      CHECK(autocast_dtype() == DType::f32);
    }
    CHECK(autocast_dtype() == DType::bf16);
  }
  CHECK(autocast_dtype() == DType::f32);
  CHECK(message_of<DTypeError>([] { AutocastGuard guard(DType::f64); }) ==
        "autocast: runs products in bf16 (or f32 to turn it off), not f64");
}

TEST_CASE("autocast: a product recorded under the guard runs its backward products in bf16 outside it") {
  Generator gen(3);
  Tensor x = randn({160, 128}, gen), w = randn({128, 128}, gen);
  x.requires_grad_();
  w.requires_grad_();
  Tensor y;
  {
    AutocastGuard autocast(DType::bf16);
    y = linear(x, w);
  }
  const int64_t before = bf16_products();
  sum(y).backward();
  CHECK(bf16_products() - before == 2);  // dx and dW
  // And a product recorded without the guard stays f32 in backward even when backward runs under it.
  const Tensor z = linear(x, w);
  AutocastGuard autocast(DType::bf16);
  const int64_t again = bf16_products();
  sum(z).backward();
  CHECK(bf16_products() == again);
}

TEST_CASE("autocast: a Transformer's gradients under bf16 are within 8% of f32's, and of the error bf16 inputs alone make") {
  // The loss sum(out · R) cancels heavily (20,480 terms of mean size ~0.6 sum to ~110), so its gradients are
  // sensitive: merely rounding src and tgt to bf16, all else f32, moves them by up to 3% (relative 2-norm).
  // Autocast rounds every product's operands; it may move them by at most 3x that (2.2x measured), and never by
  // more than 8% (4% measured).
  TinyTransformer f32_run(0.0);
  const auto [f32_loss, f32_grads] = f32_run.loss_and_grads();
  TinyTransformer rounded_inputs(0.0);
  rounded_inputs.src = rounded_inputs.src.to(DType::bf16).to(DType::f32);
  rounded_inputs.tgt = rounded_inputs.tgt.to(DType::bf16).to(DType::f32);
  const std::vector<Tensor> input_rounding_grads = rounded_inputs.loss_and_grads().second;
  TinyTransformer bf16_run(0.0);
  const int64_t before = bf16_products();
  std::pair<double, std::vector<Tensor>> bf16;
  {
    AutocastGuard autocast(DType::bf16);
    bf16 = bf16_run.loss_and_grads();
  }
  CHECK(bf16_products() - before > 20);
  const auto& [bf16_loss, bf16_grads] = bf16;
  CHECK(std::abs(bf16_loss - f32_loss) <= 0.05 * std::abs(f32_loss));
  REQUIRE(bf16_grads.size() == f32_grads.size());
  for (size_t i = 0; i < f32_grads.size(); ++i) {
    CAPTURE(i);
    const double autocast_error = relative_error(bf16_grads[i], f32_grads[i]);
    CHECK(autocast_error <= 0.08);
    CHECK(autocast_error <= 3 * relative_error(input_rounding_grads[i], f32_grads[i]) + 1e-4);
    // Model weights and their gradients stay f32 under autocast: only the products' operands were rounded.
    CHECK(bf16_grads[i].dtype() == DType::f32);
  }
  for (const Tensor& p : bf16_run.model.parameters()) CHECK(p.dtype() == DType::f32);
}

TEST_CASE("autocast: bf16 training is deterministic for a seed and thread count (dropout included)") {
  TinyTransformer first(0.1), second(0.1);
  AutocastGuard autocast(DType::bf16);
  const auto [first_loss, first_grads] = first.loss_and_grads();
  const auto [second_loss, second_grads] = second.loss_and_grads();
  CHECK(first_loss == second_loss);
  for (size_t i = 0; i < first_grads.size(); ++i) CHECK(testing::max_abs_difference(first_grads[i], second_grads[i]) == 0.0);
}

namespace {

// linear(x, w) under autocast with a private copy of w, which the weight cache has never seen: what a product
// reading w's current values must give, bit for bit.
std::vector<float> linear_on_fresh_copy(const Tensor& x, const Tensor& w) {
  const NoGradGuard no_grad;
  AutocastGuard autocast(DType::bf16);
  return linear(x, w.detach().clone()).to_vector<float>();
}

}  // namespace

TEST_CASE("autocast: a weight's bf16 rounding is made once, and made again after any in-place write") {
  Generator gen(11);
  const Tensor x = randn({160, 128}, gen);
  Tensor w = randn({128, 128}, gen);
  w.requires_grad_();
  AutocastGuard autocast(DType::bf16);
  const Tensor first = autocast::cached_bf16_weight(w.detach());
  CHECK(first.dtype() == DType::bf16);
  CHECK(autocast::cached_bf16_weight(w.detach()).storage() == first.storage());  // reused, not rounded again
  CHECK(first.to(DType::f32).to_vector<float>() == w.to(DType::bf16).to(DType::f32).to_vector<float>());

  // Every way of writing a weight in place: the optimizer, copy_, fill_, set_at, a typed pointer.
  const std::vector<std::pair<const char*, std::function<void()>>> writes{
      {"SGD step",
       [&] {
         sum(linear(x, w)).backward();
         optim::SGD sgd({w}, {.lr = 0.5});
         sgd.step();
       }},
      {"copy_", [&] { w.detach().copy_(randn({128, 128}, gen)); }},
      {"fill_", [&] { w.detach().fill_(0.25); }},
      {"set_at", [&] { w.detach().set_at({3, 5}, -7.0); }},
      {"data_ptr", [&] { w.data_ptr<float>()[130] = 9.0f; }},
  };
  for (const auto& [how, write] : writes) {
    CAPTURE(how);
    const std::vector<float> before = linear(x, w).to_vector<float>();
    write();
    const std::vector<float> after = linear(x, w).to_vector<float>();
    CHECK(after == linear_on_fresh_copy(x, w));
    CHECK(after != before);
  }
  // Reading a weight does not count as writing it.
  const Tensor cached = autocast::cached_bf16_weight(w.detach());
  CHECK(w.data_ptr<const float>()[0] == w.to_vector<float>()[0]);
  CHECK(autocast::cached_bf16_weight(w.detach()).storage() == cached.storage());
  CHECK(message_of<DTypeError>([] { autocast::cached_bf16_weight(zeros({4})); }) == "gemm: rounds f32 matrices to bf16, got f32 [4]");
}

TEST_CASE("autocast: without gradients the cache keeps a weight's rounding; with them, only while it is held") {
  Generator gen(12);
  const Tensor x = randn({8, 256}, gen);
  Tensor w = randn({512, 256}, gen);
  w.requires_grad_();
  AutocastGuard autocast(DType::bf16);
  {
    // Decoding: each step's linear drops the rounding after its product, and the next step finds it again.
    const NoGradGuard decoding;
    const std::weak_ptr<TensorImpl> kept = autocast::cached_bf16_weight(w.detach()).impl_ptr();
    (void)linear(x, w);
    CHECK(!kept.expired());
    CHECK(autocast::cached_bf16_weight(w.detach()).impl_ptr() == kept.lock());
    // Writing the weight renews the rounding, and the old one is let go on the next rounding made.
    w.detach().fill_(0.5);
    const Tensor renewed = autocast::cached_bf16_weight(w.detach());
    CHECK(renewed.to(DType::f32).to_vector<float>() == std::vector<float>(512 * 256, 0.5f));
  }
  // Training: the rounding lives only while something holds it, so no bf16 copy outlasts a step.
  std::weak_ptr<TensorImpl> trained;
  {
    const Tensor y = linear(x, w);  // the graph holds the rounding for backward
    sum(y).backward();
    w.detach().fill_(0.25);  // the optimizer's step
    const Tensor rounding = autocast::cached_bf16_weight(w.detach());
    trained = rounding.impl_ptr();
  }
  CHECK(trained.expired());
}

TEST_CASE("autocast: linear saves its input's bf16 rounding for dW, and its gradients stay within bf16 tolerance") {
  Generator gen(5);
  Tensor x = randn({160, 128}, gen), w = randn({192, 128}, gen);
  x.requires_grad_();
  w.requires_grad_();
  const Tensor dy = randn({160, 192}, gen);
  auto grads = [&](bool overwrite_x_after_forward) {
    x.zero_grad();
    w.zero_grad();
    Tensor y;
    {
      AutocastGuard autocast(DType::bf16);
      y = linear(x, w);
    }
    const Tensor kept = x.detach().clone();
    if (overwrite_x_after_forward) x.detach().fill_(100.0);
    y.backward(dy);
    x.detach().copy_(kept);
    return std::pair{x.grad().clone(), w.grad().clone()};
  };
  const auto [dx, dw] = grads(false);
  // dW reads what the forward saved, a bf16 copy of x, not x's storage: overwriting x between forward and
  // backward changes nothing (with x itself saved, as in f32, dW would follow the new values).
  const auto [dx_again, dw_after_overwrite] = grads(true);
  CHECK(testing::max_abs_difference(dw_after_overwrite, dw) == 0.0);
  CHECK(testing::max_abs_difference(dx_again, dx) == 0.0);
  // And that copy is x rounded to bf16: dW = dyᵀ · round(x), with dy rounded as the bf16 product does.
  auto rounded = [](const Tensor& t) { return t.detach().to(DType::bf16).to(DType::f32); };
  CHECK(relative_error(dw, matmul(transpose(rounded(dy), 0, 1), rounded(x))) <= 1e-6);
  // Within bf16 tolerance of f32 (relative 2-norm, as the other bf16 tests state it).
  x.zero_grad();
  w.zero_grad();
  linear(x, w).backward(dy);
  CHECK(relative_error(dw, w.grad()) <= 1e-2);
  CHECK(relative_error(dx, x.grad()) <= 1e-2);
}

namespace {

// The first matrix-shaped parameter (a linear layer's weight, which products read through the cache), by name.
std::pair<std::string, Tensor> first_matrix_weight(const nn::Module& model) {
  const auto parameters = model.named_parameters();
  return *std::find_if(parameters.begin(), parameters.end(), [](const auto& entry) { return entry.second.dim() == 2; });
}

}  // namespace

TEST_CASE("autocast: a Transformer's forward passes reuse its weights' roundings until a step changes them") {
  TinyTransformer run(0.0);
  run.model.eval();
  AutocastGuard autocast(DType::bf16);
  const NoGradGuard no_grad;
  const auto [name, weight] = first_matrix_weight(run.model);
  CAPTURE(name);
  run.model.forward(run.src, run.tgt);
  const Tensor rounded = autocast::cached_bf16_weight(weight.detach());
  run.model.forward(run.src, run.tgt);
  CHECK(autocast::cached_bf16_weight(weight.detach()).storage() == rounded.storage());
}

TEST_CASE("autocast: with the parameters in one flat storage, layer norm's reads leave the roundings valid") {
  // The trainer's parameters are views of one storage (nn::FlatParameters), so a read that counted as a write
  // anywhere in the model (layer norm's weight, say) would renew every weight's rounding at every forward.
  TinyTransformer run(0.0);
  run.model.eval();
  const nn::FlatParameters flat(run.model);
  AutocastGuard autocast(DType::bf16);
  const NoGradGuard no_grad;
  const auto [name, weight] = first_matrix_weight(run.model);
  CAPTURE(name);
  REQUIRE(weight.storage() == flat.data().storage());
  const Tensor first = run.model.forward(run.src, run.tgt);
  const Tensor rounded = autocast::cached_bf16_weight(weight.detach());
  const Tensor second = run.model.forward(run.src, run.tgt);
  CHECK(autocast::cached_bf16_weight(weight.detach()).storage() == rounded.storage());
  CHECK(second.to_vector<float>() == first.to_vector<float>());
  // An optimizer writes through the flat buffer: every rounding is made again.
  flat.data().data_ptr<float>()[0] += 1.0f;
  CHECK(autocast::cached_bf16_weight(weight.detach()).storage() != rounded.storage());
}

TEST_CASE("autocast: a decoding step's linear with a parameter runs in bf16 on the weight's cached rounding") {
  Generator gen(9);
  const Tensor x = randn({8, 256}, gen);
  Tensor w = randn({512, 256}, gen), a = randn({512, 256}, gen);
  w.requires_grad_();
  a.requires_grad_();
  const Tensor activation = a * 1.0;  // not a leaf: its rounding would be made for one product, so it is not cached
  const Tensor expected = linear(x, w.detach());
  const NoGradGuard decoding;
  const AutocastGuard autocast(DType::bf16);
  const int64_t before = bf16_products();
  const Tensor out = linear(x, w);
  CHECK(bf16_products() == before + 1);  // 8 rows: bf16 only because the weight's rounding is cached
  CHECK(relative_error(out, expected) < 1.0 / 64);
  (void)linear(x, activation);
  CHECK(bf16_products() == before + 1);  // rounding a whole matrix for 8 rows does not pay: f32
}

TEST_CASE("autocast: the engine runs a node's backward under the autocast state its forward ran in") {
  // An op written outside the library, which never mentions autocast: its backward sees the forward's state.
  DType seen_in_backward = DType::f64;
  auto probe = [&](const Tensor& x) {
    return record(x.detach().clone(), "probe", {x}, [&seen_in_backward](const Tensor& dout, InputGrads& g) {
      seen_in_backward = autocast_dtype();
      g[0] = dout;
    });
  };
  Tensor x = ones({2}).requires_grad_();
  Tensor y;
  {
    AutocastGuard autocast(DType::bf16);
    y = probe(x);
  }
  sum(y).backward();
  CHECK(seen_in_backward == DType::bf16);
  const Tensor z = probe(x);
  {
    AutocastGuard autocast(DType::bf16);
    sum(z).backward();
  }
  CHECK(seen_in_backward == DType::f32);
  CHECK(autocast_dtype() == DType::f32);
}

namespace {

// The op names written in backticks in `cell` (other backticked words, like `TrainConfig`, are skipped).
std::set<Op> ops_named_in(const std::string& cell) {
  std::set<Op> ops;
  const std::regex quoted("`([a-z_]+)`");
  for (auto it = std::sregex_iterator(cell.begin(), cell.end(), quoted); it != std::sregex_iterator(); ++it)
    for (size_t op = 0; op < kOpNames.size(); ++op)
      if (kOpNames[op] == (*it)[1].str()) ops.insert(static_cast<Op>(op));
  return ops;
}

}  // namespace

TEST_CASE("autocast: the documented table of what runs in bf16 is the policy's list") {
  // The manual's table "| runs in bf16 ... | stays f32 |", wherever the manual keeps it.
  std::vector<std::filesystem::path> pages{std::filesystem::path(GRADFORMER_SOURCE_ROOT) / "README.md"};
  const std::filesystem::path docs = std::filesystem::path(GRADFORMER_SOURCE_ROOT) / "docs";
  if (std::filesystem::is_directory(docs))
    for (const auto& entry : std::filesystem::directory_iterator(docs))
      if (entry.path().extension() == ".md") pages.push_back(entry.path());
  std::string row;
  for (const auto& page : pages) {
    std::ifstream in(page);
    std::string line;
    while (std::getline(in, line) && row.empty())
      if (line.starts_with("| runs in bf16")) {
        std::getline(in, line);  // the | --- | --- | line
        std::getline(in, row);
      }
    if (!row.empty()) break;
  }
  REQUIRE_MESSAGE(!row.empty(), "no page of the manual has the '| runs in bf16 | stays f32 |' table");
  const size_t split = row.find(" | ");
  REQUIRE(split != std::string::npos);
  const std::set<Op> documented_bf16 = ops_named_in(row.substr(0, split));
  // The f32 column lists its ops up to the first semicolon; what follows explains the size rule (and names
  // `linear` there as a product that may stay f32).
  const std::string f32_column = row.substr(split);
  const std::set<Op> documented_f32 = ops_named_in(f32_column.substr(0, f32_column.find(';')));
  const std::set<Op> policy_bf16(kAutocastBf16Ops.begin(), kAutocastBf16Ops.end());
  CHECK(documented_bf16 == policy_bf16);
  for (Op op : documented_f32) {
    CAPTURE(op_name(op));
    CHECK(autocast_policy(op) == DType::f32);
  }
  CHECK(documented_f32.count(Op::softmax) == 1);  // the f32 column names the ops it keeps, as a reader expects
}

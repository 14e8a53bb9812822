// The engine's safety checks (autograd/engine.h): saved tensors carry the storage version they saw, and backward
// refuses once it moved; in-place writes to a leaf that requires grad are refused; a backward that leaves a
// needed gradient unwritten throws unless it declared it zero; gradient hooks and retain_grad. The op and layer
// tables are walked to prove that every tensor a library op's graph keeps is version-checked.
#include "autograd/engine.h"
#include "nn/layer_table.h"
#include "ops/op_table.h"
#include "ops/ops.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>

#include <string>

using namespace gradformer;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The message of the AutogradError fn throws, or empty if it throws none.
template <class F>
std::string autograd_error_of(F&& fn) {
  try {
    fn();
  } catch (const AutogradError& e) {
    return e.what();
  }
  return {};
}

const char* const kModified = "modified by an inplace operation";

// Moves t's storage version without changing a value: a writable pointer handed out counts as a write.
void bump_version(const Tensor& t) {
  if (t.numel() > 0) (void)t.raw_data();
}

}  // namespace

TEST_CASE("saved tensors: an in-place write to a saved output makes backward refuse, naming op, shape, versions") {
  const Tensor a = randn({3}).requires_grad_();
  Tensor e = exp(a);
  const uint64_t before = e.storage()->version();
  e.fill_(0.0);
  const std::string message = autograd_error_of([&] { sum(e).backward(); });
  CAPTURE(message);
  CHECK(contains(message, "exp: one of the variables needed for gradient computation has been " + std::string(kModified)));
  CHECK(contains(message, "output of shape [3]"));
  CHECK(contains(message, fmt::format("is at version {}; expected version {}", e.storage()->version(), before)));
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("saved tensors: an in-place write to a saved input under no-grad mode is caught by backward") {
  const Tensor p = full({2, 2}, 3.0).requires_grad_();
  const Tensor q = p * p;
  {
    NoGradGuard no_grad;
    p.fill_(10.0);
  }
  const std::string message = autograd_error_of([&] { sum(q).backward(); });
  CHECK(contains(message, "mul: one of the variables needed"));
  CHECK(contains(message, "input 0 of shape [2, 2]"));
}

TEST_CASE("saved tensors: an input the backward does not read may change after forward") {
  const Tensor a = randn({4}).requires_grad_(), b = randn({4}).requires_grad_();
  const Tensor c = a + b;
  {
    NoGradGuard no_grad;
    a.fill_(1.0);
  }
  sum(c).backward();
  CHECK(testing::max_abs_difference(a.grad(), ones({4})) == 0.0);
}

TEST_CASE("saved tensors: reading a tensor in forward does not move its version, so consumers do not trip backward") {
  const Tensor x = randn({5, 3}).requires_grad_();
  const Tensor y = exp(x);
  const Tensor z = y * y + tanh(y) - transpose(transpose(y, 0, 1).contiguous(), 0, 1) * 2.0;
  sum(matmul(z, transpose(y, 0, 1))).backward();
  CHECK(x.grad().defined());
}

TEST_CASE("in-place writes to a leaf that requires grad are refused outside no-grad mode") {
  const Tensor w = zeros({2, 3}).requires_grad_();
  CHECK(contains(autograd_error_of([&] { w.fill_(1.0); }), "fill_: a leaf tensor of shape [2, 3] that requires grad"));
  CHECK(contains(autograd_error_of([&] { w.copy_(ones({2, 3})); }), "copy_: a leaf tensor"));
  CHECK(contains(autograd_error_of([&] { w.set_at({0, 0}, 1.0); }), "set_at: a leaf tensor"));
  {
    NoGradGuard no_grad;
    w.fill_(2.0);
  }
  w.detach().set_at({0, 1}, 5.0);  // a detached handle is the way to write without the graph, as PyTorch's .data
  CHECK(w.at({0, 0}) == 2.0);
  CHECK(w.at({0, 1}) == 5.0);
  const Tensor free = zeros({2});
  free.fill_(1.0);  // no grad: no refusal
  CHECK(free.at({1}) == 1.0);
}

TEST_CASE("a backward that leaves a needed gradient unwritten throws, unless it declares it zero") {
  const Tensor a = randn({2}).requires_grad_(), b = randn({2}).requires_grad_();
  const Tensor forgetful = record(a + b, "forgetful_add", {a, b}, [](const Tensor& dout, InputGrads& g) {
    g[0] = dout;  // input 1 forgotten
  });
  const std::string message = autograd_error_of([&] { sum(forgetful).backward(); });
  CHECK(contains(message, "forgetful_add: backward wrote no gradient for input 1 (shape [2])"));
  const Tensor declared = record(a + b, "half_constant_add", {a, b}, [](const Tensor& dout, InputGrads& g) {
    g[0] = dout;
    g.declare_zero(1);
  });
  sum(declared).backward();
  CHECK(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("register_hook: a leaf's hook sees its gradient and may replace it; the handle removes it") {
  const Tensor x = ones({3}).requires_grad_();
  std::vector<double> seen;
  RemovableHandle handle = x.register_hook([&seen](const Tensor& grad) {
    seen = grad.to_vector<double>();
    return grad * 10.0;
  });
  sum(x * 2.0).backward();
  CHECK(seen == std::vector<double>{2, 2, 2});
  CHECK(x.grad().to_vector<double>() == std::vector<double>{20, 20, 20});
  handle.remove();
  handle.remove();  // twice is harmless
  x.zero_grad();
  sum(x * 2.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
}

TEST_CASE("register_hook: a non-leaf's hook changes what flows on; retain_grad keeps a non-leaf's gradient") {
  const Tensor x = from_vector<float>({1, 2, 3}, {3}).requires_grad_();
  const Tensor h = x * x;
  h.retain_grad();
  CHECK(h.retains_grad());
  const RemovableHandle doubled = h.register_hook([](const Tensor& grad) { return grad * 2.0; });
  const Tensor loss = sum(h * 3.0);
  loss.backward({}, true);
  // retain_grad registered first, so it sees the gradient before the doubling hook
  CHECK(h.grad().to_vector<double>() == std::vector<double>{3, 3, 3});
  CHECK(x.grad().to_vector<double>() == std::vector<double>{12, 24, 36});
  loss.backward();
  CHECK(h.grad().to_vector<double>() == std::vector<double>{6, 6, 6});  // accumulates as a leaf's does
  const Tensor wrong = x * 2.0;
  wrong.register_hook([](const Tensor&) { return zeros({2}); });
  CHECK_THROWS_AS(sum(wrong).backward(), ShapeError);
  CHECK_THROWS_AS(zeros({2}).register_hook([](const Tensor& g) { return g; }), AutogradError);
}

namespace {

std::vector<Tensor> requiring_grad(std::vector<Tensor> inputs) {
  for (Tensor& t : inputs)
    if (is_floating(t.dtype())) t = t.detach().requires_grad_();
  return inputs;
}

// How many handles share each tensor's storage.
std::vector<long> storage_users(const std::vector<Tensor>& tensors) {
  std::vector<long> users;
  for (const Tensor& t : tensors) users.push_back(t.defined() ? t.storage().use_count() : 0);
  return users;
}

// Which of `tensors` the graph behind `out` keeps a handle on (a saved input, or a capture sharing its storage):
// more users of its storage than before the forward, not counting out itself when it is a view of it.
std::vector<bool> kept_by_graph(const std::vector<Tensor>& tensors, const std::vector<long>& users_before,
                                const Tensor& out) {
  const std::vector<long> users_after = storage_users(tensors);
  std::vector<bool> kept;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const long own = tensors[i].defined() && out.storage() == tensors[i].storage() ? 1 : 0;
    kept.push_back(users_after[i] - own > users_before[i]);
  }
  return kept;
}

// For each tensor the forward reads: after a fresh forward, move its version; backward must refuse exactly when
// the graph kept it. `forward` builds everything anew from the same seed on each call.
template <class Forward>
void check_versions_guard_every_kept_tensor(Forward&& forward, const std::string& name) {
  std::vector<Tensor> watched;
  Tensor out;
  std::vector<bool> kept;
  {
    std::vector<long> before;
    out = forward(watched, before);
    if (!out.requires_grad()) return;
    kept = kept_by_graph(watched, before, out);
  }
  for (size_t i = 0; i < watched.size(); ++i) {
    if (!watched[i].defined()) continue;
    std::vector<Tensor> fresh;
    std::vector<long> unused;
    const Tensor again = forward(fresh, unused);
    bump_version(fresh[i]);
    const std::string message = autograd_error_of([&] { again.backward(ones_like(again)); });
    CAPTURE(name);
    CAPTURE(i);
    CAPTURE(shape_str(fresh[i].shape()));
    CAPTURE(message);
    if (kept[i])
      CHECK_MESSAGE(contains(message, kModified), "the graph keeps this tensor, but an in-place write to it went unnoticed");
    else
      CHECK_MESSAGE(message.empty(), "the graph does not keep this tensor, yet backward refused after a write to it");
  }
}

}  // namespace

TEST_CASE("saved tensors: every tensor an op-table row's graph keeps is version-checked, and no other") {
  for (const OpRow& row : op_table()) {
    if (!row.differentiable) continue;
    check_versions_guard_every_kept_tensor(
        [&row](std::vector<Tensor>& watched, std::vector<long>& before) {
          Generator gen(7100);
          watched = requiring_grad(row.make_inputs(0, gen));
          before = storage_users(watched);
          return row.apply(watched);
        },
        row_name(row));
  }
}

TEST_CASE("saved tensors: every tensor a layer-table row's graph keeps is version-checked, parameters included") {
  for (const nn::LayerRow& row : nn::layer_table()) {
    std::shared_ptr<nn::Module> keep_alive;
    check_versions_guard_every_kept_tensor(
        [&row, &keep_alive](std::vector<Tensor>& watched, std::vector<long>& before) {
          Generator gen(7200);
          nn::LayerCase layer = row.make(0, gen);
          keep_alive = layer.module;
          watched = requiring_grad(layer.inputs);
          const std::vector<Tensor> inputs = watched;
          for (const Tensor& p : layer.module->parameters()) watched.push_back(p);
          before = storage_users(watched);
          return layer.forward(inputs);
        },
        nn::row_name(row));
  }
}

// The engine's grad-ready hook (autograd/engine.h, GradReadyHookGuard): once per reached leaf and backward, after
// the leaf's last contribution (its gradient then equals what backward leaves), in backward's order, nothing for
// a leaf the root does not reach; and the same on a model whose gradients are views into one flat buffer.
#include "autograd/engine.h"
#include "models/zoo.h"
#include "nn/flat_parameters.h"
#include "nn/layers.h"
#include "ops/ops.h"

#include "helpers.h"
#include "model_helpers.h"

#include <doctest/doctest.h>

#include <map>

using namespace gradformer;

namespace {

// What a hook saw: the leaves in the order they were named, and each one's gradient at that moment.
struct Heard {
  std::vector<const TensorImpl*> order;
  std::map<const TensorImpl*, std::vector<double>> grad_then;
  GradReadyHook hook() {
    return [this](const Tensor& leaf) {
      order.push_back(leaf.impl_ptr().get());
      grad_then[leaf.impl_ptr().get()] = leaf.grad().to(DType::f64).to_vector<double>();
    };
  }
  int64_t times(const Tensor& leaf) const {
    return std::count(order.begin(), order.end(), leaf.impl_ptr().get());
  }
  size_t position(const Tensor& leaf) const {
    return static_cast<size_t>(std::find(order.begin(), order.end(), leaf.impl_ptr().get()) - order.begin());
  }
};

}  // namespace

TEST_CASE("grad hooks: each reached leaf once, after its last contribution, in backward's order") {
  Generator gen(3);
  nn::Linear first(3, 4, true, gen), second(4, 4, true, gen), third(4, 2, true, gen);
  // `scale` contributes twice: early in backward (at the loss) and last (at the input of `first`).
  const Tensor scale = tensor<float>({0.5f}).requires_grad_();
  const Tensor unused = tensor<float>({1.0f}).requires_grad_();
  const Tensor x = from_vector<float>({1, 2, 3, -1, 0, 2}, {2, 3});
  Heard heard;
  {
    GradReadyHookGuard guard(heard.hook());
    const Tensor hidden = relu(second.forward(relu(first.forward(x * scale))));
    (sum(third.forward(hidden)) * scale).backward();
  }
  for (const Tensor& p : {first.weight(), first.bias(), second.weight(), second.bias(), third.weight(), third.bias(),
                          scale}) {
    CHECK(heard.times(p) == 1);
    CHECK(heard.grad_then.at(p.impl_ptr().get()) == p.grad().to(DType::f64).to_vector<double>());
  }
  CHECK(heard.order.size() == 7);
  CHECK(heard.times(unused) == 0);
  // Backward meets the layers from the last to the first; `scale` is final only after `first`.
  CHECK(heard.position(third.weight()) < heard.position(second.weight()));
  CHECK(heard.position(second.weight()) < heard.position(first.weight()));
  CHECK(heard.position(first.weight()) < heard.position(scale));
  CHECK(heard.position(first.bias()) < heard.position(scale));

  // Once per backward: a second backward names them again; outside the guard nobody is told.
  {
    GradReadyHookGuard guard(heard.hook());
    sum(third.forward(ones({3, 4}, DType::f32))).backward();
  }
  CHECK(heard.times(third.weight()) == 2);
  CHECK(heard.times(third.bias()) == 2);
  CHECK(heard.times(first.weight()) == 1);
  sum(third.forward(ones({1, 4}, DType::f32))).backward();
  CHECK(heard.times(third.weight()) == 2);
}

TEST_CASE("grad hooks: a leaf that is the root, nested guards, and a hook that throws") {
  const Tensor leaf = tensor<double>({2.0}).requires_grad_();
  Heard outer, inner;
  GradReadyHookGuard outer_guard(outer.hook());
  {
    GradReadyHookGuard inner_guard(inner.hook());
    leaf.backward();
  }
  CHECK(inner.times(leaf) == 1);
  CHECK(outer.times(leaf) == 0);
  sum(leaf * 3.0).backward();  // the outer hook is back
  CHECK(outer.times(leaf) == 1);
  CHECK(outer.grad_then.at(leaf.impl_ptr().get()) == std::vector<double>{4.0});
  GradReadyHookGuard failing([](const Tensor&) { fail<ValueError>("a hook", "refuses"); });
  CHECK(testing::message_of<ValueError>([&] { sum(leaf * 2.0).backward(); }) == "a hook: refuses");
}

TEST_CASE("grad hooks: a Transformer on flat buffers names every parameter once, with its final gradient") {
  default_generator().manual_seed(7);
  const auto model = models::make_model(testing::tiny_transformer_config(12, 0.0, 16, 8), default_generator());
  const nn::FlatParameters flat(*model);
  const Tensor src = from_vector<int64_t>({3, 4, 5, 6, 7, 8, 9, 0}, {2, 4});
  const Tensor tgt_in = from_vector<int64_t>({1, 4, 5, 6, 1, 8, 9, 0}, {2, 4});
  const Tensor tgt_out = from_vector<int64_t>({4, 5, 6, 2, 8, 9, 2, 0}, {2, 4});
  for (int pass = 1; pass <= 2; ++pass) {  // the second accumulates into the first's gradients
    CAPTURE(pass);
    Heard heard;
    {
      GradReadyHookGuard guard(heard.hook());
      const Tensor logits = model->forward(src, tgt_in);
      cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(tgt_out, {-1})).backward();
    }
    CHECK(heard.order.size() == flat.parameters().size());
    for (const Tensor& p : flat.parameters()) {
      CAPTURE(p.name());
      CHECK(heard.times(p) == 1);
      CHECK(heard.grad_then.at(p.impl_ptr().get()) == p.grad().to(DType::f64).to_vector<double>());
    }
    flat.check_intact("grad hooks test");
  }
}

// The rows of the layer table. Sizes are tiny: gradcheck evaluates the layer twice per parameter element.
#include "nn/layer_table.h"

#include "nn/layers.h"
#include "ops/ops.h"

#include <array>

namespace gradformer::nn {
namespace {

Tensor normal(Generator& gen, Shape shape) { return randn(std::move(shape), gen, DType::f64); }

// Moves a freshly built module to f64 and wraps it with its inputs and its forward.
template <class M, class F>
LayerCase make_case(std::shared_ptr<M> module, std::vector<Tensor> inputs, F forward) {
  module->to(DType::f64);
  M* raw = module.get();
  return LayerCase{module, std::move(inputs),
                   [raw, forward](const std::vector<Tensor>& x) { return forward(*raw, x); }};
}

constexpr std::array<LayerRow, static_cast<size_t>(Layer::count)> kRows{{
    // layers.cpp
    {Layer::linear, "Linear",
     [](int which, Generator& gen) {
       return make_case(std::make_shared<Linear>(3, 2, true, gen), {normal(gen, which == 0 ? Shape{4, 3} : Shape{2, 1, 3})},
                        [](const Linear& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::linear_no_bias, "Linear(bias=false)",
     [](int, Generator& gen) {
       return make_case(std::make_shared<Linear>(3, 4, false, gen), {normal(gen, {2, 3})},
                        [](const Linear& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     },
     1},
    {Layer::embedding, "Embedding",
     [](int which, Generator& gen) {
       const Tensor ids = from_vector<int64_t>({1, 3, 3, 0, 4, 1}, which == 0 ? Shape{6} : Shape{2, 3});
       return make_case(std::make_shared<Embedding>(5, 3, which == 0 ? -1 : 2, gen), {ids},
                        [](const Embedding& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::layer_norm, "LayerNorm",
     [](int which, Generator& gen) {
       auto norm = std::make_shared<LayerNorm>(which == 0 ? Shape{4} : Shape{2, 3});
       // Non-trivial affine parameters, so their gradients are checked away from ones and zeros.
       norm->weight().copy_(randn(norm->weight().shape(), gen));
       norm->bias().copy_(randn(norm->bias().shape(), gen));
       return make_case(norm, {normal(gen, which == 0 ? Shape{3, 4} : Shape{2, 2, 3})},
                        [](const LayerNorm& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::dropout_train, "Dropout(train)",
     [](int, Generator& gen) {
       // The layer draws from its own generator, reseeded before every call so each draws the same mask.
       auto generator = std::make_shared<Generator>(11);
       auto layer = std::make_shared<Dropout>(0.3, *generator);
       layer->train();
       LayerCase c = make_case(layer, {normal(gen, {4, 5})},
                               [generator](const Dropout& m, const std::vector<Tensor>& x) {
                                 generator->manual_seed(11);
                                 return m.forward(x[0]);
                               });
       return c;
     },
     1},
    // attention.cpp: Attention, SelfAttention, MultiHeadAttention

    // transformer.cpp: feed-forward, positional encodings, encoder/decoder layers and stacks, Transformer

    // rnn.cpp: RNN, LSTM and GRU cells and layers, additive attention

}};

constexpr bool rows_match_layers() {
  for (size_t i = 0; i < kRows.size(); ++i)
    if (static_cast<size_t>(kRows[i].layer) != i || kRows[i].name.empty() || kRows[i].make == nullptr) return false;
  return true;
}
static_assert(rows_match_layers(), "every Layer needs its row in kRows, in the order of the enum");

}  // namespace

std::span<const LayerRow> layer_table() { return kRows; }

const LayerRow* find_layer(std::string_view name) {
  for (const LayerRow& row : kRows)
    if (row.name == name) return &row;
  return nullptr;
}

std::vector<OpCheck> gradcheck_layer(const LayerRow& row, uint64_t seed) {
  std::vector<OpCheck> checks;
  for (int which = 0; which < row.cases; ++which) {
    for (bool strided : {false, true}) {
      Generator gen(seed * 1000 + static_cast<uint64_t>(which));
      LayerCase layer = row.make(which, gen);
      OpCheck check{which, strided, layer.inputs, {}};
      if (strided)
        for (Tensor& t : check.inputs) t = noncontiguous_copy(t);
      std::vector<Tensor> probes = check.inputs;
      for (const Tensor& p : layer.module->parameters()) probes.push_back(p);
      const size_t input_count = check.inputs.size();
      auto forward = [&layer, input_count](const std::vector<Tensor>& x) {
        return layer.forward(std::vector<Tensor>(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(input_count)));
      };
      GradcheckOptions options;
      options.atol = row.atol;
      options.rtol = row.rtol;
      options.seed = seed;
      try {
        check.report = gradcheck(forward, probes, options);
      } catch (const Error& e) {
        check.report.passed = false;
        check.report.failure = e.what();
      }
      checks.push_back(std::move(check));
    }
  }
  return checks;
}

}  // namespace gradformer::nn

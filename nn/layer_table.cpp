// The rows of the layer table. Sizes are tiny: gradcheck evaluates the layer twice per parameter element.
#include "nn/layer_table.h"

#include "nn/layers.h"
#include "nn/rnn.h"
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

// Helpers for the rows of rnn.cpp

// Every tensor flattened and joined, so a layer with several results is checked through all of them at once.
Tensor joined(const std::vector<Tensor>& results) {
  std::vector<Tensor> flat;
  for (const Tensor& t : results) flat.push_back(reshape(t, {-1}));
  return concat(flat, 0);
}

// x (B=2, S=3, I=3) and its lengths; case 1 adds `states` initial states (state_rows, 2, H=4).
std::vector<Tensor> recurrent_inputs(int which, Generator& gen, const std::vector<int64_t>& lengths,
                                     int64_t state_rows, int states) {
  std::vector<Tensor> inputs{normal(gen, {2, 3, 3}), from_vector<int64_t>(lengths, {2})};
  if (which == 1)
    for (int i = 0; i < states; ++i) inputs.push_back(normal(gen, {state_rows, 2, 4}));
  return inputs;
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
    {Layer::rnn_cell, "RNNCell",
     [](int which, Generator& gen) {
       std::vector<Tensor> inputs{normal(gen, {2, 3})};
       if (which == 1) inputs.push_back(normal(gen, {2, 4}));
       return make_case(std::make_shared<RNNCell>(3, 4, Nonlinearity::tanh, true, gen), inputs,
                        [](const RNNCell& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x.size() > 1 ? x[1] : Tensor());
                        });
     }},
    {Layer::lstm_cell, "LSTMCell",
     [](int which, Generator& gen) {
       std::vector<Tensor> inputs{normal(gen, {2, 3})};
       if (which == 1) inputs.insert(inputs.end(), {normal(gen, {2, 4}), normal(gen, {2, 4})});
       return make_case(std::make_shared<LSTMCell>(3, 4, true, gen), inputs,
                        [](const LSTMCell& m, const std::vector<Tensor>& x) {
                          const LSTMState state = m.forward(x[0], x.size() > 1 ? LSTMState{x[1], x[2]} : LSTMState{});
                          return joined({state.h, state.c});
                        });
     }},
    {Layer::gru_cell, "GRUCell",
     [](int which, Generator& gen) {
       std::vector<Tensor> inputs{normal(gen, {2, 3})};
       if (which == 1) inputs.push_back(normal(gen, {2, 4}));
       return make_case(std::make_shared<GRUCell>(3, 4, true, gen), inputs,
                        [](const GRUCell& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x.size() > 1 ? x[1] : Tensor());
                        });
     }},
    {Layer::rnn, "RNN",
     [](int which, Generator& gen) {
       // Case 0: full lengths, zero initial state; case 1: a padded sequence and a given initial state.
       const std::vector<int64_t> lengths = which == 0 ? std::vector<int64_t>{3, 3} : std::vector<int64_t>{3, 2};
       return make_case(std::make_shared<RNN>(3, 4, 1, Nonlinearity::tanh, true, false, 0.0, gen),
                        recurrent_inputs(which, gen, lengths, 1, 1),
                        [](const RNN& m, const std::vector<Tensor>& x) {
                          const RNNResult r = m.forward(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
                          return joined({r.output, r.h_n});
                        });
     }},
    {Layer::lstm_two_layers, "LSTM(num_layers=2, lengths)",
     [](int which, Generator& gen) {
       return make_case(std::make_shared<LSTM>(3, 4, 2, true, false, 0.0, gen),
                        recurrent_inputs(which, gen, {3, 1}, 2, 2),
                        [](const LSTM& m, const std::vector<Tensor>& x) {
                          const LSTMState state = x.size() > 2 ? LSTMState{x[2], x[3]} : LSTMState{};
                          const LSTMResult r = m.forward(x[0], x[1], state);
                          return joined({r.output, r.state.h, r.state.c});
                        });
     }},
    {Layer::lstm_dropout_train, "LSTM(num_layers=2, dropout, train)",
     [](int, Generator& gen) {
       // The dropout between the layers draws from its own generator, reseeded before every call.
       auto generator = std::make_shared<Generator>(12);
       auto lstm = std::make_shared<LSTM>(3, 4, 2, true, false, 0.3, *generator);
       lstm->train();
       return make_case(lstm, recurrent_inputs(0, gen, {3, 2}, 2, 2),
                        [generator](const LSTM& m, const std::vector<Tensor>& x) {
                          generator->manual_seed(12);
                          const LSTMResult r = m.forward(x[0], x[1]);
                          return joined({r.output, r.state.h, r.state.c});
                        });
     },
     1},
    {Layer::gru_lengths, "GRU(lengths)",
     [](int which, Generator& gen) {
       return make_case(std::make_shared<GRU>(3, 4, 1, true, false, 0.0, gen),
                        recurrent_inputs(which, gen, {2, 3}, 1, 1),
                        [](const GRU& m, const std::vector<Tensor>& x) {
                          const RNNResult r = m.forward(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
                          return joined({r.output, r.h_n});
                        });
     }},
    {Layer::gru_bidirectional, "GRU(bidirectional, lengths)",
     [](int which, Generator& gen) {
       return make_case(std::make_shared<GRU>(3, 4, 1, true, true, 0.0, gen),
                        recurrent_inputs(which, gen, {1, 3}, 2, 1),
                        [](const GRU& m, const std::vector<Tensor>& x) {
                          const RNNResult r = m.forward(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
                          return joined({r.output, r.h_n});
                        });
     }},
    {Layer::additive_attention, "AdditiveAttention",
     [](int which, Generator& gen) {
       // Case 0: one query per sentence, no padding; case 1: two queries per sentence over padded keys.
       std::vector<Tensor> inputs{normal(gen, which == 0 ? Shape{2, 4} : Shape{2, 2, 4}), normal(gen, {2, 3, 3}),
                                  normal(gen, {2, 3, 5})};
       if (which == 1) inputs.push_back(from_vector<bool>({false, false, true, false, true, true}, {2, 3}));
       return make_case(std::make_shared<AdditiveAttention>(4, 3, 4, gen), inputs,
                        [](const AdditiveAttention& m, const std::vector<Tensor>& x) {
                          const AdditiveAttentionResult r = m.forward(x[0], x[1], x[2], x.size() > 3 ? x[3] : Tensor());
                          return joined({r.context, r.weights});
                        });
     }},

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

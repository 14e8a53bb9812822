// The rows of the layer table. Sizes are tiny: gradcheck evaluates the layer twice per parameter element.
#include "nn/layer_table.h"

#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/transformer.h"
#include "nn/rnn.h"
#include "ops/ops.h"

#include <fmt/format.h>

#include <array>
#include <type_traits>

namespace gradformer::nn {
namespace {

// Moves a freshly built module to f64 and wraps it with its inputs and its forward.
template <class M, class F>
LayerCase make_case(std::shared_ptr<M> module, std::vector<Tensor> inputs, F forward) {
  module->to(DType::f64);
  M* raw = module.get();
  return LayerCase{module, std::move(inputs),
                   [raw, forward](const std::vector<Tensor>& x) { return forward(*raw, x); }};
}

// A case in training (or eval) mode whose dropout draws the same masks on every call, as gradcheck needs: each
// forward runs under a GeneratorGuard over a generator seeded afresh, so the layer's draws start over.
template <class M, class F>
LayerCase make_dropout_case(std::shared_ptr<M> module, bool training, std::vector<Tensor> inputs, F forward) {
  module->train(training);
  return make_case(module, std::move(inputs), [forward](const M& m, const std::vector<Tensor>& x) {
    Generator masks(17);
    GeneratorGuard guard(masks);
    return forward(m, x);
  });
}

// Helpers for the rows of attention.cpp

// Padding at the end of the second sequence only, so no query loses every key: bool (2, S), true = padding.
Tensor trailing_padding(int64_t keys) {
  Tensor mask = zeros({2, keys}, DType::boolean);
  mask.set_at({1, keys - 1}, 1.0);
  return mask;
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

constexpr LayerRow kRows[] = {
    // layers.cpp
    {Layer::Linear, "",
     [](int which, Generator& gen) {
       return make_case(std::make_shared<Linear>(3, 2, true, gen), {normal(gen, which == 0 ? Shape{4, 3} : Shape{2, 1, 3})},
                        [](const Linear& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::Linear, "bias=false",
     [](int, Generator& gen) {
       return make_case(std::make_shared<Linear>(3, 4, false, gen), {normal(gen, {2, 3})},
                        [](const Linear& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     },
     1},
    {Layer::Embedding, "",
     [](int which, Generator& gen) {
       const Tensor ids = from_vector<int64_t>({1, 3, 3, 0, 4, 1}, which == 0 ? Shape{6} : Shape{2, 3});
       return make_case(std::make_shared<Embedding>(5, 3, which == 0 ? -1 : 2, gen), {ids},
                        [](const Embedding& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::LayerNorm, "",
     [](int which, Generator& gen) {
       auto norm = std::make_shared<LayerNorm>(which == 0 ? Shape{4} : Shape{2, 3});
       // Non-trivial affine parameters, so their gradients are checked away from ones and zeros.
       norm->weight().copy_(randn(norm->weight().shape(), gen));
       norm->bias().copy_(randn(norm->bias().shape(), gen));
       return make_case(norm, {normal(gen, which == 0 ? Shape{3, 4} : Shape{2, 2, 3})},
                        [](const LayerNorm& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::Dropout, "train",
     [](int, Generator& gen) {
       return make_dropout_case(std::make_shared<Dropout>(0.3), true, {normal(gen, {4, 5})},
                                [](const Dropout& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     },
     1},
    // attention.cpp: Attention, SelfAttention, MultiHeadAttention
    {Layer::Attention, "",
     [](int which, Generator& gen) {
       // Case 0 scaled by 1/√d_k, case 1 unscaled; T = 3 queries over S = 4 keys.
       const AttentionLayerOptions options{
           .query_dim = 3, .key_dim = 4, .value_dim = 2, .attention_dim = 3, .scaled = which == 0};
       return make_case(std::make_shared<Attention>(options, gen), {normal(gen, {2, 3, 3}), normal(gen, {2, 4, 4})},
                        [](const Attention& m, const std::vector<Tensor>& x) { return m.forward(x[0], x[1]).output; });
     }},
    {Layer::Attention, "key_padding_mask",
     [](int, Generator& gen) {
       const AttentionLayerOptions options{.query_dim = 3, .key_dim = 4, .value_dim = 2, .attention_dim = 3};
       return make_case(std::make_shared<Attention>(options, gen),
                        {normal(gen, {2, 3, 3}), normal(gen, {2, 4, 4}), trailing_padding(4)},
                        [](const Attention& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x[1], x[2]).output;
                        });
     },
     1},
    {Layer::SelfAttention, "",
     [](int which, Generator& gen) {
       // Case 1 is causal.
       const SelfAttentionOptions options{.dim = 4, .value_dim = 2, .attention_dim = 3};
       return make_case(std::make_shared<SelfAttention>(options, gen), {normal(gen, {2, 3, 4})},
                        [which](const SelfAttention& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], {}, which == 1).output;
                        });
     }},
    {Layer::MultiheadAttention, "",
     [](int which, Generator& gen) {
       // Case 0: self-attention (one tensor, the fused projection); 1: key is value (memory); 2: three tensors.
       auto layer = std::make_shared<MultiheadAttention>(4, 2, gen);
       std::vector<Tensor> inputs{normal(gen, {2, 3, 4})};
       if (which >= 1) inputs.push_back(normal(gen, {2, 4, 4}));
       if (which == 2) inputs.push_back(normal(gen, {2, 4, 4}));
       return make_case(layer, inputs, [which](const MultiheadAttention& m, const std::vector<Tensor>& x) {
         const Tensor& key = which == 0 ? x[0] : x[1];
         return m.forward(x[0], key, which == 2 ? x[2] : key).output;
       });
     },
     3},
    {Layer::MultiheadAttention, "causal, key_padding_mask",
     [](int, Generator& gen) {
       return make_case(std::make_shared<MultiheadAttention>(4, 2, gen), {normal(gen, {2, 3, 4}), trailing_padding(3)},
                        [](const MultiheadAttention& m, const std::vector<Tensor>& x) {
                          MultiheadAttentionForwardOptions options;
                          options.key_padding_mask = x[1];
                          options.causal = true;
                          return m.forward(x[0], x[0], x[0], options).output;
                        });
     },
     1},
    {Layer::MultiheadAttention, "need_weights",
     [](int which, Generator& gen) {
       // Asking for the weights (averaged in case 0, per head in case 1) leaves the output's gradient alone.
       return make_case(std::make_shared<MultiheadAttention>(4, 2, gen), {normal(gen, {2, 3, 4})},
                        [which](const MultiheadAttention& m, const std::vector<Tensor>& x) {
                          MultiheadAttentionForwardOptions options;
                          options.need_weights = true;
                          options.average_attn_weights = which == 0;
                          return m.forward(x[0], x[0], x[0], options).output;
                        });
     }},
    {Layer::MultiheadAttention, "dropout, train",
     [](int, Generator& gen) {
       auto layer = std::make_shared<MultiheadAttention>(
           MultiheadAttentionOptions{.embed_dim = 4, .num_heads = 2, .dropout = 0.3}, gen);
       return make_dropout_case(layer, true, {normal(gen, {2, 3, 4})},
                                [](const MultiheadAttention& m, const std::vector<Tensor>& x) {
                                  return m.forward(x[0], x[0], x[0]).output;
                                });
     },
     1},

    // transformer.cpp: feed-forward, positional encodings, encoder/decoder layers and stacks, Transformer
    {Layer::FeedForward, "",
     [](int which, Generator& gen) {
       // Case 0: relu in eval; case 1: gelu in training, with its dropout.
       const FeedForwardOptions options{.d_model = 4,
                                        .dim_feedforward = 6,
                                        .dropout = 0.2,
                                        .activation = which == 0 ? Activation::relu : Activation::gelu};
       return make_dropout_case(std::make_shared<FeedForward>(options, gen), which == 1, {normal(gen, {2, 3, 4})},
                                [](const FeedForward& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::SinusoidalPositionalEncoding, "",
     [](int which, Generator& gen) {
       // Case 1 starts at position 2, as a decoding step does.
       return make_case(std::make_shared<SinusoidalPositionalEncoding>(4, 8), {normal(gen, {2, 3, 4})},
                        [which](const SinusoidalPositionalEncoding& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], which == 0 ? 0 : 2);
                        });
     }},
    {Layer::LearnedPositionalEncoding, "",
     [](int, Generator& gen) {
       return make_case(std::make_shared<LearnedPositionalEncoding>(4, 5, gen), {normal(gen, {2, 3, 4})},
                        [](const LearnedPositionalEncoding& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], 1);
                        });
     },
     1},
    {Layer::TransformerEncoderLayer, "",
     [](int which, Generator& gen) {
       // Case 0: post-norm in eval; case 1: pre-norm (norm_first) in training, dropout reseeded.
       const TransformerLayerOptions options{
           .d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.1, .norm_first = which == 1};
       return make_dropout_case(
           std::make_shared<TransformerEncoderLayer>(options, gen), which == 1, {normal(gen, {2, 3, 4})},
           [](const TransformerEncoderLayer& m, const std::vector<Tensor>& x) { return m.forward(x[0]); });
     }},
    {Layer::TransformerEncoderLayer, "masks",
     [](int which, Generator& gen) {
       // Case 0: key padding and causal; case 1: a float src_mask added to the scores (a constant: the sdpa op
       // passes no gradient to masks).
       const Tensor src_mask = normal(gen, {3, 3});
       const TransformerLayerOptions options{
           .d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.1, .activation = Activation::gelu};
       return make_dropout_case(std::make_shared<TransformerEncoderLayer>(options, gen), false,
                                {normal(gen, {2, 3, 4}), trailing_padding(3)},
                                [which, src_mask](const TransformerEncoderLayer& m, const std::vector<Tensor>& x) {
                                  return which == 0 ? m.forward(x[0], x[1], {}, true) : m.forward(x[0], {}, src_mask);
                                });
     }},
    {Layer::TransformerDecoderLayer, "",
     [](int which, Generator& gen) {
       // Case 0: post-norm in eval with memory padding; case 1: pre-norm in training, dropout reseeded.
       const TransformerLayerOptions options{
           .d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.1, .norm_first = which == 1};
       std::vector<Tensor> inputs{normal(gen, {2, 3, 4}), normal(gen, {2, 4, 4}), trailing_padding(4)};
       return make_dropout_case(std::make_shared<TransformerDecoderLayer>(options, gen), which == 1, inputs,
                                [](const TransformerDecoderLayer& m, const std::vector<Tensor>& x) {
                                  return m.forward(x[0], x[1], true, {}, x[2]);
                                });
     }},
    {Layer::Transformer, "",
     [](int, Generator& gen) {
       // 1 encoder and 1 decoder layer, d_model 4, 2 heads, d_ff 6, in eval.
       const TransformerOptions options{.layer = {.d_model = 4, .nhead = 2, .dim_feedforward = 6},
                                        .num_encoder_layers = 1,
                                        .num_decoder_layers = 1};
       auto model = std::make_shared<Transformer>(options, gen);
       model->eval();
       return make_case(model, {normal(gen, {2, 3, 4}), normal(gen, {2, 2, 4}), trailing_padding(3)},
                        [](const Transformer& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x[1], x[2], {}, x[2]);
                        });
     },
     1},

    // rnn.cpp: RNN, LSTM and GRU cells and layers, additive attention
    {Layer::RNNCell, "",
     [](int which, Generator& gen) {
       std::vector<Tensor> inputs{normal(gen, {2, 3})};
       if (which == 1) inputs.push_back(normal(gen, {2, 4}));
       return make_case(std::make_shared<RNNCell>(3, 4, Nonlinearity::tanh, true, gen), inputs,
                        [](const RNNCell& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x.size() > 1 ? x[1] : Tensor());
                        });
     }},
    {Layer::LSTMCell, "",
     [](int which, Generator& gen) {
       std::vector<Tensor> inputs{normal(gen, {2, 3})};
       if (which == 1) inputs.insert(inputs.end(), {normal(gen, {2, 4}), normal(gen, {2, 4})});
       return make_case(std::make_shared<LSTMCell>(3, 4, true, gen), inputs,
                        [](const LSTMCell& m, const std::vector<Tensor>& x) {
                          const LSTMState state = m.forward(x[0], x.size() > 1 ? LSTMState{x[1], x[2]} : LSTMState{});
                          return joined({state.h, state.c});
                        });
     }},
    {Layer::GRUCell, "",
     [](int which, Generator& gen) {
       std::vector<Tensor> inputs{normal(gen, {2, 3})};
       if (which == 1) inputs.push_back(normal(gen, {2, 4}));
       return make_case(std::make_shared<GRUCell>(3, 4, true, gen), inputs,
                        [](const GRUCell& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x.size() > 1 ? x[1] : Tensor());
                        });
     }},
    {Layer::RNN, "",
     [](int which, Generator& gen) {
       // Case 0: full lengths, zero initial state; case 1: a padded sequence and a given initial state.
       const std::vector<int64_t> lengths = which == 0 ? std::vector<int64_t>{3, 3} : std::vector<int64_t>{3, 2};
       return make_case(std::make_shared<RNN>(3, 4, gen),
                        recurrent_inputs(which, gen, lengths, 1, 1),
                        [](const RNN& m, const std::vector<Tensor>& x) {
                          const RNNResult r = m.forward(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
                          return joined({r.output, r.h_n});
                        });
     }},
    {Layer::LSTM, "num_layers=2, lengths",
     [](int which, Generator& gen) {
       const RecurrentOptions options{.input_size = 3, .hidden_size = 4, .num_layers = 2};
       return make_case(std::make_shared<LSTM>(options, gen),
                        recurrent_inputs(which, gen, {3, 1}, 2, 2),
                        [](const LSTM& m, const std::vector<Tensor>& x) {
                          const LSTMState state = x.size() > 2 ? LSTMState{x[2], x[3]} : LSTMState{};
                          const LSTMResult r = m.forward(x[0], x[1], state);
                          return joined({r.output, r.state.h, r.state.c});
                        });
     }},
    {Layer::LSTM, "num_layers=2, dropout, train",
     [](int, Generator& gen) {
       auto lstm = std::make_shared<LSTM>(
           RecurrentOptions{.input_size = 3, .hidden_size = 4, .num_layers = 2, .dropout = 0.3}, gen);
       return make_dropout_case(lstm, true, recurrent_inputs(0, gen, {3, 2}, 2, 2),
                                [](const LSTM& m, const std::vector<Tensor>& x) {
                                  const LSTMResult r = m.forward(x[0], x[1]);
                                  return joined({r.output, r.state.h, r.state.c});
                                });
     },
     1},
    {Layer::GRU, "lengths",
     [](int which, Generator& gen) {
       return make_case(std::make_shared<GRU>(3, 4, gen),
                        recurrent_inputs(which, gen, {2, 3}, 1, 1),
                        [](const GRU& m, const std::vector<Tensor>& x) {
                          const RNNResult r = m.forward(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
                          return joined({r.output, r.h_n});
                        });
     }},
    {Layer::GRU, "bidirectional, lengths",
     [](int which, Generator& gen) {
       const RecurrentOptions options{.input_size = 3, .hidden_size = 4, .bidirectional = true};
       return make_case(std::make_shared<GRU>(options, gen),
                        recurrent_inputs(which, gen, {1, 3}, 2, 1),
                        [](const GRU& m, const std::vector<Tensor>& x) {
                          const RNNResult r = m.forward(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
                          return joined({r.output, r.h_n});
                        });
     }},
    {Layer::AdditiveAttention, "",
     [](int which, Generator& gen) {
       // Case 0: one query per sentence, no padding; case 1: two queries per sentence over padded keys.
       std::vector<Tensor> inputs{normal(gen, which == 0 ? Shape{2, 4} : Shape{2, 2, 4}), normal(gen, {2, 3, 3}),
                                  normal(gen, {2, 3, 5})};
       if (which == 1) inputs.push_back(from_vector<bool>({false, false, true, false, true, true}, {2, 3}));
       const AdditiveAttentionOptions options{.query_dim = 4, .key_dim = 3, .attention_dim = 4};
       return make_case(std::make_shared<AdditiveAttention>(options, gen), inputs,
                        [](const AdditiveAttention& m, const std::vector<Tensor>& x) {
                          const AttentionResult r = m.forward(x[0], x[1], x[2], x.size() > 3 ? x[3] : Tensor());
                          return joined({r.output, r.weights});
                        });
     }},

};

constexpr bool every_layer_has_a_row() {
  std::array<bool, static_cast<size_t>(Layer::count)> covered{};
  for (const LayerRow& row : kRows) {
    if (row.layer == Layer::count || row.make == nullptr) return false;
    covered[static_cast<size_t>(row.layer)] = true;
  }
  for (bool has_row : covered)
    if (!has_row) return false;
  return true;
}
static_assert(every_layer_has_a_row(), "every Layer (GRADFORMER_LAYERS) needs at least one row in kRows");

// Each entry of the list names a layer class of this library.
#define GRADFORMER_LAYER_IS_MODULE(name) \
  static_assert(std::is_base_of_v<Module, name>, #name " in GRADFORMER_LAYERS is not an nn::Module");
GRADFORMER_LAYERS(GRADFORMER_LAYER_IS_MODULE)
#undef GRADFORMER_LAYER_IS_MODULE

}  // namespace

std::span<const LayerRow> layer_table() { return kRows; }

std::string row_name(const LayerRow& row) {
  const std::string_view name = layer_name(row.layer);
  return row.variant.empty() ? std::string(name) : fmt::format("{}({})", name, row.variant);
}

const LayerRow* find_layer(std::string_view name) {
  for (const LayerRow& row : kRows)
    if (row_name(row) == name) return &row;
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

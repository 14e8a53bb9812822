// The rows of the layer table. Sizes are tiny: gradcheck evaluates the layer twice per parameter element.
#include "nn/layer_table.h"

#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/transformer.h"
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

// Helpers for the rows of attention.cpp

// Padding at the end of the second sequence only, so no query loses every key: bool (2, S), true = padding.
Tensor trailing_padding(int64_t keys) {
  Tensor mask = zeros({2, keys}, DType::boolean);
  mask.set_at({1, keys - 1}, 1.0);
  return mask;
}

// Helpers for the rows of transformer.cpp

// A layer built from a generator of its own that its dropouts also draw from; the forward reseeds it, so every
// call of a training-mode case drops the same elements.
template <class M, class F, class... Args>
LayerCase make_seeded_case(bool training, std::vector<Tensor> inputs, F forward, Args&&... args) {
  auto generator = std::make_shared<Generator>(17);
  auto layer = std::make_shared<M>(std::forward<Args>(args)..., *generator);
  layer->train(training);
  return make_case(layer, std::move(inputs), [generator, forward](const M& m, const std::vector<Tensor>& x) {
    generator->manual_seed(17);
    return forward(m, x);
  });
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
    {Layer::attention, "Attention",
     [](int which, Generator& gen) {
       // Case 0 scaled by 1/√d_k, case 1 unscaled; T = 3 queries over S = 4 keys.
       return make_case(std::make_shared<Attention>(3, 4, 2, 3, which == 0, gen),
                        {normal(gen, {2, 3, 3}), normal(gen, {2, 4, 4})},
                        [](const Attention& m, const std::vector<Tensor>& x) { return m.forward(x[0], x[1]).context; });
     }},
    {Layer::attention_key_padding, "Attention(key_padding_mask)",
     [](int, Generator& gen) {
       return make_case(std::make_shared<Attention>(3, 4, 2, 3, true, gen),
                        {normal(gen, {2, 3, 3}), normal(gen, {2, 4, 4}), trailing_padding(4)},
                        [](const Attention& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x[1], x[2]).context;
                        });
     },
     1},
    {Layer::self_attention, "SelfAttention",
     [](int which, Generator& gen) {
       // Case 1 is causal.
       return make_case(std::make_shared<SelfAttention>(4, 3, 2, true, gen), {normal(gen, {2, 3, 4})},
                        [which](const SelfAttention& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], {}, which == 1).context;
                        });
     }},
    {Layer::multihead_attention, "MultiheadAttention",
     [](int which, Generator& gen) {
       // Case 0: self-attention (one tensor, the fused projection); 1: key is value (memory); 2: three tensors.
       auto layer = std::make_shared<MultiheadAttention>(4, 2, 0.0, true, gen);
       std::vector<Tensor> inputs{normal(gen, {2, 3, 4})};
       if (which >= 1) inputs.push_back(normal(gen, {2, 4, 4}));
       if (which == 2) inputs.push_back(normal(gen, {2, 4, 4}));
       return make_case(layer, inputs, [which](const MultiheadAttention& m, const std::vector<Tensor>& x) {
         const Tensor& key = which == 0 ? x[0] : x[1];
         return m.forward(x[0], key, which == 2 ? x[2] : key).output;
       });
     },
     3},
    {Layer::multihead_attention_causal_padding, "MultiheadAttention(causal, key_padding_mask)",
     [](int, Generator& gen) {
       return make_case(std::make_shared<MultiheadAttention>(4, 2, 0.0, true, gen),
                        {normal(gen, {2, 3, 4}), trailing_padding(3)},
                        [](const MultiheadAttention& m, const std::vector<Tensor>& x) {
                          MhaOptions options;
                          options.key_padding_mask = x[1];
                          options.causal = true;
                          return m.forward(x[0], x[0], x[0], options).output;
                        });
     },
     1},
    {Layer::multihead_attention_need_weights, "MultiheadAttention(need_weights)",
     [](int which, Generator& gen) {
       // Asking for the weights (averaged in case 0, per head in case 1) leaves the output's gradient alone.
       return make_case(std::make_shared<MultiheadAttention>(4, 2, 0.0, true, gen), {normal(gen, {2, 3, 4})},
                        [which](const MultiheadAttention& m, const std::vector<Tensor>& x) {
                          MhaOptions options;
                          options.need_weights = true;
                          options.average_attn_weights = which == 0;
                          return m.forward(x[0], x[0], x[0], options).output;
                        });
     }},
    {Layer::multihead_attention_dropout_train, "MultiheadAttention(dropout, train)",
     [](int, Generator& gen) {
       // Dropout on the attention weights draws from the layer's generator, reseeded before every call.
       auto generator = std::make_shared<Generator>(13);
       auto layer = std::make_shared<MultiheadAttention>(4, 2, 0.3, true, *generator);
       layer->train();
       return make_case(layer, {normal(gen, {2, 3, 4})},
                        [generator](const MultiheadAttention& m, const std::vector<Tensor>& x) {
                          generator->manual_seed(13);
                          return m.forward(x[0], x[0], x[0]).output;
                        });
     },
     1},

    // transformer.cpp: feed-forward, positional encodings, encoder/decoder layers and stacks, Transformer
    {Layer::feed_forward, "FeedForward",
     [](int which, Generator& gen) {
       // Case 0: relu in eval; case 1: gelu in training, with its dropout.
       return make_seeded_case<FeedForward>(
           which == 1, {normal(gen, {2, 3, 4})},
           [](const FeedForward& m, const std::vector<Tensor>& x) { return m.forward(x[0]); }, 4, 6, 0.2,
           which == 0 ? Activation::relu : Activation::gelu);
     }},
    {Layer::sinusoidal_positional_encoding, "SinusoidalPositionalEncoding",
     [](int which, Generator& gen) {
       // Case 1 starts at position 2, as a decoding step does.
       return make_case(std::make_shared<SinusoidalPositionalEncoding>(4, 8), {normal(gen, {2, 3, 4})},
                        [which](const SinusoidalPositionalEncoding& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], which == 0 ? 0 : 2);
                        });
     }},
    {Layer::learned_positional_encoding, "LearnedPositionalEncoding",
     [](int, Generator& gen) {
       return make_case(std::make_shared<LearnedPositionalEncoding>(5, 4, gen), {normal(gen, {2, 3, 4})},
                        [](const LearnedPositionalEncoding& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], 1);
                        });
     },
     1},
    {Layer::transformer_encoder_layer, "TransformerEncoderLayer",
     [](int which, Generator& gen) {
       // Case 0: post-norm in eval; case 1: pre-norm (norm_first) in training, dropout reseeded.
       return make_seeded_case<TransformerEncoderLayer>(
           which == 1, {normal(gen, {2, 3, 4})},
           [](const TransformerEncoderLayer& m, const std::vector<Tensor>& x) { return m.forward(x[0]); }, 4, 2, 6,
           0.1, Activation::relu, which == 1);
     }},
    {Layer::transformer_encoder_layer_masks, "TransformerEncoderLayer(masks)",
     [](int which, Generator& gen) {
       // Case 0: key padding and causal; case 1: a float src_mask added to the scores (a constant: the sdpa op
       // passes no gradient to masks).
       const Tensor src_mask = normal(gen, {3, 3});
       return make_seeded_case<TransformerEncoderLayer>(
           false, {normal(gen, {2, 3, 4}), trailing_padding(3)},
           [which, src_mask](const TransformerEncoderLayer& m, const std::vector<Tensor>& x) {
             return which == 0 ? m.forward(x[0], x[1], {}, true) : m.forward(x[0], {}, src_mask);
           },
           4, 2, 6, 0.1, Activation::gelu, false);
     }},
    {Layer::transformer_decoder_layer, "TransformerDecoderLayer",
     [](int which, Generator& gen) {
       // Case 0: post-norm in eval with memory padding; case 1: pre-norm in training, dropout reseeded.
       std::vector<Tensor> inputs{normal(gen, {2, 3, 4}), normal(gen, {2, 4, 4}), trailing_padding(4)};
       return make_seeded_case<TransformerDecoderLayer>(
           which == 1, inputs,
           [](const TransformerDecoderLayer& m, const std::vector<Tensor>& x) {
             return m.forward(x[0], x[1], true, {}, x[2]);
           },
           4, 2, 6, 0.1, Activation::relu, which == 1);
     }},
    {Layer::transformer, "Transformer",
     [](int, Generator& gen) {
       // 1 encoder and 1 decoder layer, d_model 4, 2 heads, d_ff 6, in eval.
       auto model = std::make_shared<Transformer>(4, 2, 1, 1, 6, 0.1, Activation::relu, false, gen);
       model->eval();
       return make_case(model, {normal(gen, {2, 3, 4}), normal(gen, {2, 2, 4}), trailing_padding(3)},
                        [](const Transformer& m, const std::vector<Tensor>& x) {
                          return m.forward(x[0], x[1], x[2], {}, x[2]);
                        });
     },
     1},

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

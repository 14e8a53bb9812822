// The layer table: rows of the layers of `Layer`, one per mode a layer is checked in (masks, train/eval), each
// gradient-checked in f64 as a whole, parameters included, by the layer test and by gradformer-gradcheck.
// Adding a layer = its class in its family's file, its class name in GRADFORMER_LAYERS, its rows in
// layer_table.cpp; a layer without a row, or an entry that names no Module class, fails to compile.
#pragma once

#include "nn/module.h"
#include "ops/op_table.h"

#include <array>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::nn {

// The one list of layers, by class name: `enum class Layer` and the names come from it.
// clang-format off
#define GRADFORMER_LAYERS(X)                                                                                        \
  /* layers.cpp */                                                                                                   \
  X(Linear) X(Embedding) X(LayerNorm) X(Dropout)                                                                     \
  /* attention.cpp */                                                                                                \
  X(Attention) X(SelfAttention) X(MultiheadAttention)                                                                \
  /* transformer.cpp: feed-forward, positional encodings, encoder/decoder layers, Transformer */                     \
  X(FeedForward) X(SinusoidalPositionalEncoding) X(LearnedPositionalEncoding) X(TransformerEncoderLayer)            \
  X(TransformerDecoderLayer) X(Transformer)                                                                          \
  /* rnn.cpp: cells, layers, additive attention */                                                                   \
  X(RNNCell) X(LSTMCell) X(GRUCell) X(RNN) X(LSTM) X(GRU) X(AdditiveAttention)
// clang-format on

enum class Layer : int {
#define GRADFORMER_LAYER_ENUMERATOR(name) name,
  GRADFORMER_LAYERS(GRADFORMER_LAYER_ENUMERATOR)
#undef GRADFORMER_LAYER_ENUMERATOR
  count  // not a layer: the number of layers
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Layer::count)> kLayerNames{
#define GRADFORMER_LAYER_NAME(name) #name,
    GRADFORMER_LAYERS(GRADFORMER_LAYER_NAME)
#undef GRADFORMER_LAYER_NAME
};

// The layer's class name ("MultiheadAttention").
constexpr std::string_view layer_name(Layer layer) { return kLayerNames[static_cast<size_t>(layer)]; }

// A layer built in f64 with its inputs; forward must give the same result on every call (a training-mode case
// runs under a GeneratorGuard over a freshly seeded generator, so its dropout masks repeat). Gradcheck
// differentiates the floating inputs and every parameter of the module.
struct LayerCase {
  std::shared_ptr<Module> module;
  std::vector<Tensor> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> forward;
};

struct LayerRow {
  Layer layer;
  std::string_view variant;  // the mode this row checks ("causal, key_padding_mask"); empty for the plain layer
  LayerCase (*make)(int which, Generator& gen);
  int cases = 2;
  double atol = 1e-5;
  double rtol = 1e-3;
};

std::span<const LayerRow> layer_table();
// "MultiheadAttention(need_weights)" for the row of MultiheadAttention with variant "need_weights", "Linear" for
// a row without a variant.
std::string row_name(const LayerRow& row);
// The row called `name` (as row_name gives it), or nullptr.
const LayerRow* find_layer(std::string_view name);
// Gradient-checks every case of a row, with its inputs as drawn and as non-contiguous copies.
std::vector<OpCheck> gradcheck_layer(const LayerRow& row, uint64_t seed = 0);

}  // namespace gradformer::nn

// The layer table: one row per layer (and per mode of a layer: masks, train/eval), gradient-checked in f64 as a
// whole, parameters included, by the layer test and by gradformer-gradcheck. Adding a layer = its class in its
// family's file, its name in `Layer`, its row in layer_table.cpp; a name without a row fails to compile.
#pragma once

#include "nn/module.h"
#include "ops/op_table.h"

#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace gradformer::nn {

enum class Layer : int {
  // layers.cpp
  linear, linear_no_bias, embedding, layer_norm, dropout_train,
  // attention.cpp: Attention, SelfAttention, MultiHeadAttention
  attention, attention_key_padding, self_attention, multihead_attention, multihead_attention_causal_padding,
  multihead_attention_need_weights, multihead_attention_dropout_train,

  // transformer.cpp: feed-forward, positional encodings, encoder/decoder layers and stacks, Transformer
  feed_forward, sinusoidal_positional_encoding, learned_positional_encoding, transformer_encoder_layer,
  transformer_encoder_layer_masks, transformer_decoder_layer, transformer,

  // rnn.cpp: RNN, LSTM and GRU cells and layers, additive attention
  rnn_cell, lstm_cell, gru_cell, rnn, lstm_two_layers, lstm_dropout_train, gru_lengths, gru_bidirectional, additive_attention,

  count  // not a layer: the number of rows
};

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
  std::string_view name;
  LayerCase (*make)(int which, Generator& gen);
  int cases = 2;
  double atol = 1e-5;
  double rtol = 1e-3;
};

std::span<const LayerRow> layer_table();
const LayerRow* find_layer(std::string_view name);
// Gradient-checks every case of a row, with its inputs as drawn and as non-contiguous copies.
std::vector<OpCheck> gradcheck_layer(const LayerRow& row, uint64_t seed = 0);
// The same with gradgradcheck (second order).
std::vector<OpCheck> gradgradcheck_layer(const LayerRow& row, uint64_t seed = 0);

}  // namespace gradformer::nn

// The model zoo: one constructor per model, all behind Seq2SeqModel so gradformer-train and -translate treat
// them alike. A model is described by a JSON configuration (stored in every checkpoint) and rebuilt from it.
//   rnn-attention      GRU or LSTM encoder-decoder with additive (Bahdanau) attention: the lecture's start
//   attention-seq2seq  attention without recurrence: the lecture's Attention and SelfAttention layers with dense
//                      layers and positional encodings, one head
//   transformer-tiny   Vaswani et al. 2017 at the sizes of the benchmark's configs (toy, small, base):
//   transformer-small  d_model 64/256/512, heads 4/4/8, d_ff 256/1024/2048, layers 2/3/6
//   transformer-base
#pragma once

#include "models/seq2seq.h"
#include "nn/transformer.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gradformer::models {

struct ModelOptions {
  int64_t vocab_size = 0;         // joint source/target vocabulary
  double dropout = 0.1;
  bool pre_norm = false;          // Transformer: LayerNorm before each sublayer instead of after
  bool share_embeddings = false;  // Transformer: one table for source, target and the output projection
  std::string rnn_cell = "gru";   // rnn-attention: gru or lstm
  int64_t max_length = 512;       // longest sequence the positional encodings cover
  std::string sublayers;          // Transformer: the name of the program's own Sublayers (below); "" for none
};

// A program's own feed-forward block and norm for the transformer-* models, through nn::TransformerLayerOptions'
// factories (either may be null: the library's then). `name` is what the configuration stores (as "sublayers",
// from ModelOptions::sublayers), so that a checkpoint says what it needs: make_model refuses a configuration that
// names sublayers unless given ones of that name, and sublayers for a configuration without them.
struct Sublayers {
  std::string name;
  nn::FeedForwardFactory feed_forward{};
  nn::NormFactory norm{};
};

std::vector<std::string> model_names();
// The full configuration of a named model: its preset sizes plus the options.
nlohmann::json model_config(const std::string& name, const ModelOptions& options);
// The largest size make_model accepts in any field (vocab_size, d_model, layers, max_length, ...): past it a
// configuration is corrupt, not a model, and building it would only exhaust memory.
inline constexpr int64_t max_model_size = int64_t{1} << 20;
// Checks a checkpoint's configuration against its model tensors' shapes (nn::LoadedCheckpoint::model_shapes)
// before anything is built: each size must equal the dimension of the tensor it makes (vocab_size the
// embedding's rows, d_model its columns, layers the count of encoder layers, max_length the positional table's
// rows, ...). Throws nn::CheckpointError naming `path`, the field, its value and the tensor that disagrees.
void check_config_fits(const nlohmann::json& config, const std::map<std::string, std::vector<int64_t>>& shapes,
                       const std::string& path);
// Builds the model a configuration describes (every size checked to lie in 1..max_model_size, FormatError
// naming the field otherwise), its parameters drawn from gen (the thread's current generator when
// none is given). The model keeps no generator: its dropout draws from the current one at every forward.
std::shared_ptr<Seq2SeqModel> make_model(const nlohmann::json& config, Generator& gen = current_generator());
// The same with the program's own sublayers, for a transformer-* configuration that names them.
std::shared_ptr<Seq2SeqModel> make_model(const nlohmann::json& config, const Sublayers& sublayers,
                                         Generator& gen = current_generator());

}  // namespace gradformer::models

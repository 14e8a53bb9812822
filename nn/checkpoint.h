// Checkpoints and weight files of modules, on top of the safetensors reader/writer (nn/safetensors.h).
//
// A weights file holds model.state_dict() under its own names and nothing else, so PyTorch loads it with
// safetensors.torch.load_file(path) and model.load_state_dict(...). A training checkpoint is one safetensors
// file holding the same model tensors under the same names, plus the optimizer state under "optimizer.<key>",
// the generator state as the I64 tensor "training.generator", and "__metadata__" entries:
//   format = "gradformer-checkpoint", version = "1", config = the caller's model configuration (JSON text),
//   training = {"step": ..., "extra": ...} (JSON text), optimizer = the optimizer's type name (when saved).
// A checkpoint of several optimizers (one per part of a model, say) holds each under its name instead:
// "optimizer.<name>.<key>", with the metadata entry optimizers = {"<name>": "<type name>", ...} (JSON text).
// Parameter groups are part of an optimizer's state dict (optim::Optimizer::state_dict), so they are saved and
// restored either way; files written before groups existed load as one group.
// In PyTorch, dropping the keys that start with "optimizer." or "training." leaves the model's state dict.
// Every save goes through safetensors::save_atomic, so a failed save leaves the previous file intact.
//
// Bool tensors (masks kept as buffers) are stored as BOOL; files written before BOOL was supported hold them as
// I64 0/1, which still load into bool buffers. Loading converts every stored dtype to the target tensor's, as
// PyTorch's load_state_dict does (BF16, F16, F32, F64 into f32 or f64; BOOL, U8, I8, I16, I32, I64 into i64 or
// bool), except that floating and integer tensors do not mix (a mismatch that PyTorch would silently convert).
// `--save-dtype bf16` checkpoints hold the model's floating tensors as BF16 (rounded to nearest even) and no
// optimizer state: half the size, for decoding. Not here: which modules or optimizers exist (the caller builds
// them, from read_checkpoint_config when resuming), the training loop, the byte format itself.
#pragma once

#include "autograd/generator.h"
#include "autograd/tensor.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gradformer::nn {

// A well-formed file that is not what the caller asked for: no gradformer metadata, another version, tensors
// that do not fit the model or optimizer. The message starts with the file's path.
class CheckpointError : public FormatError { using FormatError::FormatError; };

// A contiguous copy of `tensor`'s elements (f32 → F32, f64 → F64, i64 → I64, bool → BOOL).
safetensors::TensorRecord to_record(const Tensor& tensor);
// A new leaf tensor holding the record's values and shape: F64 → f64, the other floating dtypes → f32 (exactly),
// the integer dtypes → i64, BOOL → bool.
Tensor from_record(const safetensors::TensorRecord& record);

// Writes model.state_dict() with `metadata` as "__metadata__"; "format" defaults to "pt", which is what
// safetensors.torch.save_file writes and what Hugging Face loaders look for. Throws ValueError for metadata
// that is not UTF-8, IOError when the file cannot be written.
void save_weights(const std::string& path, const Module& model,
                  const std::map<std::string, std::string>& metadata = {});

// Reads a weights file (ours, PyTorch's, or a training checkpoint, whose optimizer and training tensors are
// skipped) into `model`. With strict, every model key must be present and no other key may be; shapes must
// always match, and every dtype loads converted as described above (floating into floating, integer and BOOL
// into i64 or bool).
// Throws IOError/FormatError for an unreadable or malformed file and CheckpointError listing every problem
// otherwise; the model is only written once everything has been checked.
void load_weights(const std::string& path, Module& model, bool strict = true);

// What a training loop needs to continue where it stopped, beyond the model and optimizer tensors.
struct TrainingState {
  int64_t step = 0;            // training steps taken
  Generator::State generator;  // the generator driving dropout and shuffling
  nlohmann::json extra;        // anything else: data position, epoch, best validation loss, losses so far
};

struct CheckpointWriteOptions {
  // Floating model tensors as BF16 (see above); optimizer tensors, if any, stay as they are.
  bool model_in_bfloat16 = false;
};

// Writes the training checkpoint described above. `optimizer` may be null (no "optimizer." tensors then).
// Throws ValueError for a model key that starts with "optimizer." or "training." (it would be ambiguous) or
// for a config or extra holding strings that are not UTF-8, before touching the disk; IOError when writing fails.
void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const TrainingState& state, const nlohmann::json& config,
                     const CheckpointWriteOptions& options = {});

// Optimizers of a checkpoint that holds several, each under a name: non-empty, without '.', distinct.
using NamedOptimizers = std::vector<std::pair<std::string, const optim::Optimizer*>>;
using NamedMutableOptimizers = std::vector<std::pair<std::string, optim::Optimizer*>>;

// The same checkpoint with each optimizer's state under "optimizer.<name>." (see above). Throws ValueError for a
// bad or repeated name, or a null optimizer.
void save_checkpoint(const std::string& path, const Module& model, const NamedOptimizers& optimizers,
                     const TrainingState& state, const nlohmann::json& config,
                     const CheckpointWriteOptions& options = {});

struct LoadedCheckpoint {
  nlohmann::json config;
  TrainingState state;
  bool has_optimizer = false;  // whether the file holds optimizer state
  // The names of a checkpoint with several optimizers, with their type names; empty for one (or none).
  std::map<std::string, std::string> optimizer_types;
  // The shape of every model tensor (not optimizer or training ones), so that the sizes in `config` can be
  // checked against the file before a model of those sizes is built (models::check_config_fits).
  std::map<std::string, std::vector<int64_t>> model_shapes;
};

// The id gradformer-train gives a run (training.extra.run_id: random, written into each of its checkpoints), read
// from the header alone; "" for a checkpoint without one (written before runs had ids, or by the API).
// Throws as safetensors::load_metadata does.
std::string run_id_of(const std::string& path);

// Reads and checks a checkpoint's metadata and training state without any model, so that the caller can
// build the model the config describes. A file without our metadata (a plain weights file) is a
// CheckpointError saying so.
LoadedCheckpoint read_checkpoint_config(const std::string& path);

// Checks everything first: the metadata and training state, that the model tensors match `model` exactly
// (keys, shapes, dtypes; one CheckpointError lists every missing, unexpected and mismatched key), and, when
// `optimizer` is given, that the file holds state of the same optimizer type that fits it. Only then loads
// both, so a failed load leaves model and optimizer as they were. The generator state is returned, not
// applied: the caller decides which generator it belongs to. With a null optimizer, saved optimizer state
// is ignored (fine-tuning from a checkpoint with a fresh optimizer).
LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer);
// The same for a checkpoint of several optimizers: every name saved must be given and no other, each with an
// optimizer of the saved type that fits; nothing is loaded unless everything fits.
LoadedCheckpoint load_checkpoint(const std::string& path, Module& model, const NamedMutableOptimizers& optimizers);

// What average_checkpoints did: the number of tensors averaged, and what the caller should tell its user (inputs
// from different runs, the same file given twice), one sentence each.
struct AverageReport {
  size_t tensors = 0;
  std::vector<std::string> warnings;
};

// fairseq's average_checkpoints.py: writes to `output` a checkpoint whose model tensors are the element-wise
// mean of the `inputs`' (accumulated in f64, written in the first input's dtype: F64 and BF16 stay, the other
// floating dtypes become F32), with the first input's config (model, vocabulary, tokenizer), step and generator,
// "averaged_from" listing the inputs in its training extra, and no optimizer state. Every input must be a
// gradformer checkpoint of the same model: the same config and the same model keys, shapes and floating or
// integer kind; integer and bool tensors (buffers) must be equal and are copied. Otherwise CheckpointError names
// the first mismatched key and the two files. Inputs of different runs (run_id_of) or one file given twice are
// averaged, with a warning each. Written with save_atomic; refuses (IOError, before reading an input) an output
// that is one of the inputs (same_file_as), is not a regular file, or exists while `overwrite` is false; without
// `overwrite` the output is created exclusively, so that of two runs writing one new output the second fails.
AverageReport average_checkpoints(const std::vector<std::string>& inputs, const std::string& output, bool overwrite);

}  // namespace gradformer::nn

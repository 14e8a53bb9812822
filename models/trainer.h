// The training loop of gradformer-train: Adam with the Transformer paper's warmup schedule, label-smoothed cross
// entropy over non-padding target tokens, global-norm gradient clipping, length-bucketed batches, validation
// loss and BLEU every N steps, `last` and `best` checkpoints written atomically, exact resumption (same batches,
// same random numbers), and a stop on a non-finite loss that leaves the last checkpoint intact.
//
// Data-parallel (nn/distributed.h): every rank runs the same loop over the same global batches; each takes a
// contiguous share of each batch's sentences (shares may be uneven, even empty), and the loss of a step is
// normalised by the global count of non-padding target tokens (allreduced), so the summed gradient equals the
// one a single process computes on the joint batch. Parameters and gradients live in one flat buffer
// (nn/flat_parameters.h); the gradient is allreduced after backward, then clipped by its global norm. Rank 0
// alone calls on_step/on_valid, runs validation (its results are broadcast) and writes checkpoints; every rank
// calls the constructor, resume and run together: they hold collectives.
// Not here: flags and printing (examples/train.cpp), what the model is (models/zoo.h), how text becomes ids
// (models/task.h).
#pragma once

#include "models/seq2seq.h"
#include "models/task.h"
#include "nn/distributed.h"
#include "nn/flat_parameters.h"
#include "nn/optim.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gradformer::models {

struct TrainConfig {
  std::string out_dir;             // last.safetensors, best.safetensors, train.log, loss.svg
  int64_t max_steps = 0;           // 0: no limit
  double max_minutes = 0;          // 0: no limit
  size_t max_tokens = 4096;        // token budget of a batch (padded, larger side)
  double lr_factor = 1.0;          // Noam: factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)
  int64_t warmup_steps = 400;
  double label_smoothing = 0.1;
  double clip_norm = 1.0;          // 0: no clipping
  int64_t valid_every = 200;
  int64_t valid_bleu_sentences = 200;  // decoded greedily for the validation BLEU (0: skip BLEU)
  int64_t patience = 0;            // stop after this many validations without a better loss (0: never)
  uint64_t seed = 1;
  int64_t update_freq = 1;         // batches (micro-batches) accumulated per optimizer step, fairseq's --update-freq
  DType precision = DType::f32;    // bf16: run() trains and validates under AutocastGuard (mixed precision)
};

struct StepStats {
  int64_t step = 0;
  int64_t epoch = 0;
  double loss = 0;          // per target token, smoothed loss of this step
  double learning_rate = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;
  double elapsed_seconds = 0;
};

struct ValidStats {
  int64_t step = 0;
  double loss = 0;  // per target token, without label smoothing
  double bleu = 0;
  double chrf = 0;
  bool best = false;
};

// Why run() returned.
enum class StopReason { max_steps, max_minutes, early_stopping };

class Trainer {
 public:
  // model_config is stored in every checkpoint so gradformer-translate can rebuild the model. Flattens the
  // model's parameters (convert its dtype before), and with several ranks gives every rank rank 0's weights
  // and each rank r > 0 a dropout stream of its own.
  Trainer(Seq2SeqModel& model, const TextCodec& codec, std::vector<Example> train, std::vector<Example> valid,
          std::vector<data::SentencePair> valid_text, TrainConfig config, nlohmann::json model_config,
          const nn::Distributed& distributed = nn::Distributed::single());

  // Continues from a checkpoint written by this trainer: model, optimizer, step, data position, generator (each
  // rank's own). Every rank reads the file. A checkpoint written by a job of another size is refused with a
  // ValueError: its batch shares and random streams belong to that size.
  void resume(const std::string& checkpoint_path);
  // Trains until a limit or early stopping; throws NumericalError (after logging) on a non-finite loss, with
  // the last checkpoint untouched.
  StopReason run(const std::function<void(const StepStats&)>& on_step, const std::function<void(const ValidStats&)>& on_valid);

  // Mean loss per target token (no smoothing) over a set of examples, in eval mode.
  double evaluate_loss(const std::vector<Example>& examples);
  const std::vector<std::pair<double, double>>& train_losses() const { return train_losses_; }
  const std::vector<std::pair<double, double>>& valid_losses() const { return valid_losses_; }
  int64_t step() const { return step_; }

 private:
  void save(const std::string& name);
  ValidStats validate();
  double learning_rate(int64_t step) const;

  Seq2SeqModel& model_;
  const TextCodec& codec_;
  std::vector<Example> train_, valid_;
  std::vector<data::SentencePair> valid_text_;
  TrainConfig config_;
  nlohmann::json model_config_;
  const nn::Distributed& distributed_;
  std::unique_ptr<nn::FlatParameters> flat_;
  std::unique_ptr<optim::Adam> optimizer_;
  int64_t d_model_;
  int64_t step_ = 0, epoch_ = 0, batch_in_epoch_ = 0;
  double best_valid_loss_ = INFINITY;
  int64_t validations_without_improvement_ = 0;
  std::vector<std::pair<double, double>> train_losses_, valid_losses_;
};

}  // namespace gradformer::models

// The training loop of gradformer-train: Adam with the Transformer paper's warmup schedule (both TrainConfig's
// to change), label-smoothed cross entropy over non-padding target tokens, global-norm gradient clipping,
// length-bucketed batches, validation loss and BLEU every N steps, `last` and `best` checkpoints (and the last N
// step checkpoints, for averaging) written atomically, loss.svg and report.html, exact resumption (same batches, same random
// numbers), a stop on request (a signal) that finishes the step and writes `last`, and a stop on a non-finite loss
// that leaves the last checkpoint intact.
// Trainer::run is the loop to read first; each thing a step does is one private function below it.
//
// Data-parallel (nn/distributed.h): every rank runs the same loop over the same global batches; each takes a
// contiguous share of each batch's sentences (shares may be uneven, even empty), and the loss of a step is
// normalised by the global count of non-padding target tokens (allreduced), so the summed gradient equals the
// one a single process computes on the joint batch. Parameters and gradients live in one flat buffer
// (nn/flat_parameters.h); the gradient is allreduced in buckets started during the step's last backward
// (nn::GradientReducer), then clipped by its global norm. Rank 0
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
#include "nn/schedule.h"

#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gradformer::models {

enum class BudgetClock { wall, process_cpu };

struct TrainConfig {
  std::string out_dir;             // last.safetensors, best.safetensors, train.log, loss.svg, report.html
  // Step checkpoints kept (step-000400.safetensors, written beside `last` at each validation, for averaging with
  // gradformer-average); the oldest this run wrote beyond the count is removed (only a step-*.safetensors in
  // out_dir that carries this run's id). 0: none are written.
  int64_t keep_last = 0;
  int64_t max_steps = 0;           // 0: no limit
  double max_minutes = 0;          // 0: no limit
  // What --max-minutes counts. Process CPU time (summed over the process's threads) lets equal-time budgets stay
  // equal on a shared machine, where a run's wall time depends on what else runs beside it.
  BudgetClock budget_clock = BudgetClock::wall;
  size_t max_tokens = 4096;        // token budget of a batch (padded, larger side)
  // The learning rate of each step; null: nn::NoamSchedule(the model's width, warmup_steps, lr_factor), where the
  // width is the configuration's d_model (hidden_size for rnn-attention).
  std::shared_ptr<const nn::LRSchedule> schedule;
  double lr_factor = 1.0;
  int64_t warmup_steps = 400;
  // Adam as in "Attention Is All You Need" (betas 0.9 and 0.98, eps 1e-9); its lr is the schedule's.
  optim::AdamOptions adam{.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-9};
  double label_smoothing = 0.1;
  double clip_norm = 1.0;          // 0: no clipping
  int64_t valid_every = 200;
  int64_t valid_bleu_sentences = 200;  // decoded greedily for the validation BLEU (0: skip BLEU)
  int64_t patience = 0;            // stop after this many validations without a better loss (0: never)
  // A run has diverged when this many validations in a row lose more than log(vocabulary size) +
  // divergence_margin nats per token (worse than a uniform guess over the vocabulary, which an untrained model
  // is close to): run() then stops with NumericalError. 0: never.
  int64_t divergence_validations = 3;
  double divergence_margin = 2.0;
  uint64_t seed = 1;
  int64_t update_freq = 1;         // batches (micro-batches) accumulated per optimizer step, fairseq's --update-freq
  bool best_in_bfloat16 = false;   // best.safetensors as a decoding checkpoint: BF16 model, no optimizer state
  // What the examples were made from, stored under "data" in every checkpoint so that gradformer-train's resume
  // reads the same data; unset, nothing is stored (the caller knows its data).
  std::optional<DataSettings> data;
  nn::GradientReducerOptions gradient_allreduce;  // buckets and overlap of the allreduce (--bucket-mb, --no-overlap)
  DType precision = DType::f32;    // bf16: run() trains and validates under AutocastGuard (mixed precision)
};

struct StepStats {
  int64_t step = 0;
  int64_t epoch = 0;
  double loss = 0;          // per target token, the label-smoothed loss this step optimised
  double nll = 0;           // per target token, the same logits' loss without smoothing (comparable to validation)
  double learning_rate = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;
  double elapsed_seconds = 0;  // wall time since run() began
  double budget_seconds = 0;   // since run() began, on the clock of TrainConfig::budget_clock
};

struct ValidStats {
  int64_t step = 0;
  size_t sentences = 0;  // 0: there is no validation set, and nothing below was measured
  double loss = 0;       // per target token, without label smoothing
  double bleu = 0;
  double chrf = 0;
  bool best = false;
};

// Why run() returned.
enum class StopReason { max_steps, max_minutes, early_stopping, interrupted };

class Trainer {
 public:
  // model_config is stored in every checkpoint so gradformer-translate can rebuild the model. Flattens the
  // model's parameters (convert its dtype before), and with several ranks gives every rank rank 0's weights.
  // Every rank's dropout stream is its own, seeded from config.seed and the rank.
  Trainer(Seq2SeqModel& model, const TextCodec& codec, std::vector<Example> train, std::vector<Example> valid,
          std::vector<data::SentencePair> valid_text, TrainConfig config, nlohmann::json model_config,
          const nn::Distributed& distributed = nn::Distributed::single());

  // Continues from a checkpoint written by this trainer: model, optimizer, step, data position, generator (each
  // rank's own), and the run's id, so the step checkpoints of the run in out_dir are again its own to expire.
  // Every rank reads the file. A checkpoint written by a job of another size is refused with a
  // ValueError: its batch shares and random streams belong to that size.
  void resume(const std::string& checkpoint_path);
  // Trains until a limit, early stopping, or `interrupt` (if given) becoming true on any rank: the step under way
  // is finished and `last` written (when a step was taken). Throws NumericalError (after logging) on a
  // non-finite loss, with the last checkpoint untouched, and after the validation that shows the run diverged
  // (TrainConfig::divergence_validations), its checkpoints written.
  StopReason run(const std::function<void(const StepStats&)>& on_step,
                 const std::function<void(const ValidStats&)>& on_valid,
                 const std::atomic<bool>* interrupt = nullptr);

  // Mean loss per target token (no smoothing) over a set of examples, in eval mode.
  double evaluate_loss(const std::vector<Example>& examples);
  // (step, value) series, as loss.svg plots them: the smoothed training loss, the training and validation NLL
  // per target token, and the validation BLEU.
  const std::vector<std::pair<double, double>>& train_losses() const { return train_losses_; }
  const std::vector<std::pair<double, double>>& train_nll() const { return train_nll_; }
  const std::vector<std::pair<double, double>>& valid_losses() const { return valid_losses_; }
  const std::vector<std::pair<double, double>>& valid_bleu() const { return valid_bleu_; }
  int64_t step() const { return step_; }
  // Random, given at construction (or taken from the checkpoint by resume) and written into every checkpoint
  // (training.extra.run_id, nn::run_id_of): what tells this run's files from another's.
  const std::string& run_id() const { return run_id_; }
  // Removes the gradformer step checkpoints (step-*.safetensors) in out_dir that carry another run's id or none
  // (--overwrite: a new run must not leave an older one's beside its own, for gradformer-average to mix), and
  // returns their names. Files of this run and files that are not gradformer checkpoints stay.
  std::vector<std::string> remove_step_checkpoints_of_other_runs();

 private:
  using Clock = std::chrono::steady_clock;
  // This rank's part of the next optimizer step.
  struct StepWork {
    std::vector<TensorBatch> shares;  // one per micro-batch in which this rank has sentences
    int64_t micro_batches = 0;
    int64_t local_tokens = 0;
  };

  std::vector<data::Batch> epoch_batches() const;
  StepWork take_step(const std::vector<data::Batch>& batches) const;
  std::optional<StopReason> vote_stop(int64_t local_tokens, const std::atomic<bool>* interrupt, int64_t& global_tokens);
  StepStats train_step(const StepWork& work, int64_t global_tokens);
  double budget_seconds_used() const;
  bool validation_due() const { return config_.valid_every > 0 && step_ % config_.valid_every == 0; }
  ValidStats validate();
  void checkpoint(const ValidStats& valid);
  void save(const std::string& name);
  std::string checkpoint_note() const;
  double divergence_threshold() const;
  std::string step_checkpoint_path(int64_t step) const;
  void write_pictures() const;

  Seq2SeqModel& model_;
  const TextCodec& codec_;
  std::vector<Example> train_, valid_;
  std::vector<data::SentencePair> valid_text_;
  TrainConfig config_;
  nlohmann::json model_config_;
  const nn::Distributed& distributed_;
  std::unique_ptr<nn::FlatParameters> flat_;
  std::shared_ptr<const nn::LRSchedule> schedule_;
  std::unique_ptr<nn::GradientReducer> reducer_;
  std::unique_ptr<optim::Adam> optimizer_;
  std::vector<size_t> source_lengths_, target_lengths_;
  // What the model's dropout draws from in run(), where a GeneratorGuard makes it current; saved in every
  // checkpoint, so exact resumption depends on no other generator.
  Generator dropout_generator_;
  int64_t step_ = 0, epoch_ = 0, batch_in_epoch_ = 0;
  double best_valid_loss_ = INFINITY;
  int64_t validations_without_improvement_ = 0;
  int64_t diverged_validations_ = 0;  // in a row, see TrainConfig::divergence_validations
  std::string run_id_;
  std::vector<std::pair<double, double>> train_losses_, train_nll_, valid_losses_, valid_bleu_;
  // What report.html plots besides: per step, and per validation.
  std::vector<std::pair<double, double>> learning_rates_, tokens_per_second_, valid_chrf_;
  // The step checkpoints this run wrote and still keeps, oldest first (file names in out_dir); only these are
  // ever removed, each only if it still carries run_id_. A resume finds them again in out_dir by their run id,
  // never by names read from a checkpoint.
  std::vector<std::string> step_checkpoints_;
  Clock::time_point started_, window_start_;  // of run(), and of the tokens-per-second window
  std::clock_t cpu_started_ = 0;               // the process's CPU time when run() began
  int64_t tokens_in_window_ = 0;
};

// One run per directory: an exclusive flock on DIR/.lock (DIR is created), held until destruction, with the
// holder's PID in the file for the next run's message; the file is removed at destruction. Taking it also proves
// DIR writable before any work. A DIR it created is removed again if the run wrote nothing there.
// Throws IOError naming DIR when it cannot be created or written, or when another process holds the lock.
class OutDirLock {
 public:
  explicit OutDirLock(const std::string& dir);
  ~OutDirLock();
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;

 private:
  std::string dir_;
  bool created_ = false;
  int fd_ = -1;
};

}  // namespace gradformer::models

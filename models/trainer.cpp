#include "models/trainer.h"

#include "models/decode.h"
#include "models/metrics.h"
#include "models/svg.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "ops/ops.h"

#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <filesystem>

namespace gradformer::models {
namespace {

std::vector<size_t> lengths_of(const std::vector<Example>& examples, bool source) {
  std::vector<size_t> out;
  for (const Example& e : examples) out.push_back(source ? e.source.size() : e.target.size() + 1);
  return out;
}

// Token-level cross entropy of a batch: logits (B, T, V) against tgt_out (B, T), padding ignored, mean over tokens.
Tensor batch_loss(const Tensor& logits, const Tensor& tgt_out, double label_smoothing) {
  CrossEntropyOptions options;
  options.ignore_index = data::pad_id;
  options.label_smoothing = label_smoothing;
  return cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(tgt_out, {-1}), options);
}

// A generator state as words, and back, for gathering every rank's into a checkpoint.
std::vector<uint64_t> state_words(const Generator::State& state) {
  std::vector<uint64_t> words(state.words.begin(), state.words.end());
  words.push_back(state.has_spare_normal ? 1 : 0);
  words.push_back(std::bit_cast<uint64_t>(state.spare_normal));
  return words;
}

Generator::State state_of_words(const std::vector<uint64_t>& words) {
  Generator::State state;
  std::copy_n(words.begin(), 4, state.words.begin());
  state.has_spare_normal = words.at(4) != 0;
  state.spare_normal = std::bit_cast<double>(words.at(5));
  return state;
}

}  // namespace

Trainer::Trainer(Seq2SeqModel& model, const TextCodec& codec, std::vector<Example> train, std::vector<Example> valid,
                 std::vector<data::SentencePair> valid_text, TrainConfig config, nlohmann::json model_config,
                 const nn::Distributed& distributed)
    : model_(model),
      codec_(codec),
      train_(std::move(train)),
      valid_(std::move(valid)),
      valid_text_(std::move(valid_text)),
      config_(std::move(config)),
      model_config_(std::move(model_config)),
      distributed_(distributed),
      d_model_(model_config_.value("d_model", int64_t{512})) {
  if (train_.empty()) fail<ValueError>("train", "the training set is empty");
  if (config_.update_freq < 1)
    fail<ValueError>("train", "update_freq (--update-freq) is {}; it counts the batches accumulated per optimizer "
                     "step and must be at least 1", config_.update_freq);
  flat_ = std::make_unique<nn::FlatParameters>(model_);
  distributed_.broadcast_parameters(*flat_);
  if (distributed_.rank() > 0)
    default_generator().manual_seed(config_.seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(distributed_.rank()));
  optim::AdamOptions adam;
  adam.lr = learning_rate(1);
  adam.beta1 = 0.9;
  adam.beta2 = 0.98;
  adam.eps = 1e-9;
  optimizer_ = std::make_unique<optim::Adam>(model_.parameters(), adam);
  std::filesystem::create_directories(config_.out_dir);
  // A run killed while writing a checkpoint leaves NAME.tmp.PID beside the intact NAME; a new run tidies them.
  if (distributed_.is_root())
    for (const char* name : {"last.safetensors", "best.safetensors"})
      safetensors::remove_stale_temporaries(config_.out_dir + "/" + name);
}

double Trainer::learning_rate(int64_t step) const {
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  return config_.lr_factor * std::pow(static_cast<double>(d_model_), -0.5) *
         std::min(std::pow(s, -0.5), s * std::pow(static_cast<double>(config_.warmup_steps), -1.5));
}

void Trainer::save(const std::string& name) {
  distributed_.check_same_parameters(*flat_, fmt::format("step {}", step_));
  const std::vector<uint64_t> generators = distributed_.gather(state_words(default_generator().state()));
  if (!distributed_.is_root()) return;
  nlohmann::json rank_generators = nlohmann::json::array();
  for (size_t start = 0; start < generators.size(); start += 6)
    rank_generators.push_back(std::vector<uint64_t>(generators.begin() + static_cast<ptrdiff_t>(start),
                                                    generators.begin() + static_cast<ptrdiff_t>(start + 6)));
  nn::TrainingState state;
  state.step = step_;
  state.generator = default_generator().state();
  state.extra = {{"epoch", epoch_},
                 {"batch_in_epoch", batch_in_epoch_},
                 {"best_valid_loss", std::isfinite(best_valid_loss_) ? nlohmann::json(best_valid_loss_) : nlohmann::json()},
                 {"validations_without_improvement", validations_without_improvement_},
                 {"train_losses", train_losses_},
                 {"valid_losses", valid_losses_},
                 {"world_size", distributed_.size()},
                 {"rank_generators", rank_generators}};
  nlohmann::json config = model_config_;
  config["codec"] = codec_.to_json();
  nn::save_checkpoint(config_.out_dir + "/" + name, model_, optimizer_.get(), state, config);
}

void Trainer::resume(const std::string& checkpoint_path) {
  const nn::LoadedCheckpoint saved = nn::read_checkpoint_config(checkpoint_path);
  const int64_t saved_ranks = saved.state.extra.value("world_size", int64_t{1});
  if (saved_ranks != distributed_.size())
    fail<ValueError>("resume", "{} was written by a job of {} process(es), this one has {}: resume it with "
                     "mpirun -np {} (each rank's share of the batches and its random stream belong to that count), "
                     "or start a new run", checkpoint_path, saved_ranks, distributed_.size(), saved_ranks);
  const nn::LoadedCheckpoint loaded = nn::load_checkpoint(checkpoint_path, model_, optimizer_.get());
  distributed_.check_same_parameters(*flat_, "loading " + checkpoint_path);
  step_ = loaded.state.step;
  const nlohmann::json& extra = loaded.state.extra;
  default_generator().set_state(
      distributed_.size() > 1
          ? state_of_words(extra.at("rank_generators").at(static_cast<size_t>(distributed_.rank())).get<std::vector<uint64_t>>())
          : loaded.state.generator);
  epoch_ = extra.value("epoch", int64_t{0});
  batch_in_epoch_ = extra.value("batch_in_epoch", int64_t{0});
  best_valid_loss_ = extra.contains("best_valid_loss") && extra["best_valid_loss"].is_number()
                         ? extra["best_valid_loss"].get<double>()
                         : INFINITY;
  validations_without_improvement_ = extra.value("validations_without_improvement", int64_t{0});
  train_losses_ = extra.value("train_losses", train_losses_);
  valid_losses_ = extra.value("valid_losses", valid_losses_);
}

double Trainer::evaluate_loss(const std::vector<Example>& examples) {
  if (examples.empty()) return 0.0;
  NoGradGuard no_grad;
  model_.eval();
  Generator order(0);
  double total = 0;
  int64_t tokens = 0;
  for (const data::Batch& b : data::make_batches(lengths_of(examples, true), lengths_of(examples, false),
                                                 config_.max_tokens, order, false)) {
    const TensorBatch batch = make_tensor_batch(examples, b.indices);
    const Tensor loss = batch_loss(model_.forward(batch.src, batch.tgt_in), batch.tgt_out, 0.0);
    total += loss.item() * static_cast<double>(batch.target_tokens);
    tokens += batch.target_tokens;
  }
  model_.train();
  return total / static_cast<double>(std::max<int64_t>(tokens, 1));
}

ValidStats Trainer::validate() {
  ValidStats stats;
  stats.step = step_;
  // Rank 0 validates alone; the others wait in the broadcast below, then keep the same bookkeeping.
  const size_t count = !distributed_.is_root() ? 0 : std::min(valid_text_.size(),
                       static_cast<size_t>(std::max<int64_t>(config_.valid_bleu_sentences, 0)));
  if (distributed_.is_root()) stats.loss = evaluate_loss(valid_);
  if (count > 0) {
    model_.eval();
    std::vector<std::string> hypotheses, references;
    for (size_t start = 0; start < count; start += 64) {
      std::vector<std::vector<int64_t>> sources;
      for (size_t i = start; i < std::min(count, start + 64); ++i) {
        sources.push_back(codec_.encode_source(valid_text_[i].source, 256));
        references.push_back(codec_.tokenizer().detokenize(codec_.tokenizer().tokenize(valid_text_[i].target)));
      }
      for (const auto& ids : translate(model_, make_source_batch(sources))) hypotheses.push_back(codec_.decode(ids));
    }
    model_.train();
    stats.bleu = metrics::corpus_bleu(hypotheses, references).score;
    stats.chrf = metrics::corpus_chrf(hypotheses, references).score;
  }
  std::array<double, 3> results{stats.loss, stats.bleu, stats.chrf};
  distributed_.broadcast(results);
  stats.loss = results[0];
  stats.bleu = results[1];
  stats.chrf = results[2];
  stats.best = stats.loss < best_valid_loss_;
  if (stats.best) {
    best_valid_loss_ = stats.loss;
    validations_without_improvement_ = 0;
  } else {
    ++validations_without_improvement_;
  }
  valid_losses_.emplace_back(static_cast<double>(step_), stats.loss);
  return stats;
}

StopReason Trainer::run(const std::function<void(const StepStats&)>& on_step,
                        const std::function<void(const ValidStats&)>& on_valid) {
  using Clock = std::chrono::steady_clock;
  const AutocastGuard autocast(config_.precision);
  const auto started = Clock::now();
  model_.train();
  const std::vector<size_t> source_lengths = lengths_of(train_, true), target_lengths = lengths_of(train_, false);
  int64_t tokens_since = 0;
  auto since = Clock::now();
  for (;;) {
    // The batches of an epoch depend only on (seed, epoch), so a resumed run sees the same ones.
    Generator order(config_.seed * 1000003 + static_cast<uint64_t>(epoch_));
    const std::vector<data::Batch> batches =
        data::make_batches(source_lengths, target_lengths, config_.max_tokens, order, true);
    const int64_t batch_count = static_cast<int64_t>(batches.size());
    while (batch_in_epoch_ < batch_count) {
      // A step takes update_freq batches (fewer at the end of an epoch); each rank its contiguous share of
      // each batch's sentences, possibly none.
      const int64_t micro_batches = std::min(config_.update_freq, batch_count - batch_in_epoch_);
      std::vector<TensorBatch> shares;
      int64_t local_tokens = 0;
      for (int64_t m = 0; m < micro_batches; ++m) {
        const std::vector<size_t>& indices = batches[static_cast<size_t>(batch_in_epoch_ + m)].indices;
        const size_t ranks = static_cast<size_t>(distributed_.size()), rank = static_cast<size_t>(distributed_.rank());
        const std::vector<size_t> share(indices.begin() + static_cast<ptrdiff_t>(indices.size() * rank / ranks),
                                        indices.begin() + static_cast<ptrdiff_t>(indices.size() * (rank + 1) / ranks));
        if (share.empty()) continue;
        shares.push_back(make_tensor_batch(train_, share));
        local_tokens += shares.back().target_tokens;
      }
      // Every rank stops when any rank's clock says so: one allreduce carries the vote and the token count.
      const double minutes = std::chrono::duration<double>(Clock::now() - started).count() / 60.0;
      const bool out_of_steps = config_.max_steps > 0 && step_ >= config_.max_steps;
      std::array<int64_t, 2> totals{local_tokens, config_.max_minutes > 0 && minutes >= config_.max_minutes ? 1 : 0};
      distributed_.allreduce_sum(totals);
      const int64_t global_tokens = totals[0];
      if (out_of_steps || totals[1] > 0) {
        save("last.safetensors");
        return out_of_steps ? StopReason::max_steps : StopReason::max_minutes;
      }

      optimizer_->zero_grad();
      double loss_sum = 0;  // this rank's loss summed over its target tokens
      for (const TensorBatch& batch : shares) {
        const Tensor loss = batch_loss(model_.forward(batch.src, batch.tgt_in), batch.tgt_out, config_.label_smoothing);
        const double loss_value = loss.item();
        if (!std::isfinite(loss_value))
          fail<NumericalError>("train", "step {}: the loss is {}; stopping without writing a checkpoint (the last one "
                               "in {} is intact)", step_ + 1, loss_value, config_.out_dir);
        // The share's mean loss weighted by its part of the global tokens: the single-process gradient of the
        // joint batch once summed over shares and ranks. Exactly the mean when one process takes one batch.
        const double weight = static_cast<double>(batch.target_tokens) / static_cast<double>(global_tokens);
        (weight == 1.0 ? loss : loss * weight).backward();
        loss_sum += loss_value * static_cast<double>(batch.target_tokens);
      }
      distributed_.allreduce_gradients(*flat_);
      std::array<double, 1> loss_total{loss_sum};
      distributed_.allreduce_sum(loss_total);
      const double loss_value = loss_total[0] / static_cast<double>(std::max<int64_t>(global_tokens, 1));
      StepStats stats;
      stats.grad_norm = config_.clip_norm > 0 ? optim::clip_grad_norm_(model_.parameters(), config_.clip_norm) : 0.0;
      if (!std::isfinite(stats.grad_norm))
        fail<NumericalError>("train", "step {}: the gradient norm is {}; stopping without writing a checkpoint",
                             step_ + 1, stats.grad_norm);
      ++step_;
      batch_in_epoch_ += micro_batches;  // these batches are done: a resumed run starts after them
      optimizer_->set_lr(learning_rate(step_));
      optimizer_->step();
      tokens_since += global_tokens;
      const double window = std::chrono::duration<double>(Clock::now() - since).count();
      stats.step = step_;
      stats.epoch = epoch_;
      stats.loss = loss_value;
      stats.learning_rate = learning_rate(step_);
      stats.tokens_per_second = window > 0 ? static_cast<double>(tokens_since) / window : 0.0;
      stats.elapsed_seconds = std::chrono::duration<double>(Clock::now() - started).count();
      if (window > 5) {
        tokens_since = 0;
        since = Clock::now();
      }
      train_losses_.emplace_back(static_cast<double>(step_), loss_value);
      if (distributed_.is_root()) on_step(stats);

      if (config_.valid_every > 0 && step_ % config_.valid_every == 0) {
        const ValidStats valid = validate();
        save("last.safetensors");
        if (valid.best) save("best.safetensors");
        if (distributed_.is_root()) {
          write_text_file(config_.out_dir + "/loss.svg",
                          loss_curve_svg({{"train", train_losses_}, {"valid", valid_losses_}}, "loss per target token"));
          on_valid(valid);
        }
        if (config_.patience > 0 && validations_without_improvement_ >= config_.patience)
          return StopReason::early_stopping;
      }
    }
    ++epoch_;
    batch_in_epoch_ = 0;
  }
}

}  // namespace gradformer::models

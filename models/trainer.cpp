#include "models/trainer.h"

#include "autograd/generator.h"

#include "models/html_report.h"
#include "models/svg.h"
#include "models/translation.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "ops/ops.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>

namespace gradformer::models {
namespace {

// A new run's id: 128 random bits as 32 hex digits, rank 0's on every rank.
std::string fresh_run_id(const nn::Distributed& distributed) {
  std::array<int64_t, 2> words{};
  if (distributed.is_root()) {
    std::random_device device;
    for (int64_t& word : words)
      word = std::bit_cast<int64_t>(static_cast<uint64_t>(device()) << 32 | static_cast<uint64_t>(device()));
  }
  distributed.allreduce_sum(words);
  return fmt::format("{:016x}{:016x}", std::bit_cast<uint64_t>(words[0]), std::bit_cast<uint64_t>(words[1]));
}

// The step of a step checkpoint's file name ("step-000400.safetensors"), or nothing for any other name.
std::optional<int64_t> step_of_file_name(const std::string& name) {
  constexpr std::string_view prefix = "step-", suffix = ".safetensors";
  if (!name.starts_with(prefix) || !name.ends_with(suffix)) return std::nullopt;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() < 6 || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
    return std::nullopt;
  return std::stoll(digits);
}

// The run id of a step checkpoint, "" for a file that is none (not a gradformer checkpoint, unreadable) or has
// no id.
std::string run_id_or_none(const std::filesystem::path& path) {
  try {
    return nn::run_id_of(path.string());
  } catch (const Error&) {
    return "";
  }
}

// The step checkpoints in `dir`, by step: (step, file name).
std::vector<std::pair<int64_t, std::string>> step_files_in(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (const auto step = step_of_file_name(name); step && entry.is_regular_file(error)) files.emplace_back(*step, name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

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

// The width the Noam schedule scales by: the model's own, never a default that belongs to another model.
int64_t model_width(const nlohmann::json& model_config) {
  for (const char* key : {"d_model", "hidden_size"})
    if (model_config.contains(key) && model_config[key].is_number_integer()) return model_config[key].get<int64_t>();
  fail<ValueError>("train", "the model configuration names no width (d_model or hidden_size) for the Noam "
                   "schedule; give TrainConfig::schedule: {}", model_config.dump());
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
      distributed_(distributed) {
  if (train_.empty()) fail<ValueError>("train", "the training set is empty");
  if (config_.update_freq < 1)
    fail<ValueError>("train", "update_freq (--update-freq) is {}; it counts the batches accumulated per optimizer "
                     "step and must be at least 1", config_.update_freq);
  schedule_ = config_.schedule ? config_.schedule
                               : std::make_shared<nn::NoamSchedule>(model_width(model_config_), config_.warmup_steps,
                                                                    config_.lr_factor);
  source_lengths_ = lengths_of(train_, true);
  target_lengths_ = lengths_of(train_, false);
  flat_ = std::make_unique<nn::FlatParameters>(model_);
  distributed_.broadcast_parameters(*flat_);
  reducer_ = std::make_unique<nn::GradientReducer>(distributed_, *flat_, config_.gradient_allreduce);
  dropout_generator_.manual_seed(config_.seed + kSplitmix64Gamma * static_cast<uint64_t>(distributed_.rank()));
  optim::AdamOptions adam = config_.adam;
  adam.lr = schedule_->lr(1);
  optimizer_ = std::make_unique<optim::Adam>(model_.parameters(), adam);
  run_id_ = fresh_run_id(distributed_);
  std::filesystem::create_directories(config_.out_dir);
  // A run killed while writing a checkpoint leaves NAME.tmp.PID beside the intact NAME; a new run tidies them.
  if (distributed_.is_root())
    for (const char* name : {"last.safetensors", "best.safetensors"})
      nn::remove_stale_temporaries(config_.out_dir + "/" + name);
}

std::vector<std::string> Trainer::remove_step_checkpoints_of_other_runs() {
  std::vector<std::string> removed;
  if (!distributed_.is_root()) return removed;
  for (const auto& [step, name] : step_files_in(config_.out_dir)) {
    const std::filesystem::path path = std::filesystem::path(config_.out_dir) / name;
    // A file that is no gradformer checkpoint is no run's: not ours to remove.
    std::map<std::string, std::string> metadata;
    try {
      metadata = safetensors::load_metadata(path.string());
    } catch (const Error&) {
      continue;
    }
    if (metadata["format"] != "gradformer-checkpoint" || run_id_or_none(path) == run_id_) continue;
    std::error_code error;
    std::filesystem::remove(path, error);
    if (error) fail<IOError>(path.string(), "cannot remove this step checkpoint of another run: {}", error.message());
    removed.push_back(name);
  }
  return removed;
}

void Trainer::save(const std::string& name) {
  distributed_.check_same_parameters(*flat_, fmt::format("step {}", step_));
  const std::vector<uint64_t> generators = distributed_.gather(state_words(dropout_generator_.state()));
  if (!distributed_.is_root()) return;
  nlohmann::json rank_generators = nlohmann::json::array();
  for (size_t start = 0; start < generators.size(); start += 6)
    rank_generators.push_back(std::vector<uint64_t>(generators.begin() + static_cast<ptrdiff_t>(start),
                                                    generators.begin() + static_cast<ptrdiff_t>(start + 6)));
  nn::TrainingState state;
  state.step = step_;
  state.generator = dropout_generator_.state();
  state.extra = {{"epoch", epoch_},
                 {"batch_in_epoch", batch_in_epoch_},
                 {"best_valid_loss", std::isfinite(best_valid_loss_) ? nlohmann::json(best_valid_loss_) : nlohmann::json()},
                 {"validations_without_improvement", validations_without_improvement_},
                 {"diverged_validations", diverged_validations_},
                 {"train_losses", train_losses_},
                 {"train_nll", train_nll_},
                 {"valid_losses", valid_losses_},
                 {"valid_bleu", valid_bleu_},
                 {"valid_chrf", valid_chrf_},
                 {"learning_rates", learning_rates_},
                 {"tokens_per_second", tokens_per_second_},
                 {"run_id", run_id_},
                 {"keep_last", config_.keep_last},
                 {"world_size", distributed_.size()},
                 {"rank_generators", rank_generators}};
  nlohmann::json config = model_config_;
  config["codec"] = codec_.to_json();
  if (config_.data) config["data"] = to_json(*config_.data);
  // last.safetensors always stays full precision with the optimizer state: it is what --resume continues.
  const bool for_decoding = config_.best_in_bfloat16 && name == "best.safetensors";
  nn::save_checkpoint(config_.out_dir + "/" + name, model_, for_decoding ? nullptr : optimizer_.get(), state, config,
                      {.model_in_bfloat16 = for_decoding});
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
  dropout_generator_.set_state(
      distributed_.size() > 1
          ? state_of_words(extra.at("rank_generators").at(static_cast<size_t>(distributed_.rank())).get<std::vector<uint64_t>>())
          : loaded.state.generator);
  epoch_ = extra.value("epoch", int64_t{0});
  batch_in_epoch_ = extra.value("batch_in_epoch", int64_t{0});
  best_valid_loss_ = extra.contains("best_valid_loss") && extra["best_valid_loss"].is_number()
                         ? extra["best_valid_loss"].get<double>()
                         : INFINITY;
  validations_without_improvement_ = extra.value("validations_without_improvement", int64_t{0});
  diverged_validations_ = extra.value("diverged_validations", int64_t{0});
  train_losses_ = extra.value("train_losses", train_losses_);
  train_nll_ = extra.value("train_nll", train_nll_);
  valid_losses_ = extra.value("valid_losses", valid_losses_);
  valid_bleu_ = extra.value("valid_bleu", valid_bleu_);
  valid_chrf_ = extra.value("valid_chrf", valid_chrf_);
  learning_rates_ = extra.value("learning_rates", learning_rates_);
  tokens_per_second_ = extra.value("tokens_per_second", tokens_per_second_);
  if (const auto id = extra.find("run_id"); id != extra.end() && id->is_string() && !id->get<std::string>().empty())
    run_id_ = id->get<std::string>();
  // This run's step checkpoints are the step files in out_dir that carry its id, whatever the checkpoint lists.
  step_checkpoints_.clear();
  for (const auto& [step, name] : step_files_in(config_.out_dir))
    if (run_id_or_none(std::filesystem::path(config_.out_dir) / name) == run_id_) step_checkpoints_.push_back(name);
  // `last` is written before the step checkpoint of its step: a run killed between them left that one's
  // temporary.
  if (distributed_.is_root()) nn::remove_stale_temporaries(step_checkpoint_path(step_));
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
  stats.sentences = valid_.size();
  // No validation set: nothing to measure, and no validation counts towards best or patience.
  if (valid_.empty()) return stats;
  // Rank 0 validates alone; the others wait in the broadcast below, then keep the same bookkeeping.
  const size_t count = !distributed_.is_root() ? 0 : std::min(valid_text_.size(),
                       static_cast<size_t>(std::max<int64_t>(config_.valid_bleu_sentences, 0)));
  if (distributed_.is_root()) stats.loss = evaluate_loss(valid_);
  if (count > 0) {
    model_.eval();
    std::vector<std::string> sources, references;
    for (size_t i = 0; i < count; ++i) {
      sources.push_back(valid_text_[i].source);
      references.push_back(valid_text_[i].target);
    }
    const TranslationScores scores = score_translations(codec_, translate_corpus(model_, codec_, sources), references);
    model_.train();
    stats.bleu = scores.bleu.score;
    stats.chrf = scores.chrf.score;
  }
  std::array<double, 3> results{stats.loss, stats.bleu, stats.chrf};
  distributed_.broadcast(results);
  stats.loss = results[0];
  stats.bleu = results[1];
  stats.chrf = results[2];
  if (config_.valid_bleu_sentences > 0 && !valid_text_.empty()) {
    valid_bleu_.emplace_back(static_cast<double>(step_), stats.bleu);
    valid_chrf_.emplace_back(static_cast<double>(step_), stats.chrf);
  }
  stats.best = stats.loss < best_valid_loss_;
  if (stats.best) {
    best_valid_loss_ = stats.loss;
    validations_without_improvement_ = 0;
  } else {
    ++validations_without_improvement_;
  }
  valid_losses_.emplace_back(static_cast<double>(step_), stats.loss);
  diverged_validations_ = stats.loss > divergence_threshold() ? diverged_validations_ + 1 : 0;
  return stats;
}

StopReason Trainer::run(const std::function<void(const StepStats&)>& on_step,
                        const std::function<void(const ValidStats&)>& on_valid, const std::atomic<bool>* interrupt) {
  const GeneratorGuard dropout_stream(dropout_generator_);
  const AutocastGuard autocast(config_.precision);
  model_.train();
  started_ = window_start_ = Clock::now();
  cpu_started_ = std::clock();
  tokens_in_window_ = 0;
  for (;; ++epoch_, batch_in_epoch_ = 0) {
    const std::vector<data::Batch> batches = epoch_batches();
    while (batch_in_epoch_ < static_cast<int64_t>(batches.size())) {
      const StepWork work = take_step(batches);
      int64_t global_tokens = 0;
      if (const std::optional<StopReason> stop = vote_stop(work.local_tokens, interrupt, global_tokens)) {
        if (step_ > 0) save("last.safetensors");
        return *stop;
      }
      const StepStats stats = train_step(work, global_tokens);
      if (distributed_.is_root()) on_step(stats);
      if (!validation_due()) continue;
      const ValidStats valid = validate();
      checkpoint(valid);
      if (distributed_.is_root()) on_valid(valid);
      if (config_.divergence_validations > 0 && diverged_validations_ >= config_.divergence_validations)
        fail<NumericalError>("train", "step {}: training diverged: the validation loss ({:.4g} now) has been above "
                             "log(vocabulary size {}) + {} = {:.2f}, worse than a uniform guess, for {} validations "
                             "in a row; lower --lr-factor (or raise --warmup) and start again. best.safetensors "
                             "holds the best validation so far", step_, valid.loss, codec_.vocabulary().size(),
                             config_.divergence_margin, divergence_threshold(), diverged_validations_);
      if (config_.patience > 0 && validations_without_improvement_ >= config_.patience)
        return StopReason::early_stopping;
    }
  }
}

std::vector<data::Batch> Trainer::epoch_batches() const {
  // The batches of an epoch depend only on (seed, epoch), so a resumed run sees the same ones.
  Generator order(config_.seed * 1000003 + static_cast<uint64_t>(epoch_));
  return data::make_batches(source_lengths_, target_lengths_, config_.max_tokens, order, true);
}

Trainer::StepWork Trainer::take_step(const std::vector<data::Batch>& batches) const {
  // A step takes update_freq batches (fewer at the end of an epoch); each rank its contiguous share of each
  // batch's sentences, possibly none.
  StepWork work;
  work.micro_batches = std::min(config_.update_freq, static_cast<int64_t>(batches.size()) - batch_in_epoch_);
  const size_t ranks = static_cast<size_t>(distributed_.size()), rank = static_cast<size_t>(distributed_.rank());
  for (int64_t m = 0; m < work.micro_batches; ++m) {
    const std::vector<size_t>& indices = batches[static_cast<size_t>(batch_in_epoch_ + m)].indices;
    const std::vector<size_t> share(indices.begin() + static_cast<ptrdiff_t>(indices.size() * rank / ranks),
                                    indices.begin() + static_cast<ptrdiff_t>(indices.size() * (rank + 1) / ranks));
    if (share.empty()) continue;
    work.shares.push_back(make_tensor_batch(train_, share));
    work.local_tokens += work.shares.back().target_tokens;
  }
  return work;
}

std::optional<StopReason> Trainer::vote_stop(int64_t local_tokens, const std::atomic<bool>* interrupt,
                                             int64_t& global_tokens) {
  // Every rank stops when any rank's clock or signal says so: one allreduce carries the votes and the token count.
  const bool out_of_time = config_.max_minutes > 0 && budget_seconds_used() >= config_.max_minutes * 60;
  const bool interrupted = interrupt != nullptr && interrupt->load();
  std::array<int64_t, 3> totals{local_tokens, out_of_time ? 1 : 0, interrupted ? 1 : 0};
  distributed_.allreduce_sum(totals);
  global_tokens = totals[0];
  if (totals[2] > 0) return StopReason::interrupted;
  if (config_.max_steps > 0 && step_ >= config_.max_steps) return StopReason::max_steps;
  if (totals[1] > 0) return StopReason::max_minutes;
  return std::nullopt;
}

double Trainer::budget_seconds_used() const {
  if (config_.budget_clock == BudgetClock::process_cpu)
    return static_cast<double>(std::clock() - cpu_started_) / CLOCKS_PER_SEC;
  return std::chrono::duration<double>(Clock::now() - started_).count();
}

double Trainer::divergence_threshold() const {
  return std::log(static_cast<double>(codec_.vocabulary().size())) + config_.divergence_margin;
}

std::string Trainer::checkpoint_note() const {
  const std::string last = (std::filesystem::path(config_.out_dir) / "last.safetensors").string();
  return std::filesystem::exists(last) ? fmt::format("the last one, {}, is intact", last)
                                       : fmt::format("{} holds none yet", config_.out_dir);
}

StepStats Trainer::train_step(const StepWork& work, int64_t global_tokens) {
  optimizer_->zero_grad();
  double loss_sum = 0, nll_sum = 0;  // this rank's losses summed over its target tokens
  for (const TensorBatch& batch : work.shares) {
    const Tensor logits = model_.forward(batch.src, batch.tgt_in);
    const Tensor loss = batch_loss(logits, batch.tgt_out, config_.label_smoothing);
    const double loss_value = loss.item();
    if (!std::isfinite(loss_value))
      fail<NumericalError>("train", "step {}: the loss is {}; stopping without writing a checkpoint ({})", step_ + 1,
                           loss_value, checkpoint_note());
    // The loss validation reports, from the same logits: one more log-softmax, no graph.
    double nll_value = loss_value;
    if (config_.label_smoothing != 0) {
      const NoGradGuard no_grad;
      nll_value = batch_loss(logits, batch.tgt_out, 0.0).item();
    }
    // The share's mean loss weighted by its part of the global tokens: the single-process gradient of the
    // joint batch once summed over shares and ranks. Exactly the mean when one process takes one batch.
    const double weight = static_cast<double>(batch.target_tokens) / static_cast<double>(global_tokens);
    if (&batch == &work.shares.back()) reducer_->arm();  // the earlier micro-batches only accumulate (DDP's no_sync)
    (weight == 1.0 ? loss : loss * weight).backward();
    loss_sum += loss_value * static_cast<double>(batch.target_tokens);
    nll_sum += nll_value * static_cast<double>(batch.target_tokens);
  }
  reducer_->finish();
  std::array<double, 2> loss_total{loss_sum, nll_sum};
  distributed_.allreduce_sum(loss_total);
  StepStats stats;
  stats.grad_norm = config_.clip_norm > 0 ? optim::clip_grad_norm_(model_.parameters(), config_.clip_norm) : 0.0;
  if (!std::isfinite(stats.grad_norm))
    fail<NumericalError>("train", "step {}: the gradient norm is {}; stopping without writing a checkpoint ({})",
                         step_ + 1, stats.grad_norm, checkpoint_note());
  ++step_;
  batch_in_epoch_ += work.micro_batches;  // these batches are done: a resumed run starts after them
  stats.learning_rate = schedule_->lr(step_);
  optimizer_->set_lr(stats.learning_rate);
  optimizer_->step();

  tokens_in_window_ += global_tokens;
  const auto now = Clock::now();
  const double window = std::chrono::duration<double>(now - window_start_).count();
  stats.step = step_;
  stats.epoch = epoch_;
  stats.loss = loss_total[0] / static_cast<double>(std::max<int64_t>(global_tokens, 1));
  stats.nll = loss_total[1] / static_cast<double>(std::max<int64_t>(global_tokens, 1));
  stats.tokens_per_second = window > 0 ? static_cast<double>(tokens_in_window_) / window : 0.0;
  stats.elapsed_seconds = std::chrono::duration<double>(now - started_).count();
  stats.budget_seconds = budget_seconds_used();
  if (window > 5) {
    tokens_in_window_ = 0;
    window_start_ = now;
  }
  train_losses_.emplace_back(static_cast<double>(step_), stats.loss);
  train_nll_.emplace_back(static_cast<double>(step_), stats.nll);
  learning_rates_.emplace_back(static_cast<double>(step_), stats.learning_rate);
  tokens_per_second_.emplace_back(static_cast<double>(step_), stats.tokens_per_second);
  return stats;
}

std::string Trainer::step_checkpoint_path(int64_t step) const {
  return fmt::format("{}/step-{:06}.safetensors", config_.out_dir, step);
}

void Trainer::checkpoint(const ValidStats& valid) {
  // The list saved in the checkpoints already holds this step's file and no longer the ones it pushes out, which
  // go only once the new one is written: a crash in between leaves an extra file, never a missing one.
  std::vector<std::string> expired;
  const std::string step_name = std::filesystem::path(step_checkpoint_path(step_)).filename().string();
  if (config_.keep_last > 0) {
    std::erase(step_checkpoints_, step_name);  // rewritten below, as `last` is
    step_checkpoints_.push_back(step_name);
    while (static_cast<int64_t>(step_checkpoints_.size()) > config_.keep_last) {
      expired.push_back(step_checkpoints_.front());
      step_checkpoints_.erase(step_checkpoints_.begin());
    }
  }
  save("last.safetensors");
  if (valid.best) save("best.safetensors");
  if (config_.keep_last > 0) save(step_name);
  if (!distributed_.is_root()) return;
  for (const std::string& name : expired) {
    // Only a file that still carries this run's id: one replaced meanwhile (copied from another run) stays.
    const std::filesystem::path path = std::filesystem::path(config_.out_dir) / name;
    if (run_id_or_none(path) != run_id_) continue;
    std::error_code error;
    std::filesystem::remove(path, error);
    if (error) fail<IOError>(config_.out_dir + "/" + name, "cannot remove the expired step checkpoint: {}",
                             error.message());
  }
  write_pictures();
}

void Trainer::write_pictures() const {
  const std::string smoothed = fmt::format("train, label-smoothed {} (optimised)", config_.label_smoothing);
  std::vector<Curve> losses{{"train NLL", train_nll_}, {"valid NLL", valid_losses_}};
  if (config_.label_smoothing != 0) losses.push_back({smoothed, train_losses_});
  write_text_file(config_.out_dir + "/loss.svg", training_svg(losses, {"valid BLEU", valid_bleu_}));

  TrainingReport report{.title = config_.out_dir,
                        .train_nll = losses[0],
                        .valid_nll = losses[1],
                        .smoothed_loss = config_.label_smoothing != 0 ? losses[2] : Curve{smoothed, {}},
                        .bleu = {"valid BLEU", valid_bleu_},
                        .chrf = {"valid chrF", valid_chrf_},
                        .learning_rate = {"learning rate", learning_rates_},
                        .tokens_per_second = {"tokens/s", tokens_per_second_},
                        .config = nlohmann::json::object(),
                        .machine = machine_description(config_.precision, distributed_.size()),
                        .best = std::nullopt,
                        .step = step_};
  nlohmann::json training{{"max_tokens", config_.max_tokens},
                          {"update_freq", config_.update_freq},
                          {"warmup_steps", config_.warmup_steps},
                          {"lr_factor", config_.lr_factor},
                          {"label_smoothing", config_.label_smoothing},
                          {"clip_norm", config_.clip_norm},
                          {"valid_every", config_.valid_every},
                          {"patience", config_.patience},
                          {"max_steps", config_.max_steps},
                          {"max_minutes", config_.max_minutes},
                          {"seed", config_.seed},
                          {"train_examples", train_.size()},
                          {"valid_examples", valid_.size()}};
  report.config = {{"model", model_config_}, {"training", training}};
  if (config_.data) report.config["data"] = to_json(*config_.data);
  // best.safetensors holds the first validation with the lowest loss.
  const auto best = std::min_element(valid_losses_.begin(), valid_losses_.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
  if (best != valid_losses_.end() && std::isfinite(best->second))
    report.best = BestCheckpoint{config_.out_dir + "/best.safetensors", static_cast<int64_t>(best->first), best->second};
  write_text_file(config_.out_dir + "/report.html", training_html(report));
}

OutDirLock::OutDirLock(const std::string& dir) : dir_(dir) {
  std::error_code error;
  created_ = !std::filesystem::exists(dir, error);
  std::filesystem::create_directories(dir, error);
  if (error) fail<IOError>(dir, "cannot create the directory: {}", error.message());
  const std::string path = dir + "/.lock";
  // The holder removes the file when it ends; a run that opened it just before then holds a lock on a file no
  // longer in the directory, sees so (another inode, or none, under the name) and tries again.
  for (;;) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail<IOError>(dir, "cannot write there: {}", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int lock_error = errno;
      std::string holder(32, '\0');
      const ssize_t got = ::pread(fd_, holder.data(), holder.size(), 0);
      holder.resize(got > 0 ? static_cast<size_t>(got) : 0);
      while (!holder.empty() && std::isspace(static_cast<unsigned char>(holder.back()))) holder.pop_back();
      ::close(fd_);
      fd_ = -1;
      if (lock_error == EWOULDBLOCK)
        fail<IOError>(dir, "another training run (pid {}) is using this directory ({} is locked); wait for it to "
                      "end, or choose another --out", holder.empty() ? "unknown" : holder, path);
      fail<IOError>(path, "cannot lock: {}", std::strerror(lock_error));
    }
    struct stat locked {}, named {};
    if (::fstat(fd_, &locked) == 0 && ::stat(path.c_str(), &named) == 0 && locked.st_dev == named.st_dev &&
        locked.st_ino == named.st_ino)
      break;
    ::close(fd_);
  }
  const std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int write_error = errno;
    ::close(fd_);
    fd_ = -1;
    fail<IOError>(path, "write failed: {}", std::strerror(write_error));
  }
}

// The file goes while the lock is still held (the constructor's inode check makes that safe), so that a run
// leaves no .lock behind; a directory this run created and left empty (it failed before writing, say on a corrupt
// --spm-model) goes too, so that a failed start leaves no trace.
OutDirLock::~OutDirLock() {
  if (fd_ < 0) return;
  namespace fs = std::filesystem;
  std::error_code error;
  fs::remove(dir_ + "/.lock", error);
  if (created_ && fs::is_empty(dir_, error)) fs::remove(dir_, error);
  ::close(fd_);
}

}  // namespace gradformer::models

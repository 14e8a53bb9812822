// The training loop of models/trainer.h on the copy task at tiny sizes: resumption from a checkpoint reproduces
// the uninterrupted run's losses bit for bit, the loss falls, a blow-up throws NumericalError naming the step
// while the last checkpoint stays loadable, and a NaN learning rate is refused up front. Then reliability:
// two runs with one seed are identical, a gradformer-train process killed at random moments (also mid-write)
// always leaves a checkpoint that loads and resumes to the uninterrupted run's result, and 1,000 steps of
// transformer-tiny free every graph and keep resident memory flat.
#include "models/trainer.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "ops/ops.h"
#include "tests/helpers.h"
#include "tests/model_helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace gradformer;
using testing::TempDir;

namespace {

// The copy task at 200 training and 20 validation pairs, word-tokenised, as ids.
const testing::EncodedTask& copy_data() {
  static const testing::EncodedTask data = testing::encode_task(data::make_copy_task(3, 200, 20, 0), 64);
  return data;
}

nlohmann::json tiny_config(double dropout) {
  return testing::tiny_transformer_config(static_cast<int64_t>(copy_data().codec.vocabulary().size()), dropout, 64,
                                          16);
}

// The initial weights draw from default_generator(): reseeding it before building a model makes two runs start
// from the same weights. (Dropout draws from the trainer's own generator, seeded from TrainConfig::seed.)
std::shared_ptr<models::Seq2SeqModel> fresh_model(const nlohmann::json& config) {
  default_generator().manual_seed(2024);
  return models::make_model(config, default_generator());
}

models::TrainConfig tiny_train_config(const std::string& out_dir, int64_t max_steps, int64_t valid_every) {
  models::TrainConfig config;
  config.out_dir = out_dir;
  config.max_steps = max_steps;
  config.max_tokens = 256;
  config.warmup_steps = 20;
  config.valid_every = valid_every;
  config.valid_bleu_sentences = 0;
  return config;
}

std::unique_ptr<models::Trainer> make_trainer(models::Seq2SeqModel& model, const nlohmann::json& model_config,
                                              models::TrainConfig config) {
  const testing::EncodedTask& d = copy_data();
  return std::make_unique<models::Trainer>(model, d.codec, d.train, d.valid, d.splits.valid, std::move(config),
                                           model_config);
}

void ignore_step(const models::StepStats&) {}
void ignore_valid(const models::ValidStats&) {}

double mean_loss(const std::vector<std::pair<double, double>>& losses, size_t begin, size_t end) {
  double total = 0;
  for (size_t i = begin; i < end; ++i) total += losses[i].second;
  return total / static_cast<double>(end - begin);
}

}  // namespace

namespace {

// A tensor's bytes, to compare weights bit for bit (== on values would equate 0.0 and -0.0).
std::string bytes_of(const Tensor& t) {
  const Tensor dense = t.contiguous();
  return std::string(reinterpret_cast<const char*>(dense.raw_data()),
                     static_cast<size_t>(dense.numel()) * dtype_size(dense.dtype()));
}

void check_same_weights(const nn::Module& a, const nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(pa[i].first == pb[i].first);
    CHECK(bytes_of(pa[i].second) == bytes_of(pb[i].second));
  }
}

}  // namespace

TEST_CASE("trainer: resuming from a checkpoint reproduces the uninterrupted run's losses exactly") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);

  // A: twelve steps straight through, validating (and checkpointing) at 6 and 12.
  const auto model_a = fresh_model(config);
  const auto a = make_trainer(*model_a, config, tiny_train_config(dir.str("a"), 12, 6));
  CHECK(a->run(ignore_step, ignore_valid) == models::StopReason::max_steps);
  REQUIRE(a->train_losses().size() == 12);

  // C: the same run stopped at step 6, leaving the checkpoint A overwrote.
  const auto model_c = fresh_model(config);
  const auto c = make_trainer(*model_c, config, tiny_train_config(dir.str("c"), 6, 6));
  CHECK(c->run(ignore_step, ignore_valid) == models::StopReason::max_steps);
  REQUIRE(c->train_losses().size() == 6);

  // B: a fresh model and trainer resumed from C's checkpoint, run on to step 12. Its dropout generator starts
  // where A's started, so only the checkpoint can put it where A's was at step 6.
  const auto model_b = fresh_model(config);
  const auto b = make_trainer(*model_b, config, tiny_train_config(dir.str("b"), 12, 6));
  b->resume(dir.str("c/last.safetensors"));
  CHECK(b->step() == 6);
  CHECK(b->run(ignore_step, ignore_valid) == models::StopReason::max_steps);
  REQUIRE(b->train_losses().size() == 12);
  for (size_t i = 0; i < 12; ++i) {
    CAPTURE(i);
    CHECK(b->train_losses()[i].first == a->train_losses()[i].first);
    CHECK(b->train_losses()[i].second == a->train_losses()[i].second);
  }
  CHECK(b->valid_losses() == a->valid_losses());
}

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The step checkpoints in a directory, by name.
std::vector<std::string> step_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().filename().string().starts_with("step-")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A run of the tiny copy-task model into `out` to `max_steps`, validating every 3 steps, keeping `keep_last` step
// checkpoints; resumed from `resume` unless empty.
void run_keeping(const std::string& out, int64_t max_steps, int64_t keep_last, const std::string& resume = "") {
  const nlohmann::json config = tiny_config(0.1);
  models::TrainConfig train_config = tiny_train_config(out, max_steps, 3);
  train_config.keep_last = keep_last;
  const auto model = fresh_model(config);
  const auto trainer = make_trainer(*model, config, train_config);
  if (!resume.empty()) trainer->resume(resume);
  trainer->run(ignore_step, ignore_valid);
}

}  // namespace

TEST_CASE("trainer: --keep-last keeps the run's last N step checkpoints, across a resume, and no one else's") {
  const TempDir dir;
  std::filesystem::create_directories(dir.str("k"));
  // A file of the same pattern the run did not write: never removed.
  std::ofstream(dir.str("k/step-000000.safetensors")) << "the user's";
  run_keeping(dir.str("k"), 9, 2);
  CHECK(step_files(dir.str("k")) ==
        std::vector<std::string>{"step-000000.safetensors", "step-000006.safetensors", "step-000009.safetensors"});
  // A step checkpoint is the state `last` held at that step.
  CHECK(file_bytes(dir.str("k/step-000009.safetensors")) == file_bytes(dir.str("k/last.safetensors")));

  // Resumed elsewhere: the files in k are not that run's to remove.
  run_keeping(dir.str("e"), 12, 1, dir.str("k/step-000009.safetensors"));
  CHECK(step_files(dir.str("e")) == std::vector<std::string>{"step-000012.safetensors"});
  CHECK(step_files(dir.str("k")).size() == 3);

  // Resumed in k: the count goes on over the files the first part wrote, and the temporary of a step checkpoint
  // whose writer was killed (no process has that pid) goes.
  std::ofstream(dir.str("k/step-000009.safetensors.tmp.999999999")) << "half";
  run_keeping(dir.str("k"), 15, 2, dir.str("k/last.safetensors"));
  CHECK(step_files(dir.str("k")) ==
        std::vector<std::string>{"step-000000.safetensors", "step-000012.safetensors", "step-000015.safetensors"});
  CHECK(file_bytes(dir.str("k/step-000000.safetensors")) == "the user's");
}

TEST_CASE("trainer: the training NLL is the unsmoothed loss of the same logits, and loss.svg plots it with BLEU") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.0);
  // Step 1 of two runs differing only in label smoothing sees the same weights and batch: the smoothed run's NLL
  // is the unsmoothed run's loss.
  models::TrainConfig plain = tiny_train_config(dir.str("plain"), 1, 0);
  plain.label_smoothing = 0;
  const auto model_plain = fresh_model(config);
  const auto p = make_trainer(*model_plain, config, plain);
  p->run(ignore_step, ignore_valid);
  models::TrainConfig smoothed = tiny_train_config(dir.str("smoothed"), 4, 2);
  smoothed.label_smoothing = 0.1;
  smoothed.valid_bleu_sentences = 5;
  const auto model_smoothed = fresh_model(config);
  const auto s = make_trainer(*model_smoothed, config, smoothed);
  std::vector<models::StepStats> steps;
  s->run([&](const models::StepStats& stats) { steps.push_back(stats); }, ignore_valid);
  REQUIRE(steps.size() == 4);
  CHECK(steps[0].nll == doctest::Approx(p->train_losses()[0].second).epsilon(1e-12));
  CHECK(p->train_nll() == p->train_losses());
  CHECK(steps[0].nll != steps[0].loss);  // two different quantities, though near each other at initialisation
  REQUIRE(s->train_nll().size() == 4);
  CHECK(s->train_nll()[3].second == steps[3].nll);
  CHECK(s->valid_bleu().size() == 2);

  const std::string svg = file_bytes(dir.str("smoothed/loss.svg"));
  for (const char* label : {"train NLL", "valid NLL", "train, label-smoothed 0.1 (optimised)", "validation BLEU"}) {
    CAPTURE(label);
    CHECK(svg.find(label) != std::string::npos);
  }
}

TEST_CASE("trainer: dropout draws from the trainer's own generator, whatever the caller does with its generators") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);
  const auto model_a = fresh_model(config);
  const auto a = make_trainer(*model_a, config, tiny_train_config(dir.str("a"), 4, 0));
  a->run(ignore_step, ignore_valid);

  // B: the same run with the default generator moved on and a generator of the caller's current around run().
  const auto model_b = fresh_model(config);
  const auto b = make_trainer(*model_b, config, tiny_train_config(dir.str("b"), 4, 0));
  randn({100});
  Generator callers(99);
  {
    const GeneratorGuard guard(callers);
    b->run(ignore_step, ignore_valid);
  }
  REQUIRE(a->train_losses().size() == 4);
  CHECK(b->train_losses() == a->train_losses());
  CHECK(callers.state() == Generator(99).state());  // the trainer drew nothing from it
}

TEST_CASE("trainer: the loss falls on the copy task") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.0);
  const auto model = fresh_model(config);
  models::TrainConfig train_config = tiny_train_config(dir.str(), 150, 75);
  train_config.warmup_steps = 40;
  const auto trainer = make_trainer(*model, config, train_config);
  const double valid_before = trainer->evaluate_loss(copy_data().valid);
  trainer->run(ignore_step, ignore_valid);
  const auto& losses = trainer->train_losses();
  REQUIRE(losses.size() == 150);
  const double first = mean_loss(losses, 0, 10), last = mean_loss(losses, 140, 150);
  CAPTURE(first);
  CAPTURE(last);
  CHECK(last < first - 0.5);
  CAPTURE(valid_before);
  CHECK(trainer->valid_losses().back().second < valid_before - 0.2);
}

TEST_CASE("trainer: a blow-up throws NumericalError naming the step and leaves the last checkpoint loadable") {
  // A learning rate of ~1e29 makes the weights explode; Adam with a float-overflowing one gives Inf and NaN.
  for (const double lr_factor : {1e30, 1e300}) {
    CAPTURE(lr_factor);
    const TempDir dir;
    const nlohmann::json config = tiny_config(0.1);

    // Four sane steps, checkpointed at 2 and 4.
    const auto model = fresh_model(config);
    const auto sane = make_trainer(*model, config, tiny_train_config(dir.str(), 4, 2));
    sane->run(ignore_step, ignore_valid);
    const std::string last = dir.str("last.safetensors");
    REQUIRE(std::filesystem::exists(last));

    // Then the wild learning rate into the same directory: the loss or the gradient stops being finite before
    // the next validation at step 8.
    models::TrainConfig wild = tiny_train_config(dir.str(), 20, 4);
    wild.lr_factor = lr_factor;
    const auto blown = make_trainer(*model, config, wild);
    blown->resume(last);
    std::string message;
    try {
      blown->run(ignore_step, ignore_valid);
    } catch (const NumericalError& e) {
      message = e.what();
    }
    CAPTURE(message);
    CHECK(blown->step() >= 4);
    CHECK(blown->step() < 8);
    CHECK(message.starts_with("train: step " + std::to_string(blown->step() + 1) + ": "));
    CHECK(message.ends_with("(the last one, " + last + ", is intact)"));

    // The checkpoint is still the one from step 4, and it loads into a fresh model with finite weights.
    const auto reloaded = fresh_model(config);
    const nn::LoadedCheckpoint loaded = nn::load_checkpoint(last, *reloaded, nullptr);
    CHECK(loaded.state.step == 4);
    for (const Tensor& p : reloaded->parameters())
      for (double v : p.to_vector<double>()) REQUIRE(std::isfinite(v));
  }
}

TEST_CASE("trainer: a blow-up in a directory without a checkpoint does not claim one") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);
  const auto model = fresh_model(config);
  models::TrainConfig wild = tiny_train_config(dir.str("run"), 20, 0);
  wild.lr_factor = 1e300;
  const auto blown = make_trainer(*model, config, wild);
  std::string message;
  try {
    blown->run(ignore_step, ignore_valid);
  } catch (const NumericalError& e) {
    message = e.what();
  }
  CAPTURE(message);
  CHECK(message.ends_with("; stopping without writing a checkpoint (" + dir.str("run") + " holds none yet)"));
  CHECK_FALSE(std::filesystem::exists(dir.str("run/last.safetensors")));
}

TEST_CASE("trainer: the learning rate is nn::NoamSchedule's with the model's own width, or the configured schedule") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.0);  // d_model 16
  const nn::NoamSchedule noam(16, 20, 1.0);
  const auto model = fresh_model(config);
  std::vector<double> rates;
  make_trainer(*model, config, tiny_train_config(dir.str("noam"), 3, 0))
      ->run([&](const models::StepStats& s) { rates.push_back(s.learning_rate); }, ignore_valid);
  REQUIRE(rates.size() == 3);
  for (int64_t step = 1; step <= 3; ++step) CHECK(rates[static_cast<size_t>(step - 1)] == noam.lr(step));

  // A schedule of 0 from the configuration: Adam moves nothing.
  const auto frozen = fresh_model(config);
  const std::string before = bytes_of(frozen->parameters().front());
  models::TrainConfig constant = tiny_train_config(dir.str("constant"), 3, 0);
  constant.schedule = std::make_shared<nn::ConstantSchedule>(0.0);
  make_trainer(*frozen, config, constant)->run(ignore_step, ignore_valid);
  CHECK(bytes_of(frozen->parameters().front()) == before);

  // A configuration without a width is refused instead of scaled by another model's.
  nlohmann::json widthless = config;
  widthless.erase("d_model");
  CHECK_THROWS_WITH_AS(make_trainer(*model, widthless, tiny_train_config(dir.str("x"), 3, 0)),
                       doctest::Contains("the model configuration names no width (d_model or hidden_size)"),
                       ValueError);
}

TEST_CASE("trainer: a NaN learning rate is refused before training") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);
  const auto model = fresh_model(config);
  models::TrainConfig config_nan = tiny_train_config(dir.str(), 4, 2);
  config_nan.lr_factor = std::numeric_limits<double>::quiet_NaN();
  std::string message;
  try {
    make_trainer(*model, config, config_nan);
  } catch (const ValueError& e) {
    message = e.what();
  }
  CHECK(message == "NoamSchedule: factor nan must be finite and >= 0");
}


TEST_CASE("trainer: two runs with the same seed and threads give the same losses and weights, bit for bit") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.1);  // dropout on, so the generator's stream matters too
  const auto model_a = fresh_model(config);
  const auto a = make_trainer(*model_a, config, tiny_train_config(dir.str("a"), 10, 5));
  a->run(ignore_step, ignore_valid);
  const auto model_b = fresh_model(config);
  const auto b = make_trainer(*model_b, config, tiny_train_config(dir.str("b"), 10, 5));
  b->run(ignore_step, ignore_valid);

  REQUIRE(a->train_losses().size() == 10);
  CHECK(b->train_losses() == a->train_losses());
  CHECK(b->valid_losses() == a->valid_losses());
  check_same_weights(*model_a, *model_b);
  // The weights did move: this is not two untouched initialisations compared.
  CHECK(bytes_of(model_a->parameters().front()) != bytes_of(fresh_model(config)->parameters().front()));
}

namespace {

// Resident set size of this process in KiB, from /proc/self/status (-1 when it cannot be read).
int64_t resident_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.starts_with("VmRSS:")) return std::stoll(line.substr(6));
  return -1;
}

// One kernel thread while it lives: on a loaded machine a team of two waits at every parallel region for a
// descheduled thread (this file's memory test took 380 s with two threads under load, 3.5 s with one).
class SingleThread {
 public:
  SingleThread() { set_num_threads(1); }
  ~SingleThread() { set_num_threads(previous_); }
  SingleThread(const SingleThread&) = delete;
  SingleThread& operator=(const SingleThread&) = delete;

 private:
  int previous_ = num_threads();
};

}  // namespace

TEST_CASE("trainer: 1,000 steps of transformer-tiny free every graph and keep resident memory flat") {
  // Under ASan every freed block waits in a quarantine, so resident memory grows regardless; there the test
  // runs fewer steps and checks only that graphs are freed.
  const int64_t steps = testing::kSanitizerBuild ? 60 : 1000, warm_up = 200;
  const SingleThread single_thread;
  const testing::EncodedTask& d = copy_data();
  models::ModelOptions options;
  options.vocab_size = static_cast<int64_t>(d.codec.vocabulary().size());
  options.max_length = 64;
  default_generator().manual_seed(11);
  const auto model = models::make_model(models::model_config("transformer-tiny", options));
  optim::Adam optimizer(model->parameters(), optim::AdamOptions{});
  CrossEntropyOptions loss_options;
  loss_options.ignore_index = data::pad_id;

  REQUIRE(live_node_count() == 0);
  int64_t steps_leaving_nodes = 0, resident_after_warm_up = 0;
  for (int64_t step = 1; step <= steps; ++step) {
    {
      // Two sentences a step, walking through the training set so shapes vary as in real training.
      const size_t first = static_cast<size_t>(2 * step) % d.train.size();
      const models::TensorBatch batch = models::make_tensor_batch(d.train, {first, (first + 1) % d.train.size()});
      optimizer.zero_grad();
      const Tensor logits = model->forward(batch.src, batch.tgt_in);
      const Tensor loss =
          cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(batch.tgt_out, {-1}), loss_options);
      loss.backward();
      optim::clip_grad_norm_(model->parameters(), 1.0);
      optimizer.step();
    }
    if (live_node_count() != 0) ++steps_leaving_nodes;
    if (step == warm_up) resident_after_warm_up = resident_kib();
  }
  CHECK(steps_leaving_nodes == 0);
  if (testing::kSanitizerBuild) {
    MESSAGE("resident memory not measured: AddressSanitizer's quarantine keeps freed memory resident");
    return;
  }
  const int64_t resident_at_end = resident_kib();
  CAPTURE(resident_after_warm_up);
  CAPTURE(resident_at_end);
  REQUIRE(resident_after_warm_up > 0);
  CHECK(resident_at_end - resident_after_warm_up < 2048);
}

#ifdef GRADFORMER_PROGRAMS
namespace {

const std::string kTrainProgram = std::string(GRADFORMER_PROGRAMS) + "/gradformer-train";

// A gradformer-train process writing its output to a log file. Started with posix_spawn, not fork: this test
// process has OpenMP threads, and OpenMP does not survive fork.
class TrainProcess {
 public:
  TrainProcess(const std::vector<std::string>& args, const std::string& log_path) {
    std::vector<char*> argv{const_cast<char*>(kTrainProgram.c_str())};
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int error = posix_spawn(&pid_, kTrainProgram.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(error == 0);
  }
  ~TrainProcess() {
    if (pid_ > 0) kill_and_wait();  // a failed check must not leave a trainer running
  }
  TrainProcess(const TrainProcess&) = delete;
  TrainProcess& operator=(const TrainProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
  }
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  int kill_and_wait() {
    ::kill(pid_, SIGKILL);
    return wait();
  }

 private:
  pid_t pid_ = -1;
};

// The step of the checkpoint at path, or -1 while there is none or it cannot be read.
int64_t checkpoint_step(const std::string& path) {
  try {
    return nn::read_checkpoint_config(path).state.step;
  } catch (const Error&) {
    return -1;
  }
}

// Polls until predicate() holds or the process ends; false when it ended first or 60 s passed.
template <class Predicate>
bool wait_until(const TrainProcess& process, Predicate predicate, std::chrono::microseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    if (!process.running()) return false;
    std::this_thread::sleep_for(interval);
  }
  return false;
}

// Whether the process with this pid has a checkpoint half written in dir (the trainer writes NAME.tmp.PID, then
// renames it over NAME).
bool writing_checkpoint(const std::string& dir, pid_t pid) {
  for (const char* name : {"last.safetensors", "best.safetensors"})
    if (std::filesystem::exists(fmt::format("{}/{}.tmp.{}", dir, name, pid))) return true;
  return false;
}

// The model and training state in a checkpoint, loaded as gradformer-translate would load them.
struct Restored {
  std::shared_ptr<models::Seq2SeqModel> model;
  nn::LoadedCheckpoint checkpoint;
};

Restored restore(const std::string& path) {
  nlohmann::json config = nn::read_checkpoint_config(path).config;
  config.erase("codec");
  Restored restored{models::make_model(config), {}};
  restored.checkpoint = nn::load_checkpoint(path, *restored.model, nullptr);
  return restored;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// gradformer-train on 300 copy-task pairs (1% each are split off as validation and test sets, keeping validation
// cheap enough to run, and so to write a checkpoint, at every step), transformer-tiny, one thread, seed 3.
std::vector<std::string> copy_run_args(const TempDir& dir, const std::string& out, int64_t max_steps,
                                       int64_t valid_every) {
  if (!std::filesystem::exists(dir.str("pairs.tsv")))
    data::write_tsv(dir.str("pairs.tsv"), data::make_copy_task(5, 300, 0, 0).train);
  return {"--task", "tsv:" + dir.str("pairs.tsv"), "--model", "transformer-tiny", "--max-steps",
          std::to_string(max_steps), "--max-tokens", "64", "--warmup", "10", "--valid-every",
          std::to_string(valid_every), "--valid-bleu-sentences", "0", "--threads", "1", "--seed", "3", "--out", out};
}

}  // namespace

TEST_CASE("trainer: gradformer-train killed with SIGKILL, also mid-checkpoint, resumes to the same result") {
  const TempDir dir;
  const int64_t max_steps = 40;
  auto args = [&](const std::string& out) { return copy_run_args(dir, out, max_steps, 1); };

  // The uninterrupted run, in anomaly mode to show that a real training run has no false alarm.
  std::vector<std::string> reference_args = args(dir.str("reference"));
  reference_args.push_back("--detect-anomaly");
  TrainProcess reference(reference_args, dir.str("reference.log"));
  const int reference_status = reference.wait();
  INFO(read_text(dir.str("reference.log")));
  REQUIRE(WIFEXITED(reference_status));
  REQUIRE(WEXITSTATUS(reference_status) == 0);

  // Kill, check the checkpoint, resume from it, kill again: three kills at seeded random moments after a
  // checkpoint was written, then kills the moment a checkpoint file is being written (until one lands before
  // the rename), then a run to the end.
  const std::string out = dir.str("killed"), last = out + "/last.safetensors", log = dir.str("killed.log");
  std::mt19937 random(20240611);
  std::uniform_int_distribution<int> delay_ms(0, 150);
  int64_t step = 0;
  int kills = 0, kills_mid_write = 0;
  while (kills < 3 || kills_mid_write == 0) {
    REQUIRE(kills < 10);
    std::vector<std::string> run_args = args(out);
    if (step > 0) run_args.insert(run_args.end(), {"--resume", last});
    TrainProcess run(run_args, log);
    REQUIRE(wait_until(run, [&] { return checkpoint_step(last) > step; }, std::chrono::milliseconds(2)));
    if (kills < 3) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
    } else {
      REQUIRE(wait_until(run, [&] { return writing_checkpoint(out, run.pid()); }, std::chrono::microseconds(100)));
    }
    const pid_t pid = run.pid();
    const int status = run.kill_and_wait();
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    ++kills;
    if (writing_checkpoint(out, pid)) ++kills_mid_write;

    const Restored restored = restore(last);
    CAPTURE(kills);
    CHECK(restored.checkpoint.state.step > step);
    CHECK(restored.checkpoint.state.step < max_steps);
    step = restored.checkpoint.state.step;
    int64_t non_finite = 0;
    for (const Tensor& p : restored.model->parameters())
      for (double v : p.to_vector<double>()) non_finite += std::isfinite(v) ? 0 : 1;
    CHECK(non_finite == 0);
  }
  MESSAGE(fmt::format("{} kills, {} of them while a checkpoint was being written; resumed at step {}", kills,
                      kills_mid_write, step));

  TrainProcess finish([&] {
    std::vector<std::string> run_args = args(out);
    run_args.insert(run_args.end(), {"--resume", last});
    return run_args;
  }(), log);
  const int finish_status = finish.wait();
  const std::string finish_log = read_text(log);
  INFO(finish_log);
  REQUIRE(WIFEXITED(finish_status));
  REQUIRE(WEXITSTATUS(finish_status) == 0);
  CHECK(finish_log.find(fmt::format("resumed from {} at step {}", last, step)) != std::string::npos);

  // Same losses at every step and the same weights, bit for bit, as the run never killed.
  const Restored a = restore(dir.str("reference/last.safetensors")), b = restore(last);
  CHECK(a.checkpoint.state.step == max_steps);
  CHECK(b.checkpoint.state.step == max_steps);
  const nlohmann::json& losses = a.checkpoint.state.extra.at("train_losses");
  CHECK(losses.size() == static_cast<size_t>(max_steps));
  CHECK(b.checkpoint.state.extra.at("train_losses") == losses);
  CHECK(b.checkpoint.state.extra.at("valid_losses") == a.checkpoint.state.extra.at("valid_losses"));
  check_same_weights(*a.model, *b.model);
}
#endif  // GRADFORMER_PROGRAMS: the sanitizer build has no programs to start

#ifdef GRADFORMER_PROGRAMS
TEST_CASE("trainer: gradformer-train stopped by SIGINT or SIGTERM writes last and resumes bit for bit") {
  const TempDir dir;
  const int64_t max_steps = 40;
  auto args = [&](const std::string& out) { return copy_run_args(dir, out, max_steps, 5); };
  TrainProcess reference(args(dir.str("reference")), dir.str("reference.log"));
  REQUIRE(reference.wait() == 0);

  // SIGINT, then (resumed without --out: into the checkpoint's directory) SIGTERM, each after a validation wrote a
  // checkpoint past the previous stop; the stop writes `last` at the step it finished.
  const std::string out = dir.str("stopped"), last = out + "/last.safetensors";
  std::vector<std::string> resume_args = args(out);
  resume_args.resize(resume_args.size() - 2);  // no --out: a resume continues in its checkpoint's directory
  resume_args.insert(resume_args.end(), {"--resume", last});
  int64_t step = 0;
  for (const int signal : {SIGINT, SIGTERM}) {
    CAPTURE(signal);
    const std::string log = dir.str(fmt::format("stopped-{}.log", signal));
    TrainProcess run(step == 0 ? args(out) : resume_args, log);
    REQUIRE(wait_until(run, [&] { return checkpoint_step(last) > step; }, std::chrono::milliseconds(2)));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    ::kill(run.pid(), signal);
    const int status = run.wait();
    const std::string output = read_text(log);
    INFO(output);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + signal);
    const int64_t stopped_at = checkpoint_step(last);
    CHECK(stopped_at > step);
    CHECK(stopped_at < max_steps);
    CHECK(output.find(fmt::format("gradformer-train: interrupted at step {}; last.safetensors holds it (resume with "
                                  "--resume {})\n", stopped_at, last)) != std::string::npos);
    step = stopped_at;
  }

  // A second signal ends the process at once: both arrive together (sent while it is stopped), no step is finished.
  {
    const std::string log = dir.str("twice.log");
    TrainProcess run(resume_args, log);
    REQUIRE(wait_until(run, [&] { return read_text(log).find("resumed from") != std::string::npos; },
                       std::chrono::milliseconds(2)));
    ::kill(run.pid(), SIGSTOP);
    ::kill(run.pid(), SIGINT);
    ::kill(run.pid(), SIGTERM);
    ::kill(run.pid(), SIGCONT);
    const int status = run.wait();
    INFO(read_text(log));
    REQUIRE(WIFEXITED(status));
    // 128 + the signal handled second, whichever the kernel delivered second.
    CHECK((WEXITSTATUS(status) == 128 + SIGINT || WEXITSTATUS(status) == 128 + SIGTERM));
    CHECK(read_text(log).find("interrupted at step") == std::string::npos);
    CHECK(checkpoint_step(last) == step);
  }

  TrainProcess finish(resume_args, dir.str("finish.log"));
  REQUIRE(finish.wait() == 0);
  const Restored a = restore(dir.str("reference/last.safetensors")), b = restore(last);
  CHECK(b.checkpoint.state.step == max_steps);
  CHECK(b.checkpoint.state.extra.at("train_losses") == a.checkpoint.state.extra.at("train_losses"));
  CHECK(b.checkpoint.state.extra.at("valid_losses") == a.checkpoint.state.extra.at("valid_losses"));
  check_same_weights(*a.model, *b.model);
}
#endif  // GRADFORMER_PROGRAMS

TEST_CASE("trainer: max_minutes on the process CPU clock ignores time the process spends idle") {
  const TempDir dir;
  const nlohmann::json config = tiny_config(0.0);
  // Each step sleeps 20 ms after training: wall time runs on, the process's CPU time does not.
  std::vector<models::StepStats> steps;
  const auto sleeping_step = [&steps](const models::StepStats& s) {
    steps.push_back(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  const auto run_for_a_tenth_of_a_second = [&](models::BudgetClock clock, const std::string& out) {
    steps.clear();
    models::TrainConfig train_config = tiny_train_config(dir.str(out), 0, 0);
    train_config.max_minutes = 0.1 / 60;
    train_config.budget_clock = clock;
    const auto model = fresh_model(config);
    CHECK(make_trainer(*model, config, train_config)->run(sleeping_step, ignore_valid) ==
          models::StopReason::max_minutes);
    REQUIRE(!steps.empty());
    return steps.back();
  };

  const models::StepStats wall = run_for_a_tenth_of_a_second(models::BudgetClock::wall, "wall");
  CHECK(wall.budget_seconds == doctest::Approx(wall.elapsed_seconds).epsilon(0.01));
  CHECK(wall.step <= 6);  // five sleeps alone take the tenth of a second

  const models::StepStats cpu = run_for_a_tenth_of_a_second(models::BudgetClock::process_cpu, "cpu");
  CHECK(cpu.step > wall.step);
  CHECK(cpu.elapsed_seconds > 0.1);  // the wall clock went past the budget that the CPU clock had not used
}

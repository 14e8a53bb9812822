// gradformer-train: trains a model of the zoo on a translation task, writing DIR/last.safetensors,
// DIR/best.safetensors (with --save-dtype bf16 a half-size BF16 decoding checkpoint), DIR/train.log,
// DIR/loss.svg and with --keep-last N the last N DIR/step-NNNNNN.safetensors; then reports test BLEU, chrF and exact match with the
// best checkpoint, translated with beam search (`--test-beam`). `--write-data DIR` writes the task's splits as
// TSV instead. Exit 0 on success, 1 with a one-line reason on any error (a diverged run included), 2 on bad flags,
// 130/143/129 after SIGINT/SIGTERM/SIGHUP (the step under way is finished and `last` written; a second signal
// ends the process at once, its temporary files removed). A closed stdout (`| head`) stops the progress lines
// there, not the training: train.log keeps them all. A run refuses an
// --out DIR that holds checkpoints it was not asked to continue (a resume continues in its checkpoint's directory)
// unless --overwrite is given, so a mistyped command cannot replace a trained model, and one run at a time holds
// DIR/.lock. A resume reads the data its checkpoint records. Under `mpirun -np N` the same flags train one model
// on N ranks (models/trainer.h); rank 0 alone prints, logs and tests, and an error on any rank ends the whole job.
#include "autograd/engine.h"
#include "examples/cli.h"
#include "models/decode.h"
#include "models/progress.h"
#include "models/task.h"
#include "models/trainer.h"
#include "models/translation.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/distributed.h"
#include "nn/output_file.h"
#include "ops/threads.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <thread>

using namespace gradformer;

namespace {

struct Flags {
  std::string model = "transformer-tiny", out = "runs/transformer-tiny", write_data, resume;
  models::ModelOptions model_options;
  models::DataSettings data;  // --task, --tokenizer, --bpe-merges, --max-sentence-tokens, --skip-bad-lines
  models::TrainConfig train;
  int threads = 0;
  size_t max_train_sentences = 0;
  models::DecodeOptions test_decoding{.beam_size = 4};
  bool detect_anomaly = false;
  bool overwrite = false;
  std::string save_dtype = "f32";
  std::vector<std::string> given;  // which of --model and the data flags the command line set (not defaults)
  bool was_given(const std::string& flag) const { return std::find(given.begin(), given.end(), flag) != given.end(); }
};

// The first SIGINT, SIGTERM or SIGHUP (the terminal closed) asks the trainer to stop after its step; a second
// ends the process at once. Once training is over, a signal ends the process at once with `last_words`, which
// say what is kept.
std::atomic<bool> interrupted{false};
volatile std::sig_atomic_t interrupting_signal = 0;
std::atomic<const std::string*> last_words{nullptr};

extern "C" void on_interrupt(int signal) {
  const std::string* words = last_words.load();
  if (interrupted.load() || words != nullptr) {
    nn::remove_live_temporaries();
    if (words != nullptr && ::write(STDERR_FILENO, words->data(), words->size()) < 0) _exit(128 + signal);
    _exit(128 + signal);
  }
  interrupting_signal = signal;
  interrupted.store(true);
}

void handle_interrupts() {
  struct sigaction action{};
  action.sa_handler = on_interrupt;
  action.sa_flags = SA_RESTART;  // a write to a pipe or an MPI call under way goes on instead of failing with EINTR
  sigemptyset(&action.sa_mask);
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &action, nullptr);
}

// Progress on stdout, which may be a pipe whose reader has gone (`| head`, a pager quit): writing there then
// stops and training goes on, since train.log keeps every line and a run of hours is worth more than its
// progress lines. (Stopping with a checkpoint would end a run the user only wanted to glance at.) SIGPIPE is
// ignored, so such a write fails with EPIPE instead of killing the process.
class Console {
 public:
  void print(std::string_view text) {
    if (closed_) return;
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
      closed_ = true;
      std::clearerr(stdout);
    }
  }

 private:
  bool closed_ = false;
};
Console console;

// train.log beside the checkpoints, every write checked: a full disk stops the run with its reason instead of
// losing the log silently.
class TrainLog {
 public:
  explicit TrainLog(std::string path) : path_(std::move(path)), file_(std::fopen(path_.c_str(), "a")) {
    if (file_ == nullptr) fail<IOError>(path_, "cannot open for appending: {}", std::strerror(errno));
  }
  ~TrainLog() { std::fclose(file_); }
  TrainLog(const TrainLog&) = delete;
  TrainLog& operator=(const TrainLog&) = delete;
  void write(const std::string& line) {
    if (std::fputs((line + "\n").c_str(), file_) == EOF || std::fflush(file_) != 0)
      fail<IOError>(path_, "write failed: {}", std::strerror(errno));
  }

 private:
  std::string path_;
  std::FILE* file_;
};

// How far the run is towards its limit (--max-steps or --max-minutes, whichever ends first) and the seconds left
// at this run's pace (on the budget's clock for --max-minutes); NaN for both without a limit. A resumed run's
// pace counts only its own steps.
struct Remaining {
  double fraction = NAN, seconds = NAN;
};

Remaining remaining(const models::StepStats& s, const models::TrainConfig& config, int64_t first_step) {
  Remaining left;
  if (config.max_steps > 0 && s.step > first_step) {
    left.fraction = static_cast<double>(s.step) / static_cast<double>(config.max_steps);
    left.seconds = s.elapsed_seconds / static_cast<double>(s.step - first_step) *
                   static_cast<double>(config.max_steps - s.step);
  }
  const double limit = config.max_minutes * 60;
  if (limit > 0 && !(left.seconds <= limit - s.budget_seconds))
    left = {s.budget_seconds / limit, std::max(0.0, limit - s.budget_seconds)};
  return left;
}

// A line of train.log, and of the output when it is not a terminal. The perplexity is the unsmoothed loss's.
std::string progress_line(const models::StepStats& s, const models::TrainConfig& config, int64_t first_step) {
  const Remaining left = remaining(s, config, first_step);
  return fmt::format("step {:>6} epoch {:>3} loss {:.4f} nll {:.4f} ppl {:8.2f} lr {:.2e} |g| {:.3f} {:>7.0f} tok/s{}",
                     s.step, s.epoch, s.loss, s.nll, std::exp(std::min(s.nll, 50.0)), s.learning_rate, s.grad_norm,
                     s.tokens_per_second, std::isnan(left.seconds) ? "" : " eta " + models::format_eta(left.seconds));
}

// The terminal's line, redrawn at every step: a bar when the run has a limit.
std::string terminal_line(const models::StepStats& s, const models::TrainConfig& config, int64_t first_step) {
  const Remaining left = remaining(s, config, first_step);
  return models::redraw_line(fmt::format("{}step {} loss {:.4f} nll {:.4f} {:.0f} tok/s eta {}",
                                         std::isnan(left.fraction) ? "" : models::progress_bar(left.fraction) + " ",
                                         s.step, s.loss, s.nll, s.tokens_per_second, models::format_eta(left.seconds)));
}

std::string run_id_or_none(const std::string& checkpoint) {
  const std::string id = nn::run_id_of(checkpoint);
  return id.empty() ? "none" : id;
}

bool same_directory(const std::string& a, const std::string& b) {
  std::error_code ignored;
  return std::filesystem::equivalent(a, b, ignored);
}

// The checkpoints a run would replace without having been asked to continue them, checked before anything is
// read or written: any in --out, unless --out is the directory of the checkpoint it resumes.
void check_out_dir(const Flags& flags) {
  namespace fs = std::filesystem;
  if (flags.overwrite) return;
  const std::string last = flags.out + "/last.safetensors";
  if (!flags.resume.empty() && same_directory(flags.out, fs::path(flags.resume).parent_path().string())) {
    // A resume continues its own run there: a `last` of another run (a checkpoint copied in from elsewhere) is
    // not its to replace, nor are that run's step checkpoints and log.
    if (fs::exists(last) && !nn::same_file_as(last, {flags.resume}) &&
        nn::run_id_of(last) != nn::run_id_of(flags.resume))
      fail<IOError>("--resume " + flags.resume, "is a checkpoint of another run than {} (run id {} there, {} here); "
                    "resume that run's own checkpoint, copy this one into a new directory, or pass --overwrite to "
                    "let this run take the directory over", last, run_id_or_none(last), run_id_or_none(flags.resume));
    return;
  }
  for (const char* name : {"last.safetensors", "best.safetensors"}) {
    if (!fs::exists(flags.out + "/" + name)) continue;
    if (!flags.resume.empty())
      fail<IOError>("--out " + flags.out, "already holds {} of another run; a resume writes into the directory of "
                    "its checkpoint unless --out names a new one (or --overwrite is given)", name);
    fail<IOError>("--out " + flags.out, "already holds {}; continue it with --resume {}, or start afresh there "
                  "with --overwrite", name, flags.out + "/last.safetensors");
  }
  std::vector<std::string> step_files;
  std::error_code no_directory;  // a rank other than 0 may find none yet
  for (const auto& entry : fs::directory_iterator(flags.out, no_directory))
    if (const std::string name = entry.path().filename().string();
        name.starts_with("step-") && name.ends_with(".safetensors"))
      step_files.push_back(name);
  if (!step_files.empty())
    fail<IOError>("--out " + flags.out, "already holds step checkpoints of a run ({}, ...); resume one with --resume, "
                  "or start afresh there with --overwrite (which removes them)",
                  *std::min_element(step_files.begin(), step_files.end()));
}

// --write-data DIR: the three splits, none replaced without --overwrite.
int write_data(const Flags& flags, const data::Splits& splits) {
  const std::array<std::pair<const char*, const std::vector<data::SentencePair>*>, 3> parts{
      {{"train", &splits.train}, {"valid", &splits.valid}, {"test", &splits.test}}};
  for (const auto& [name, part] : parts)
    if (const std::string path = fmt::format("{}/{}.tsv", flags.write_data, name);
        !flags.overwrite && std::filesystem::exists(path))
      fail<IOError>("--write-data " + flags.write_data, "{} exists; add --overwrite to replace it", path);
  std::filesystem::create_directories(flags.write_data);
  for (const auto& [name, part] : parts) data::write_tsv(fmt::format("{}/{}.tsv", flags.write_data, name), *part);
  console.print(fmt::format("wrote {} train, {} valid, {} test pairs to {}\n", splits.train.size(),
                            splits.valid.size(), splits.test.size(), flags.write_data));
  return 0;
}

// A resume reads the data its checkpoint was trained on; a data flag that says otherwise is an error naming
// both. Checkpoints from before the data was recorded take the flags.
models::DataSettings resumed_data(const Flags& flags, const nlohmann::json& config) {
  if (!config.contains("data")) return flags.data;
  const models::DataSettings saved = models::data_settings_from_json(config.at("data"), flags.resume);
  const models::DataSettings& given = flags.data;
  const auto check = [&](const std::string& flag, const auto& mine, const auto& theirs) {
    if (flags.was_given(flag) && mine != theirs)
      fail<ValueError>(fmt::format("{} {}", flag, mine), "{} was trained with {} {}; a resume keeps its checkpoint's "
                       "data, so drop {} or start a new run", flags.resume, flag, theirs, flag);
  };
  check("--task", given.task, saved.task);
  check("--tokenizer", given.options.tokenizer, saved.options.tokenizer);
  check("--bpe-merges", given.options.bpe_merges, saved.options.bpe_merges);
  check("--max-sentence-tokens", given.options.max_tokens, saved.options.max_tokens);
  return saved;
}

// The job, once joined: the error handler in main ends every rank through it.
const nn::Distributed* job = nullptr;
size_t vocabulary_size = 0;  // once known: what an out-of-memory message names

// The perplexity of a loss per token, or ">5.2e+21" where exp would pass e^50: past that the number means only
// "diverged", and printing e^50 for every such loss would hide that it was capped.
std::string perplexity(double loss) {
  constexpr double cap = 50;
  return loss > cap ? fmt::format(">{:.2g}", std::exp(cap)) : fmt::format("{:.2f}", std::exp(loss));
}

// Every file --out DIR receives must have a path the system takes: checked before any work, so that a run does
// not fail at its first checkpoint. The longest is a step checkpoint's temporary file.
void check_out_path_length(const std::string& out) {
  const std::string longest = fmt::format("{}/step-000000000.safetensors.tmp.{}", out, 4194304);
  const long most = ::pathconf("/", _PC_PATH_MAX);
  const size_t limit = most > 0 ? static_cast<size_t>(most) - 1 : 4095;
  const std::string absolute = std::filesystem::absolute(longest).string();
  if (absolute.size() > limit)
    fail<IOError>("--out", "the directory's path is {} characters long; the files written there (such as {}) must "
                  "stay within the system's {} characters; choose a shorter --out", out.size(),
                  std::filesystem::path(longest).filename().string(), limit);
}

int run(Flags flags) {
  const nn::Distributed& distributed = nn::Distributed::world();
  job = &distributed;
  const int threads = set_num_threads(distributed.threads_per_rank(flags.threads));
  set_detect_anomaly(flags.detect_anomaly);
  std::optional<models::OutDirLock> lock;
  nlohmann::json config;  // the model's, and for a resume the checkpoint's codec and data
  nn::LoadedCheckpoint resumed;
  if (flags.write_data.empty()) {
    check_out_path_length(flags.out);
    if (std::filesystem::exists(flags.out) && !std::filesystem::is_directory(flags.out))
      fail<IOError>("--out " + flags.out, "exists and is not a directory");
    if (distributed.is_root()) lock.emplace(flags.out);
    check_out_dir(flags);
    if (!flags.resume.empty()) {
      resumed = nn::read_checkpoint_config(flags.resume);
      config = resumed.config;
      flags.data = resumed_data(flags, config);
      // A resume keeps its run's --keep-last unless told otherwise: forgetting it would let the run pile up step
      // checkpoints (or stop writing them) half way.
      if (!flags.was_given("--keep-last") && resumed.state.extra.is_object())
        flags.train.keep_last = resumed.state.extra.value("keep_last", flags.train.keep_last);
    }
  }
  flags.train.data = flags.data;
  const models::TaskOptions& task_options = flags.data.options;
  data::TsvReport tsv_report;
  const data::Splits splits = models::load_task(flags.data.task, task_options, &tsv_report);
  if (tsv_report.skipped_bad > 0 || tsv_report.skipped_empty > 0)
    cli::print_warning("gradformer-train",
                       fmt::format("{}: skipped {} malformed and {} empty lines of {}", flags.data.task.substr(4),
                                   tsv_report.skipped_bad, tsv_report.skipped_empty, tsv_report.lines));
  if (!flags.write_data.empty()) return write_data(flags, splits);
  std::vector<data::SentencePair> train_text = splits.train;
  if (flags.max_train_sentences > 0 && train_text.size() > flags.max_train_sentences)
    train_text.resize(flags.max_train_sentences);
  if (flags.train.lr_factor == 0)
    cli::print_warning("gradformer-train", "--lr-factor 0 makes every learning rate 0: the weights will not change");

  // A resumed run takes model and vocabulary from its checkpoint; a new one learns them from the data.
  std::optional<models::TextCodec> codec;
  if (!flags.resume.empty()) {
    config.erase("data");
    codec.emplace(models::TextCodec::take_from_config(config, flags.resume));
    if (flags.was_given("--model") && config.value("model", "") != flags.model)
      fail<ValueError>("--model " + flags.model, "{} holds a {} model; resuming keeps the checkpoint's model, so drop "
                       "--model or start a new run", flags.resume, config.value("model", "(unnamed)"));
    models::check_config_fits(config, resumed.model_shapes, flags.resume);
  } else {
    codec.emplace(models::TextCodec::learn(train_text, task_options));
    models::ModelOptions options = flags.model_options;
    options.vocab_size = static_cast<int64_t>(codec->vocabulary().size());
    config = models::model_config(flags.model, options);
  }
  vocabulary_size = codec->vocabulary().size();
  // A sentence of max_tokens tokens plus <eos> (or <bos> before the target) must fit the positional encodings.
  const auto positions = config.value("max_length", int64_t{0});
  if (positions > 0 && static_cast<int64_t>(task_options.max_tokens) >= positions)
    fail<ValueError>("--max-sentence-tokens", "{} does not fit the model's {} positions (one more is needed for "
                     "<eos>); at most {}", task_options.max_tokens, positions, positions - 1);
  default_generator().manual_seed(flags.train.seed);
  std::shared_ptr<models::Seq2SeqModel> model = models::make_model(config);

  size_t truncated = 0, encoded = 0;
  auto encode_all = [&](const std::vector<data::SentencePair>& pairs) {
    std::vector<models::Example> out;
    for (const auto& pair : pairs) {
      bool cut = false;
      out.push_back(codec->encode(pair, task_options.max_tokens, &cut));
      truncated += cut;
    }
    encoded += pairs.size();
    return out;
  };
  std::vector<models::Example> train_examples = encode_all(train_text), valid_examples = encode_all(splits.valid);
  if (truncated > 0)
    cli::print_warning("gradformer-train", fmt::format("{} of {} training and validation pairs were longer than {} "
                                                       "tokens on a side and were truncated to {} (--max-sentence-tokens)",
                                                       truncated, encoded, task_options.max_tokens,
                                                       task_options.max_tokens));
  models::Trainer trainer(*model, *codec, std::move(train_examples), std::move(valid_examples), splits.valid,
                          flags.train, config, distributed);
  handle_interrupts();
  if (!flags.resume.empty()) trainer.resume(flags.resume);
  // Only now, with tokenizer, model and resumed state settled, does the run write anything: a bad --spm-model or
  // --resume file leaves no trace (the lock removes what it created).
  if (flags.overwrite)
    if (const std::vector<std::string> removed = trainer.remove_step_checkpoints_of_other_runs(); !removed.empty())
      cli::print_warning("gradformer-train", fmt::format("--overwrite: removed {} step checkpoint(s) of another run "
                                                         "from {}: {}", removed.size(), flags.out,
                                                         fmt::join(removed, ", ")));
  std::optional<TrainLog> log;
  if (distributed.is_root()) log.emplace(flags.out + "/train.log");
  auto say = [&log](const std::string& line) {
    if (!log) return;
    console.print(line + "\n");
    log->write(line);
  };
  say(fmt::format("task {}: {} train, {} valid, {} test pairs; {} tokenizer, vocabulary {}", flags.data.task,
                  train_text.size(), splits.valid.size(), splits.test.size(), codec->tokenizer().kind(),
                  codec->vocabulary().size()));
  say(fmt::format("model {}: {} parameters; {} threads", config.at("model").get<std::string>(), model->parameter_count(),
                  num_threads()));
  say(fmt::format("{}; {} threads per rank ({} requested, {} cores, {} rank(s) on this machine); update-freq {}",
                  distributed.describe(), threads, flags.threads, std::thread::hardware_concurrency(),
                  distributed.local_size(), flags.train.update_freq));
  if (distributed.size() > 1)
    say(fmt::format("gradient allreduce in buckets of {} MiB, {}", flags.train.gradient_allreduce.bucket_mb,
                    flags.train.gradient_allreduce.overlap ? "overlapped with backward" : "after backward (--no-overlap)"));
  if (!flags.resume.empty()) say(fmt::format("resumed from {} at step {}", flags.resume, trainer.step()));
  const bool terminal = isatty(fileno(stdout));
  const int64_t first_step = trainer.step();
  const models::StopReason reason = trainer.run(
      [&](const models::StepStats& s) {
        const std::string line = progress_line(s, flags.train, first_step);
        if (terminal)
          console.print(terminal_line(s, flags.train, first_step));
        else if (s.step % 50 == 0)
          console.print(line + "\n");
        if (s.step % 50 == 0) log->write(line);
      },
      [&](const models::ValidStats& v) {
        if (terminal) console.print("\n");
        if (v.sentences == 0) return say(fmt::format("valid step {:>6}: no validation sentences", v.step));
        const std::string scores = flags.train.valid_bleu_sentences == 0
                                       ? std::string()
                                       : fmt::format(" BLEU {:.2f} chrF {:.2f}", v.bleu, v.chrf);
        say(fmt::format("valid step {:>6} loss {:.4f} ppl {}{}{}", v.step, v.loss, perplexity(v.loss), scores,
                        v.best ? " (best)" : ""));
      },
      &interrupted);
  // Every checkpoint is written: from here on a signal ends the program at once, saying so.
  static const std::string after_training =
      fmt::format("\ngradformer-train: interrupted after training; its checkpoints in {} are complete (score them "
                  "with gradformer-translate --reference)\n", flags.out);
  last_words.store(&after_training);
  if (terminal) console.print("\n");
  if (reason == models::StopReason::interrupted) {
    const int code = 128 + (interrupting_signal != 0 ? static_cast<int>(interrupting_signal) : SIGINT);
    if (!distributed.is_root()) return code;
    const std::string last = flags.out + "/last.safetensors";
    const std::string message =
        trainer.step() == 0 ? std::string("interrupted before the first step; nothing was written")
                            : fmt::format("interrupted at step {}; last.safetensors holds it (resume with --resume {})",
                                          trainer.step(), last);
    log->write(message);
    cli::print_to_stderr(fmt::format("gradformer-train: {}\n", message));
    return code;
  }
  say(fmt::format("stopped: {} after {} steps", reason == models::StopReason::max_steps     ? "step limit"
                                                : reason == models::StopReason::max_minutes ? "time limit"
                                                                                              : "early stopping",
                  trainer.step()));
  if (!distributed.is_root()) return 0;
  if (splits.test.empty()) {
    say("test: no test sentences, nothing to score");
    return 0;
  }

  // Test with the best checkpoint (the last one if validation never ran: a best.safetensors in --out would then
  // be an older run's, left by --overwrite), decoded as gradformer-translate does.
  const std::string best = flags.out + "/best.safetensors";
  nn::load_checkpoint(!trainer.valid_losses().empty() && std::filesystem::exists(best) ? best
                                                                                     : flags.out + "/last.safetensors",
                      *model, nullptr);
  model->eval();
  std::vector<std::string> sources, references;
  for (const data::SentencePair& pair : splits.test) {
    sources.push_back(pair.source);
    references.push_back(pair.target);
  }
  const std::vector<std::string> hypotheses =
      models::translate_corpus(*model, *codec, sources, {.decode = flags.test_decoding});
  const models::TranslationScores scores = models::score_translations(*codec, hypotheses, references);
  say(fmt::format("test {}", scores.bleu.format()));
  say(fmt::format("test {} exact match {:.1f}%", scores.chrf.format(), 100.0 * scores.exact_match));
  for (size_t i = 0; i < std::min<size_t>(3, hypotheses.size()); ++i)
    say(fmt::format("  {}\n  -> {}\n  (reference: {})", sources[i], hypotheses[i],
                    models::normalise_reference(*codec, references[i])));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  use_openblas_kernels_for_this_cpu(argv);
  CLI::App app{"Train a translation model of the gradformer zoo"};
  Flags f;
  const std::string mpi = nn::mpi_compiled() ? "MPI compiled in" : "built without MPI";
  app.set_version_flag("--version", "gradformer-train 0.1.0 (" + mpi + ")");
  app.footer(nn::mpi_compiled() ? "Several processes: mpirun -np N gradformer-train FLAGS (MPI compiled in).\n"
                                : "Several processes: not available, this build has no MPI (meson -Dmpi=enabled).\n");
  app.add_option("--task", f.data.task, "grammar, grammar-long, ding-sentences, ding-phrases, copy, reverse or tsv:PATH")->capture_default_str();
  app.add_option("--model", f.model,
                 "rnn-attention, attention-seq2seq, transformer-tiny, transformer-small, transformer-base")
      ->check(CLI::IsMember(models::model_names()))
      ->capture_default_str();
  app.add_option("--out", f.out, "Directory for checkpoints, log and loss curve")->capture_default_str();
  app.add_option("--write-data", f.write_data, "Write the task's train/valid/test splits as TSV into DIR and exit");
  app.add_option("--resume", f.resume,
                 "Continue from a checkpoint file (e.g. DIR/last.safetensors), on its data, in its directory unless "
                 "--out is given");
  app.add_flag("--overwrite", f.overwrite,
               "Start a new run in an --out DIR that holds checkpoints (replaced as it goes); let --write-data replace "
               "its files");
  app.add_option("--tokenizer", f.data.options.tokenizer, "word, char, bpe, or spm (SentencePiece)")
      ->check(CLI::IsMember({"word", "char", "bpe", "spm"}))
      ->capture_default_str();
  app.add_option("--spm-vocab-size", f.data.options.spm.vocab_size,
                 "SentencePiece pieces to learn on the training split (at most: a small corpus may give fewer)")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--spm-type", f.data.options.spm.model_type, "SentencePiece model to learn: unigram or bpe")
      ->check(CLI::IsMember({"unigram", "bpe"}))
      ->capture_default_str();
  app.add_option("--spm-model", f.data.options.spm_model,
                 "With --tokenizer spm: use this SentencePiece .model file instead of learning one (its bytes are "
                 "stored in the checkpoints)");
  app.add_option("--save-dtype", f.save_dtype,
                 "bf16: write best.safetensors as a decoding checkpoint, model in BF16 without optimizer state (half "
                 "the size); last.safetensors stays f32 for --resume")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app.add_option("--bpe-merges", f.data.options.bpe_merges, "BPE merges to learn")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--max-sentence-tokens", f.data.options.max_tokens, "Truncate longer sentences")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_flag("--skip-bad-lines", f.data.options.skip_bad_lines, "Skip malformed TSV lines (not one TAB, or not UTF-8) instead of stopping");
  app.add_option("--max-train-sentences", f.max_train_sentences, "Use only the first N training pairs (0: all); runs with growing N train on nested subsets")
      ->check(cli::integer_at_least(0));
  app.add_option("--max-steps", f.train.max_steps, "Stop after N optimizer steps (0: no limit)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--max-minutes", f.train.max_minutes, "Stop after N minutes (0: no limit)")
      ->check(cli::number_at_least(0))
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--budget-clock",
         [&f](const std::string& name) {
           f.train.budget_clock = name == "cpu" ? models::BudgetClock::process_cpu : models::BudgetClock::wall;
         },
         "What --max-minutes counts: wall, or cpu (this process's CPU time over all its threads, so that equal "
         "budgets stay equal on a busy machine)")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->default_str("wall");
  app.add_option("--max-tokens", f.train.max_tokens, "Token budget of a batch")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--lr-factor", f.train.lr_factor, "Scale of the warmup/inverse-sqrt schedule")
      ->check(cli::number_at_least(0))
      ->capture_default_str();
  app.add_option("--warmup", f.train.warmup_steps, "Warmup steps")->check(cli::integer_at_least(1))->capture_default_str();
  app.add_option("--label-smoothing", f.train.label_smoothing, "Label smoothing")
      ->check(cli::number_between(0, 1, cli::Bounds::open_high))
      ->capture_default_str();
  app.add_option("--clip-norm", f.train.clip_norm, "Global gradient-norm clipping (0: off)")
      ->check(cli::number_at_least(0))
      ->capture_default_str();
  app.add_option("--valid-every", f.train.valid_every, "Validate and checkpoint every N steps")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--valid-bleu-sentences", f.train.valid_bleu_sentences, "Sentences decoded for validation BLEU")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--keep-last", f.train.keep_last,
                 "Keep the last N step checkpoints (DIR/step-000400.safetensors, one per validation) for "
                 "gradformer-average; older ones this run wrote are removed (0: write none)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--patience", f.train.patience, "Stop after N validations without improvement (0: never)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--seed", f.train.seed, "Seed of initialisation, dropout and batch order")
      ->check(cli::unsigned_64())
      ->capture_default_str();
  cli::add_precision_option(app, f.train.precision);
  app.add_option("--dropout", f.model_options.dropout, "Dropout")
      ->check(cli::number_between(0, 1, cli::Bounds::open_high))
      ->capture_default_str();
  app.add_flag("--pre-norm", f.model_options.pre_norm, "Transformer: LayerNorm before each sublayer");
  app.add_flag("--share-embeddings", f.model_options.share_embeddings, "Transformer: one embedding table");
  app.add_option("--rnn-cell", f.model_options.rnn_cell, "rnn-attention: gru or lstm")
      ->check(CLI::IsMember({"gru", "lstm"}))
      ->capture_default_str();
  app.add_option("--test-beam", f.test_decoding.beam_size, "Beam size of the final test translation (1: greedy)")
      ->check(cli::integer_between(1, models::max_beam_size))
      ->capture_default_str();
  app.add_option("--threads", f.threads, "Threads per process (0: the cores divided by the ranks on this machine)")
      ->check(cli::thread_count())
      ->capture_default_str();
  app.add_option("--update-freq", f.train.update_freq, "Batches accumulated per optimizer step")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--bucket-mb", f.train.gradient_allreduce.bucket_mb, "MiB of gradients per allreduce bucket (mpirun)")
      ->check(cli::number_between(0, 4096, cli::Bounds::open_low))
      ->capture_default_str();
  bool no_overlap = false;
  app.add_flag("--no-overlap", no_overlap, "Allreduce the gradients after backward instead of during it (mpirun)");
  app.add_flag("--detect-anomaly", f.detect_anomaly,
               "Stop at the first op whose output or gradient holds NaN or Inf, naming it (slower)");
  if (const int code = cli::parse(app, "gradformer-train", argc, argv); code >= 0) return code;
  for (const char* flag : {"--model", "--task", "--tokenizer", "--bpe-merges", "--max-sentence-tokens", "--keep-last"})
    if (app.count(flag) > 0) f.given.push_back(flag);
  // A TSV path is recorded in checkpoints: absolute, so that a resume from another directory reads the same file.
  std::error_code no_path;  // "tsv:" alone: left for load_task to report
  if (std::string& task = f.data.task; task.starts_with("tsv:"))
    if (const auto path = std::filesystem::absolute(task.substr(4), no_path); !no_path)
      task = "tsv:" + path.lexically_normal().string();
  if (!f.resume.empty() && app.count("--out") == 0) {
    const std::string resumed_dir = std::filesystem::path(f.resume).parent_path().string();
    f.out = resumed_dir.empty() ? "." : resumed_dir;
  }
  f.train.out_dir = f.out;
  f.train.best_in_bfloat16 = f.save_dtype == "bf16";
  f.train.gradient_allreduce.overlap = !no_overlap;
  std::signal(SIGPIPE, SIG_IGN);  // a closed stdout fails a write (Console) instead of ending the run
  try {
    return run(f);
  } catch (const std::exception& e) {
    std::string message = cli::describe(e);
    if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr && vocabulary_size > 0)
      message = fmt::format("out of memory (vocabulary {}, --max-tokens {}): a batch's logits alone take "
                            "max-tokens x vocabulary floats; lower --max-tokens, or the vocabulary (--tokenizer bpe "
                            "with fewer --bpe-merges, or --tokenizer spm with a smaller --spm-vocab-size)",
                            vocabulary_size, f.train.max_tokens);
    if (job && job->size() > 1) job->abort("gradformer-train", message);
    if (isatty(fileno(stdout))) console.print("\n");  // ends a progress line
    cli::print_error("gradformer-train", message);
    return 1;
  }
}

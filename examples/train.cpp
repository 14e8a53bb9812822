// gradformer-train: trains a model of the zoo on a translation task, writing DIR/last.safetensors,
// DIR/best.safetensors, DIR/train.log and DIR/loss.svg; then reports test BLEU, chrF and exact match with the
// best checkpoint, translated with beam search (`--test-beam`). `--write-data DIR` writes the task's splits as
// TSV instead. Exit 0 on success, 1 with a one-line reason on any error, 2 on bad flags. A new run refuses an
// --out DIR that already holds checkpoints unless --overwrite is given, so a mistyped command cannot replace a
// trained model. Under `mpirun -np N` the same flags train one model on N ranks (models/trainer.h); rank 0
// alone prints, logs and tests, and an error on any rank ends the whole job.
#include "autograd/engine.h"
#include "examples/cli.h"
#include "models/decode.h"
#include "models/metrics.h"
#include "models/task.h"
#include "models/trainer.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/distributed.h"
#include "ops/threads.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace gradformer;

namespace {

struct Flags {
  std::string task = "grammar", model = "transformer-tiny", out = "runs/transformer-tiny", write_data, resume;
  models::TaskOptions task_options;
  models::ModelOptions model_options;
  models::TrainConfig train;
  int threads = 0;
  size_t max_train_sentences = 0;
  models::DecodeOptions test_decoding{.beam_size = 4};
  bool detect_anomaly = false;
  bool overwrite = false;
  bool model_given = false;  // --model on the command line, not the default
};

std::string progress_line(const models::StepStats& s, const models::TrainConfig& config) {
  std::string eta;
  if (config.max_steps > 0 && s.step > 0) {
    const double remaining = s.elapsed_seconds / static_cast<double>(s.step) * static_cast<double>(config.max_steps - s.step);
    eta = fmt::format(" eta {:.0f}s", remaining);
  } else if (config.max_minutes > 0) {
    eta = fmt::format(" eta {:.0f}s", std::max(0.0, config.max_minutes * 60 - s.elapsed_seconds));
  }
  return fmt::format("step {:>6} epoch {:>3} loss {:.4f} ppl {:8.2f} lr {:.2e} |g| {:.3f} {:>7.0f} tok/s{}", s.step,
                     s.epoch, s.loss, std::exp(std::min(s.loss, 50.0)), s.learning_rate, s.grad_norm,
                     s.tokens_per_second, eta);
}

// The checkpoints a new run would replace, checked before anything is read or written.
void check_out_dir(const Flags& flags) {
  namespace fs = std::filesystem;
  if (fs::exists(flags.out) && !fs::is_directory(flags.out))
    fail<IOError>("--out " + flags.out, "exists and is not a directory");
  if (!flags.resume.empty() || flags.overwrite) return;
  for (const char* name : {"last.safetensors", "best.safetensors"}) {
    const std::string path = flags.out + "/" + name;
    if (fs::exists(path))
      fail<IOError>("--out " + flags.out, "already holds {}; continue it with --resume {}, or start afresh there "
                    "with --overwrite", name, flags.out + "/last.safetensors");
  }
}

// The job, once joined: the error handler in main ends every rank through it.
const nn::Distributed* job = nullptr;

int run(const Flags& flags) {
  const nn::Distributed& distributed = nn::Distributed::world();
  job = &distributed;
  const int threads = set_num_threads(distributed.threads_per_rank(flags.threads));
  set_detect_anomaly(flags.detect_anomaly);
  if (flags.write_data.empty()) check_out_dir(flags);
  data::TsvReport tsv_report;
  const data::Splits splits = models::load_task(flags.task, flags.task_options, &tsv_report);
  if (tsv_report.skipped_bad > 0 || tsv_report.skipped_empty > 0)
    cli::print_warning("gradformer-train",
                       fmt::format("{}: skipped {} malformed and {} empty lines of {}", flags.task.substr(4),
                                   tsv_report.skipped_bad, tsv_report.skipped_empty, tsv_report.lines));
  if (!flags.write_data.empty()) {
    std::filesystem::create_directories(flags.write_data);
    for (const auto& [name, part] : {std::pair{"train", &splits.train}, {"valid", &splits.valid}, {"test", &splits.test}})
      data::write_tsv(flags.write_data + "/" + name + ".tsv", *part);
    fmt::print("wrote {} train, {} valid, {} test pairs to {}\n", splits.train.size(), splits.valid.size(),
               splits.test.size(), flags.write_data);
    return 0;
  }
  std::vector<data::SentencePair> train_text = splits.train;
  if (flags.max_train_sentences > 0 && train_text.size() > flags.max_train_sentences)
    train_text.resize(flags.max_train_sentences);

  std::filesystem::create_directories(flags.out);
  std::ofstream log(flags.out + "/train.log", std::ios::app);
  auto say = [&log, &distributed](const std::string& line) {
    if (!distributed.is_root()) return;
    fmt::print("{}\n", line);
    std::fflush(stdout);
    log << line << '\n';
    log.flush();
  };

  // A resumed run takes model and vocabulary from its checkpoint; a new one learns them from the data.
  std::optional<models::TextCodec> codec;
  nlohmann::json config;
  if (!flags.resume.empty()) {
    config = nn::read_checkpoint_config(flags.resume).config;
    codec.emplace(models::TextCodec::take_from_config(config, flags.resume));
    if (flags.model_given && config.value("model", "") != flags.model)
      fail<ValueError>("--model " + flags.model, "{} holds a {} model; resuming keeps the checkpoint's model, so drop "
                       "--model or start a new run", flags.resume, config.value("model", "(unnamed)"));
  } else {
    codec.emplace(models::TextCodec::learn(train_text, flags.task_options));
    models::ModelOptions options = flags.model_options;
    options.vocab_size = static_cast<int64_t>(codec->vocabulary().size());
    config = models::model_config(flags.model, options);
  }
  // A sentence of max_tokens tokens plus <eos> (or <bos> before the target) must fit the positional encodings.
  const auto positions = config.value("max_length", int64_t{0});
  if (positions > 0 && static_cast<int64_t>(flags.task_options.max_tokens) >= positions)
    fail<ValueError>("--max-sentence-tokens", "{} does not fit the model's {} positions (one more is needed for "
                     "<eos>); at most {}", flags.task_options.max_tokens, positions, positions - 1);
  default_generator().manual_seed(flags.train.seed);
  std::shared_ptr<models::Seq2SeqModel> model = models::make_model(config);

  size_t truncated = 0, encoded = 0;
  auto encode_all = [&](const std::vector<data::SentencePair>& pairs) {
    std::vector<models::Example> out;
    for (const auto& pair : pairs) {
      bool cut = false;
      out.push_back(codec->encode(pair, flags.task_options.max_tokens, &cut));
      truncated += cut;
    }
    encoded += pairs.size();
    return out;
  };
  say(fmt::format("task {}: {} train, {} valid, {} test pairs; {} tokenizer, vocabulary {}", flags.task,
                  train_text.size(), splits.valid.size(), splits.test.size(), codec->tokenizer().kind(),
                  codec->vocabulary().size()));
  say(fmt::format("model {}: {} parameters; {} threads", config.at("model").get<std::string>(), model->parameter_count(),
                  num_threads()));
  say(fmt::format("{}; {} threads per rank ({} requested, {} cores, {} rank(s) on this machine); update-freq {}",
                  distributed.describe(), threads, flags.threads, std::thread::hardware_concurrency(),
                  distributed.local_size(), flags.train.update_freq));

  std::vector<models::Example> train_examples = encode_all(train_text), valid_examples = encode_all(splits.valid);
  if (truncated > 0)
    cli::print_warning("gradformer-train", fmt::format("{} of {} training and validation pairs were longer than {} "
                                                       "tokens on a side and were truncated to {} (--max-sentence-tokens)",
                                                       truncated, encoded, flags.task_options.max_tokens,
                                                       flags.task_options.max_tokens));
  models::Trainer trainer(*model, *codec, std::move(train_examples), std::move(valid_examples), splits.valid,
                          flags.train, config, distributed);
  if (!flags.resume.empty()) {
    trainer.resume(flags.resume);
    say(fmt::format("resumed from {} at step {}", flags.resume, trainer.step()));
  }
  const bool terminal = isatty(fileno(stdout));
  const models::StopReason reason = trainer.run(
      [&](const models::StepStats& s) {
        const std::string line = progress_line(s, flags.train);
        if (terminal) {
          fmt::print("\r{}", line);
          std::fflush(stdout);
        } else if (s.step % 50 == 0) {
          fmt::print("{}\n", line);
          std::fflush(stdout);
        }
        if (s.step % 50 == 0) log << line << '\n';
      },
      [&](const models::ValidStats& v) {
        if (terminal) fmt::print("\n");
        say(fmt::format("valid step {:>6} loss {:.4f} ppl {:.2f} BLEU {:.2f} chrF {:.2f}{}", v.step, v.loss,
                        std::exp(std::min(v.loss, 50.0)), v.bleu, v.chrf, v.best ? " (best)" : ""));
      });
  if (terminal) fmt::print("\n");
  say(fmt::format("stopped: {} after {} steps", reason == models::StopReason::max_steps     ? "step limit"
                                                : reason == models::StopReason::max_minutes ? "time limit"
                                                                                              : "early stopping",
                  trainer.step()));
  if (!distributed.is_root()) return 0;

  // Test with the best checkpoint (the last one if validation never ran: a best.safetensors in --out would then
  // be an older run's, left by --overwrite), decoded as gradformer-translate does.
  const std::string best = flags.out + "/best.safetensors";
  nn::load_checkpoint(!trainer.valid_losses().empty() && std::filesystem::exists(best) ? best
                                                                                     : flags.out + "/last.safetensors",
                      *model, nullptr);
  model->eval();
  std::vector<std::string> hypotheses, references;
  for (size_t start = 0; start < splits.test.size(); start += 64) {
    std::vector<std::vector<int64_t>> sources;
    for (size_t i = start; i < std::min(splits.test.size(), start + 64); ++i) {
      sources.push_back(codec->encode_source(splits.test[i].source, flags.task_options.max_tokens));
      references.push_back(codec->tokenizer().detokenize(codec->tokenizer().tokenize(splits.test[i].target)));
    }
    for (const auto& ids : models::translate(*model, models::make_source_batch(sources), flags.test_decoding))
      hypotheses.push_back(codec->decode(ids));
  }
  say(fmt::format("test {}", metrics::corpus_bleu(hypotheses, references).format()));
  say(fmt::format("test {} exact match {:.1f}%", metrics::corpus_chrf(hypotheses, references).format(),
                  100.0 * metrics::exact_match(hypotheses, references)));
  for (size_t i = 0; i < std::min<size_t>(3, hypotheses.size()); ++i)
    say(fmt::format("  {}\n  -> {}\n  (reference: {})", splits.test[i].source, hypotheses[i], references[i]));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a translation model of the gradformer zoo"};
  Flags f;
  const std::string mpi = nn::mpi_compiled() ? "MPI compiled in" : "built without MPI";
  app.set_version_flag("--version", "gradformer-train 0.1.0 (" + mpi + ")");
  app.footer(nn::mpi_compiled() ? "Several processes: mpirun -np N gradformer-train FLAGS (MPI compiled in).\n"
                                : "Several processes: not available, this build has no MPI (meson -Dmpi=enabled).\n");
  app.add_option("--task", f.task, "grammar, ding-sentences, ding-phrases, copy, reverse or tsv:PATH")->capture_default_str();
  app.add_option("--model", f.model,
                 "rnn-attention, attention-seq2seq, transformer-tiny, transformer-small, transformer-base")
      ->check(CLI::IsMember(models::model_names()))
      ->capture_default_str();
  app.add_option("--out", f.out, "Directory for checkpoints, log and loss curve")->capture_default_str();
  app.add_option("--write-data", f.write_data, "Write the task's train/valid/test splits as TSV into DIR and exit");
  app.add_option("--resume", f.resume, "Continue from a checkpoint file (e.g. DIR/last.safetensors)");
  app.add_flag("--overwrite", f.overwrite, "Start a new run in an --out DIR that holds checkpoints (replaced as it goes)");
  app.add_option("--tokenizer", f.task_options.tokenizer, "word, char or bpe")
      ->check(CLI::IsMember({"word", "char", "bpe"}))
      ->capture_default_str();
  app.add_option("--bpe-merges", f.task_options.bpe_merges, "BPE merges to learn")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--max-sentence-tokens", f.task_options.max_tokens, "Truncate longer sentences")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_flag("--skip-bad-lines", f.task_options.skip_bad_lines, "Skip malformed TSV lines instead of stopping");
  app.add_option("--max-train-sentences", f.max_train_sentences, "Use only the first N training pairs (0: all)")
      ->check(cli::integer_at_least(0));
  app.add_option("--max-steps", f.train.max_steps, "Stop after N optimizer steps (0: no limit)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--max-minutes", f.train.max_minutes, "Stop after N minutes (0: no limit)")
      ->check(cli::number_at_least(0))
      ->capture_default_str();
  app.add_option("--max-tokens", f.train.max_tokens, "Token budget of a batch")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--lr-factor", f.train.lr_factor, "Scale of the warmup/inverse-sqrt schedule")
      ->check(cli::number_at_least(0))
      ->capture_default_str();
  app.add_option("--warmup", f.train.warmup_steps, "Warmup steps")->check(cli::integer_at_least(1))->capture_default_str();
  app.add_option("--label-smoothing", f.train.label_smoothing, "Label smoothing")
      ->check(cli::number_between(0, 1, true))
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
  app.add_option("--patience", f.train.patience, "Stop after N validations without improvement (0: never)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--seed", f.train.seed, "Seed of initialisation, dropout and batch order")->capture_default_str();
  cli::add_precision_option(app, f.train.precision);
  app.add_option("--dropout", f.model_options.dropout, "Dropout")
      ->check(cli::number_between(0, 1, true))
      ->capture_default_str();
  app.add_flag("--pre-norm", f.model_options.pre_norm, "Transformer: LayerNorm before each sublayer");
  app.add_flag("--share-embeddings", f.model_options.share_embeddings, "Transformer: one embedding table");
  app.add_option("--rnn-cell", f.model_options.rnn_cell, "rnn-attention: gru or lstm")
      ->check(CLI::IsMember({"gru", "lstm"}))
      ->capture_default_str();
  app.add_option("--test-beam", f.test_decoding.beam_size, "Beam size of the final test translation (1: greedy)")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--threads", f.threads, "Threads per process (0: the cores divided by the ranks on this machine)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--update-freq", f.train.update_freq, "Batches accumulated per optimizer step")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_flag("--detect-anomaly", f.detect_anomaly,
               "Stop at the first op whose output or gradient holds NaN or Inf, naming it (slower)");
  if (const int code = cli::parse(app, "gradformer-train", argc, argv); code >= 0) return code;
  f.train.out_dir = f.out;
  f.model_given = app.count("--model") > 0;
  try {
    return run(f);
  } catch (const std::exception& e) {
    if (job && job->size() > 1) job->abort("gradformer-train", e.what());
    if (isatty(fileno(stdout))) fmt::print("\n");  // ends a progress line
    cli::print_error("gradformer-train", e.what());
    return 1;
  }
}

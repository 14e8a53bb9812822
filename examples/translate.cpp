// gradformer-translate: translates source sentences (one per line, from --input or stdin) with a checkpoint
// written by gradformer-train, or an ensemble of several (--checkpoint repeated: their log-probabilities are
// averaged at each step), one translation per line to --output or stdout; greedy or beam search; with --n-best K,
// K hypotheses per sentence in the Moses/Marian n-best format; with --reference, prints BLEU, chrF and exact
// match; with --attention-svg, draws the attention of the first model on the first sentence. An empty (or blank)
// input line gives an empty output line, as in Marian and fairseq, so that line n of the output always translates
// line n of the input. Translation is a stream: each batch of --batch lines is written (and reaches a pipe) before
// the next is read. --output follows nn/output_file.h's rule (a regular file is replaced only once complete).
// Ctrl-C (or SIGTERM) stops after the batch in hand and keeps what was translated (exit 130, 143); a second one
// stops at once. Exit 0 on success, 1 with a one-line reason on any error (a failed write included), 2 on bad flags.
#include "autograd/engine.h"
#include "examples/cli.h"
#include "models/decode.h"
#include "models/progress.h"
#include "models/svg.h"
#include "models/task.h"
#include "models/translation.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/output_file.h"
#include "ops/autocast.h"
#include "ops/threads.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

using namespace gradformer;

namespace {

// The signal (SIGINT, SIGTERM) that asked to stop, 0 if none: translation ends after the batch in hand, whose
// lines are written, and --output keeps everything translated so far.
volatile std::sig_atomic_t stop_signal = 0;
pthread_t main_thread;

extern "C" void request_stop(int signal) {
  // A worker thread (OpenMP, OpenBLAS) may be the one that receives it; the main thread must see it, to leave a
  // read of stdin that would otherwise wait for the next line.
  if (!pthread_equal(pthread_self(), main_thread)) {
    pthread_kill(main_thread, signal);
    return;
  }
  if (stop_signal != 0) {  // the second one stops at once
    std::signal(signal, SIG_DFL);
    std::raise(signal);
  }
  stop_signal = signal;
}

void stop_on_interrupt() {
  main_thread = pthread_self();
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a read of stdin returns, so the main thread can stop
  for (const int signal : {SIGINT, SIGTERM}) sigaction(signal, &action, nullptr);
}

struct Flags {
  std::vector<std::string> checkpoints;
  std::string input, output, reference, attention_svg;
  models::CorpusOptions corpus;
  int64_t n_best = 0;  // 0: plain translations; else the n-best format
  int threads = 0;
  DType precision = DType::f32;
};

// Lines from a FILE*, with the line end (LF or CRLF) removed. A read error (stdin being a directory, an I/O
// error) throws instead of passing for the end of the input.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : name_(path) {
    if (std::filesystem::is_directory(path)) fail<IOError>(path, "is a directory, not a file");
    file_ = std::fopen(path.c_str(), "r");
    if (file_ == nullptr) fail<IOError>(path, "cannot open for reading");
  }
  LineReader() : name_("stdin"), file_(stdin), owned_(false) {}
  ~LineReader() {
    std::free(buffer_);
    if (owned_) std::fclose(file_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool next(std::string& line) {
    errno = 0;
    const ssize_t length = ::getline(&buffer_, &capacity_, file_);
    if (length < 0) {
      if (std::ferror(file_) && !(errno == EINTR && stop_signal != 0))
        fail<IOError>(name_, "read failed: {}", std::strerror(errno));
      return false;
    }
    line.assign(buffer_, static_cast<size_t>(length));
    if (!line.empty() && line.back() == '\n') line.pop_back();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

  std::vector<std::string> all() {
    std::vector<std::string> lines;
    for (std::string line; next(line);) lines.push_back(line);
    return lines;
  }

 private:
  std::string name_;
  std::FILE* file_ = nullptr;
  bool owned_ = true;
  char* buffer_ = nullptr;  // getline's, grown by it
  size_t capacity_ = 0;
};

void draw_attention(const Flags& flags, const models::ModelEnsemble& ensemble, const models::TextCodec& codec,
                    const std::string& sentence, size_t max_source_tokens) {
  const models::Seq2SeqModel& model = ensemble.front();
  if (sentence.find_first_not_of(" \t\r\f\v") == std::string::npos) {
    cli::print_warning("gradformer-translate", "sentence 1 is empty: no attention to draw");
    return;
  }
  const Tensor source = models::make_source_batch({codec.encode_source(sentence, max_source_tokens)});
  std::vector<int64_t> target_in{data::bos_id};
  const std::vector<int64_t> best = models::decode(ensemble, source, flags.corpus.decode).front().front().tokens;
  target_in.insert(target_in.end(), best.begin(), best.end());
  std::vector<int64_t> target_out(target_in.begin() + 1, target_in.end());
  target_out.push_back(data::eos_id);
  const auto maps = model.attention_maps(source, models::make_source_batch({target_in}));
  nn::write_text_file(flags.attention_svg,
                      models::attention_svg(maps, codec.tokens(codec.encode_source(sentence, max_source_tokens)),
                                            codec.tokens(target_out)));
  fmt::print(stderr, "wrote the attention of sentence 1 ({} maps) to {}\n", maps.size(), flags.attention_svg);
}

int run(const Flags& flags) {
  if (flags.n_best > flags.corpus.decode.beam_size)
    fail<ValueError>("--n-best", "{} exceeds --beam {}: a beam holds at most as many hypotheses as its size",
                     flags.n_best, flags.corpus.decode.beam_size);
  // Before any work, so that a path that cannot be written is reported at once; a replaced file keeps its old
  // contents until the translation is complete.
  nn::OutputFile out = flags.output.empty() ? nn::OutputFile::standard_output() : nn::OutputFile(flags.output);
  const std::vector<std::string> references =
      flags.reference.empty() ? std::vector<std::string>{} : LineReader(flags.reference).all();
  LineReader input_file_or_stdin = flags.input.empty() ? LineReader() : LineReader(flags.input);

  stop_on_interrupt();
  set_num_threads(flags.threads);
  const AutocastGuard autocast(flags.precision);
  std::optional<models::TextCodec> codec;
  std::vector<std::shared_ptr<models::Seq2SeqModel>> members;
  models::ModelEnsemble ensemble;
  for (const std::string& path : flags.checkpoints) {
    nlohmann::json config = nn::read_checkpoint_config(path).config;
    models::TextCodec member_codec = models::TextCodec::take_from_config(config, path);
    // Averaged log-probabilities mean something only when every model numbers the same tokens alike.
    if (codec && member_codec.to_json() != codec->to_json())
      fail<ValueError>(path, "its vocabulary or tokenizer differs from {}'s; the models of an ensemble must share both",
                       flags.checkpoints.front());
    if (!codec) codec.emplace(std::move(member_codec));
    members.push_back(models::make_model(config));
    nn::load_checkpoint(path, *members.back(), nullptr);
    members.back()->eval();
    ensemble.push_back(*members.back());
  }

  // The library checks these too; here the message names the flag.
  const int64_t positions = models::ensemble_positions(ensemble);
  if (positions > 0) {
    if (static_cast<int64_t>(flags.corpus.max_source_tokens) >= positions)
      fail<ValueError>("--max-sentence-tokens", "{} does not fit the model's {} positions (one more is needed for "
                       "<eos>); at most {}", flags.corpus.max_source_tokens, positions, positions - 1);
    if (flags.corpus.decode.max_length > positions)
      fail<ValueError>("--max-length", "{} exceeds the model's {} positions", flags.corpus.decode.max_length, positions);
  }

  std::optional<std::string> first_source;  // for --attention-svg
  std::vector<std::string> translations;    // kept only to be scored
  const bool terminal = isatty(fileno(stderr));
  models::StreamProgress progress(terminal ? stderr : nullptr,
                                  terminal && !flags.input.empty() ? models::count_lines(flags.input) : std::nullopt,
                                  "sentences");
  const models::CorpusReport report = models::translate_corpus(
      ensemble, *codec,
      [&](std::string& line) {
        const bool more = stop_signal == 0 && input_file_or_stdin.next(line);
        if (more && !first_source) first_source = line;
        return more;
      },
      [&](size_t first, const std::vector<std::vector<models::ScoredTranslation>>& batch) {
        std::string text;
        for (size_t i = 0; i < batch.size(); ++i) {
          if (flags.n_best == 0) {
            text += batch[i].front().text + '\n';
            continue;
          }
          for (const models::ScoredTranslation& h : batch[i])
            text += fmt::format("{} ||| {} ||| F0= {} ||| {}\n", first + i, h.text, h.log_prob, h.score);
        }
        out.write(text);
        if (!flags.reference.empty())
          for (const auto& n_best : batch) translations.push_back(n_best.front().text);
        progress.advance(batch.size());
      },
      flags.corpus);
  progress.end();
  out.commit();
  if (stop_signal != 0) {
    fmt::print(stderr, "gradformer-translate: interrupted after {} sentences; {} holds their translations\n",
               report.sentences, out.path());
    return 128 + stop_signal;
  }
  if (report.truncated > 0)
    cli::print_warning("gradformer-translate", fmt::format("{} of {} sentences were longer than {} tokens and were "
                                                           "truncated to {} (--max-sentence-tokens)", report.truncated,
                                                           report.translated, report.max_source_tokens,
                                                           report.max_source_tokens));

  if (!flags.reference.empty()) {
    if (references.size() != report.sentences)
      fail<ValueError>(flags.reference, "{} references for {} sources", references.size(), report.sentences);
    const models::TranslationScores scores = models::score_translations(*codec, translations, references);
    fmt::print(stderr, "{}\n{}\nexact match {:.1f}%\n", scores.bleu.format(), scores.chrf.format(),
               100.0 * scores.exact_match);
  }
  if (!flags.attention_svg.empty() && first_source)
    draw_attention(flags, ensemble, *codec, *first_source, report.max_source_tokens);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  use_openblas_kernels_for_this_cpu(argv);
  CLI::App app{"Translate with a gradformer checkpoint"};
  Flags f;
  app.add_option("--checkpoint", f.checkpoints,
                 "A checkpoint written by gradformer-train; repeated, an ensemble that averages the models' "
                 "log-probabilities (same vocabulary and tokenizer)")
      ->required()
      ->take_all();
  app.add_option("--input", f.input, "Source sentences, one per line (default: stdin)");
  app.add_option("--output", f.output, "Translations, one per line (default: stdout)");
  app.add_option("--reference", f.reference, "Reference translations: print BLEU, chrF and exact match to stderr");
  app.add_option("--beam", f.corpus.decode.beam_size, fmt::format("Beam size (1: greedy; at most {})", models::max_beam_size))
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--n-best", f.n_best,
                 "Print this many hypotheses per sentence, best first, as 'ID ||| hypothesis ||| F0= <sum log-prob> "
                 "||| <score>' (Moses/Marian n-best format; at most --beam)")
      ->check(cli::integer_between(1, models::max_beam_size));
  app.add_option("--length-penalty", f.corpus.decode.length_penalty, "Beam score = log p / length^penalty")
      ->check(cli::number_between(-10, 10))
      ->capture_default_str();
  app.add_option("--max-length", f.corpus.decode.max_length, "Longest translation (0: 2 x source + 10)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--max-sentence-tokens", f.corpus.max_source_tokens,
                 "Truncate longer sources (0: the longest the model's positions hold)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--attention-svg", f.attention_svg, "Draw the attention of the first sentence into this SVG file");
  app.add_option("--batch", f.corpus.batch_size, "Sentences read, decoded and written together (1: answer line by line)")->check(cli::integer_at_least(1))->capture_default_str();
  app.add_option("--threads", f.threads, "Threads (0: all cores)")->check(cli::thread_count())->capture_default_str();
  cli::add_precision_option(app, f.precision);
  if (const int code = cli::parse(app, "gradformer-translate", argc, argv); code >= 0) return code;
  f.corpus.decode.n_best = std::max<int64_t>(f.n_best, 1);
  try {
    return run(f);
  } catch (const std::exception& e) {
    cli::print_error("gradformer-translate", e.what());
    return 1;
  }
}

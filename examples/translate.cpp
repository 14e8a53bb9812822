// gradformer-translate: translates source sentences (one per line, from --input or stdin) with a checkpoint
// written by gradformer-train, one translation per line to --output or stdout; greedy or beam search; with
// --reference, prints BLEU, chrF and exact match; with --attention-svg, draws the attention of the first
// sentence. An empty (or blank) input line gives an empty output line, as in Marian and fairseq, so that line
// n of the output always translates line n of the input. Exit 0 on success, 1 with a one-line reason on any
// error, 2 on bad flags.
#include "autograd/engine.h"
#include "examples/cli.h"
#include "models/decode.h"
#include "models/metrics.h"
#include "models/svg.h"
#include "models/task.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "ops/threads.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>

using namespace gradformer;

namespace {

struct Flags {
  std::string checkpoint, input, output, reference, attention_svg;
  models::DecodeOptions decode;
  int threads = 0;
  size_t batch = 64;
  size_t max_tokens = 0;  // 0: as many as the model's positions hold
  DType precision = DType::f32;
};

bool blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string::npos;
}

std::vector<std::string> read_lines(std::istream& in) {
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> read_lines(const std::string& path) {
  if (std::filesystem::is_directory(path)) fail<IOError>(path, "is a directory, not a file");
  std::ifstream in(path);
  if (!in) fail<IOError>(path, "cannot open for reading");
  return read_lines(in);
}

int run(const Flags& flags) {
  set_num_threads(flags.threads);
  const AutocastGuard autocast(flags.precision);
  nlohmann::json config = nn::read_checkpoint_config(flags.checkpoint).config;
  const models::TextCodec codec = models::TextCodec::take_from_config(config, flags.checkpoint);
  std::shared_ptr<models::Seq2SeqModel> model = models::make_model(config);
  nn::load_checkpoint(flags.checkpoint, *model, nullptr);
  model->eval();

  // A source of n tokens takes n + 1 positions (<eos>); a translation of m tokens takes m (<bos> first).
  const auto positions = config.value("max_length", int64_t{0});
  size_t max_tokens = flags.max_tokens;
  if (positions > 0) {
    if (max_tokens == 0) max_tokens = static_cast<size_t>(positions - 1);
    if (static_cast<int64_t>(max_tokens) >= positions)
      fail<ValueError>("--max-sentence-tokens", "{} does not fit the model's {} positions (one more is needed for "
                       "<eos>); at most {}", max_tokens, positions, positions - 1);
    if (flags.decode.max_length > positions)
      fail<ValueError>("--max-length", "{} exceeds the model's {} positions", flags.decode.max_length, positions);
  } else if (max_tokens == 0) {
    max_tokens = std::numeric_limits<size_t>::max();
  }

  const std::vector<std::string> sources = flags.input.empty() ? read_lines(std::cin) : read_lines(flags.input);
  std::vector<std::string> hypotheses(sources.size());
  std::vector<size_t> to_translate;
  for (size_t i = 0; i < sources.size(); ++i)
    if (!blank(sources[i])) to_translate.push_back(i);
  size_t truncated = 0;
  for (size_t start = 0; start < to_translate.size(); start += flags.batch) {
    const size_t end = std::min(to_translate.size(), start + flags.batch);
    std::vector<std::vector<int64_t>> ids;
    for (size_t k = start; k < end; ++k) {
      bool cut = false;
      ids.push_back(codec.encode_source(sources[to_translate[k]], max_tokens, &cut));
      truncated += cut;
    }
    const auto outputs = models::translate(*model, models::make_source_batch(ids), flags.decode);
    for (size_t k = start; k < end; ++k) hypotheses[to_translate[k]] = codec.decode(outputs[k - start]);
  }
  if (truncated > 0)
    cli::print_warning("gradformer-translate", fmt::format("{} of {} sentences were longer than {} tokens and were "
                                                           "truncated to {} (--max-sentence-tokens)",
                                                           truncated, to_translate.size(), max_tokens, max_tokens));
  std::ofstream file;
  if (!flags.output.empty()) {
    file.open(flags.output);
    if (!file) fail<IOError>(flags.output, "cannot open for writing");
  }
  std::ostream& out = flags.output.empty() ? std::cout : file;
  for (const std::string& h : hypotheses) out << h << '\n';

  if (!flags.reference.empty()) {
    // References go through the same tokenise/detokenise round as the hypotheses, so spacing conventions of the
    // corpus ("der Hund ." against "der Hund.") do not count as errors in exact match and chrF.
    std::vector<std::string> references;
    for (const std::string& line : read_lines(flags.reference))
      references.push_back(codec.tokenizer().detokenize(codec.tokenizer().tokenize(line)));
    if (references.size() != hypotheses.size())
      fail<ValueError>(flags.reference, "{} references for {} sources", references.size(), hypotheses.size());
    fmt::print(stderr, "{}\n{}\nexact match {:.1f}%\n", metrics::corpus_bleu(hypotheses, references).format(),
               metrics::corpus_chrf(hypotheses, references).format(), 100.0 * metrics::exact_match(hypotheses, references));
  }
  if (!flags.attention_svg.empty() && !sources.empty() && blank(sources[0])) {
    cli::print_warning("gradformer-translate", "sentence 1 is empty: no attention to draw");
  } else if (!flags.attention_svg.empty() && !sources.empty()) {
    const std::vector<int64_t> source_ids = codec.encode_source(sources[0], max_tokens);
    std::vector<int64_t> target_in{data::bos_id};
    for (const auto& ids : models::translate(*model, models::make_source_batch({source_ids}), flags.decode))
      target_in.insert(target_in.end(), ids.begin(), ids.end());
    std::vector<int64_t> target_out(target_in.begin() + 1, target_in.end());
    target_out.push_back(data::eos_id);
    const auto maps = model->attention_maps(models::make_source_batch({source_ids}), models::make_source_batch({target_in}));
    models::write_text_file(flags.attention_svg, models::attention_svg(maps, codec.tokens(source_ids), codec.tokens(target_out)));
    fmt::print(stderr, "wrote the attention of sentence 1 ({} maps) to {}\n", maps.size(), flags.attention_svg);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Translate with a gradformer checkpoint"};
  Flags f;
  app.add_option("--checkpoint", f.checkpoint, "A checkpoint written by gradformer-train")->required();
  app.add_option("--input", f.input, "Source sentences, one per line (default: stdin)");
  app.add_option("--output", f.output, "Translations, one per line (default: stdout)");
  app.add_option("--reference", f.reference, "Reference translations: print BLEU, chrF and exact match to stderr");
  app.add_option("--beam", f.decode.beam_size, "Beam size (1: greedy)")
      ->check(cli::integer_at_least(1))
      ->capture_default_str();
  app.add_option("--length-penalty", f.decode.length_penalty, "Beam score = log p / length^penalty")
      ->check(cli::number_between(-10, 10))
      ->capture_default_str();
  app.add_option("--max-length", f.decode.max_length, "Longest translation (0: 2 x source + 10)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--max-sentence-tokens", f.max_tokens,
                 "Truncate longer sources (0: the longest the model's positions hold)")
      ->check(cli::integer_at_least(0))
      ->capture_default_str();
  app.add_option("--attention-svg", f.attention_svg, "Draw the attention of the first sentence into this SVG file");
  app.add_option("--batch", f.batch, "Sentences decoded together")->check(cli::integer_at_least(1))->capture_default_str();
  app.add_option("--threads", f.threads, "Threads (0: all cores)")->check(cli::integer_at_least(0))->capture_default_str();
  cli::add_precision_option(app, f.precision);
  if (const int code = cli::parse(app, "gradformer-translate", argc, argv); code >= 0) return code;
  try {
    return run(f);
  } catch (const std::exception& e) {
    cli::print_error("gradformer-translate", e.what());
    return 1;
  }
}

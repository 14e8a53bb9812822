// gradformer-average: averages the model weights of several checkpoints of one training run into one checkpoint
// for decoding, as fairseq's scripts/average_checkpoints.py does (nn::average_checkpoints). The output keeps the
// first input's configuration and vocabulary and holds no optimizer state. Exit 0 on success (with a warning for
// inputs of different runs, or one file given twice), 1 with a one-line reason on any error (checkpoints of
// different models, an output that exists, is an input, or was created meanwhile by another run), 2 on bad flags,
// 130/143/129 after SIGINT/SIGTERM/SIGHUP, which leave no temporary file behind.
#include "examples/cli.h"
#include "nn/checkpoint.h"
#include "nn/output_file.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

using namespace gradformer;

namespace {

// Averaging is one library call that reads and writes hundreds of megabytes; a signal ends it at once, with
// the output's temporary file removed and a line saying nothing was written.
extern "C" void end_on_signal(int signal) {
  nn::remove_live_temporaries();
  constexpr std::string_view words = "gradformer-average: interrupted; no output was written\n";
  if (::write(STDERR_FILENO, words.data(), words.size()) < 0) _exit(128 + signal);
  _exit(128 + signal);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Average the model weights of gradformer checkpoints (e.g. the last few of a run) for decoding"};
  std::string output;
  std::vector<std::string> inputs;
  bool overwrite = false;
  app.add_option("--output", output, "The averaged checkpoint to write (never one of the inputs)")->required();
  app.add_option("checkpoints", inputs, "Checkpoints of the same model, written by gradformer-train")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_flag("--overwrite", overwrite, "Replace --output if it exists");
  app.footer("Model tensors are averaged element-wise in f64; optimizer state is dropped. Translate with\n"
             "gradformer-translate --checkpoint OUTPUT.");
  if (const int code = cli::parse(app, "gradformer-average", argc, argv); code >= 0) return code;
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) std::signal(signal, end_on_signal);
  try {
    const nn::AverageReport report = nn::average_checkpoints(inputs, output, overwrite);
    for (const std::string& warning : report.warnings) cli::print_warning("gradformer-average", warning);
    fmt::print("averaged {} tensors over {} checkpoints into {}\n", report.tensors, inputs.size(), output);
    return 0;
  } catch (const std::exception& e) {
    cli::print_error("gradformer-average", cli::describe(e));
    return 1;
  }
}

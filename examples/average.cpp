// gradformer-average: averages the model weights of several checkpoints of one training run into one checkpoint
// for decoding, as fairseq's scripts/average_checkpoints.py does (nn::average_checkpoints). The output keeps the
// first input's configuration and vocabulary and holds no optimizer state. Exit 0 on success, 1 with a one-line
// reason on any error (checkpoints of different models, an output that exists or is an input), 2 on bad flags.
#include "examples/cli.h"
#include "nn/checkpoint.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <string>
#include <vector>

using namespace gradformer;

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
  try {
    const size_t tensors = nn::average_checkpoints(inputs, output, overwrite);
    fmt::print("averaged {} tensors over {} checkpoints into {}\n", tensors, inputs.size(), output);
    return 0;
  } catch (const std::exception& e) {
    cli::print_error("gradformer-average", e.what());
    return 1;
  }
}

// Pictures as standalone SVG files: a loss curve (training and validation loss over steps) and an attention
// heatmap (target tokens down, source tokens across, one panel per layer/head). Plain text, no dependency.
#pragma once

#include "models/seq2seq.h"
#include "nn/output_file.h"

#include <string>
#include <utility>
#include <vector>

namespace gradformer::models {

struct Curve {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (step, loss)
};

std::string loss_curve_svg(const std::vector<Curve>& curves, const std::string& title);
std::string attention_svg(const std::vector<AttentionMap>& maps, const std::vector<std::string>& source_tokens,
                          const std::vector<std::string>& target_tokens);
// The pictures are written as every program file is (nn/output_file.h); the trainer's loss.svg goes through here.
using nn::write_text_file;

}  // namespace gradformer::models

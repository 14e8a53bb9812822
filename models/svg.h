// Pictures as standalone SVG files: a loss curve (training and validation loss over steps) and an attention
// heatmap (target tokens down, source tokens across, one panel per layer/head). Plain text, no dependency.
#pragma once

#include "models/seq2seq.h"

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
// Writes text to path atomically (temporary file, then rename); IOError on failure.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace gradformer::models

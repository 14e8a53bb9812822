// Pictures as standalone SVG files: the training curves (losses per target token on a log axis above, validation
// BLEU below, over steps) and an attention heatmap (target tokens down, source tokens across, one panel per layer
// and head, with a colour scale). Plain text, no dependency.
#pragma once

#include "models/seq2seq.h"
#include "nn/output_file.h"

#include <string>
#include <utility>
#include <vector>

namespace gradformer::models {

struct Curve {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (step, value)
};

// Loss curves on a log axis (values that are not positive and finite are left out), and below them a panel for
// `bleu` unless it has no points. Curves are told apart by colour, with their labels as the legend.
std::string training_svg(const std::vector<Curve>& losses, const Curve& bleu);
// The cross-attention maps of `maps` (the others belong to the HTML explorer, models/html_report.h), one panel per
// layer and head, and a colour scale with its values under them.
std::string attention_svg(const std::vector<AttentionMap>& maps, const std::vector<std::string>& source_tokens,
                          const std::vector<std::string>& target_tokens);
// text with & < > " as entities, for SVG and HTML.
std::string escape_markup(const std::string& text);
// The pictures are written as every program file is (nn/output_file.h); the trainer's loss.svg goes through here.
using nn::write_text_file;

}  // namespace gradformer::models

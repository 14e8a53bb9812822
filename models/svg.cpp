#include "models/svg.h"

#include <algorithm>
#include <cmath>

namespace gradformer::models {
std::string escape_markup(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// Ticks of a log axis from the largest tick at or below `low` to the smallest at or above `high` (low > 0), so
// that the axis ends on a tick at both ends: the densest of 1-2-...-9, 1-2-5 and powers of ten per decade that
// needs at most ten.
std::vector<double> log_ticks(double low, double high) {
  const std::vector<std::vector<double>> densities{{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 5}, {1}};
  std::vector<double> ticks;
  for (const std::vector<double>& mantissas : densities) {
    std::vector<double> all;
    for (int decade = static_cast<int>(std::floor(std::log10(low))) - 1;
         decade <= static_cast<int>(std::ceil(std::log10(high))) + 1; ++decade)
      for (double m : mantissas) all.push_back(m * std::pow(10.0, decade));
    const double first = *(std::upper_bound(all.begin(), all.end(), low * (1 + 1e-12)) - 1);
    double last = *std::lower_bound(all.begin(), all.end(), high * (1 - 1e-12));
    if (last <= first) last = *std::upper_bound(all.begin(), all.end(), first * (1 + 1e-12));
    ticks.clear();
    for (double v : all)
      if (v >= first * (1 - 1e-12) && v <= last * (1 + 1e-12)) ticks.push_back(v);
    if (ticks.size() <= 10) break;
  }
  return ticks;
}

}  // namespace

std::string training_svg(const std::vector<Curve>& losses, const Curve& bleu) {
  const double width = 640, left = 60, right = 20, loss_top = 40, loss_bottom = 330, bleu_top = 380, bleu_bottom = 520;
  const bool with_bleu = !bleu.points.empty();
  const double height = (with_bleu ? bleu_bottom : loss_bottom) + 40;
  const auto usable = [](double y) { return std::isfinite(y) && y > 0; };
  double x_max = 1, y_min = INFINITY, y_max = -INFINITY, bleu_max = 1;
  for (const Curve& c : losses)
    for (auto [x, y] : c.points) {
      x_max = std::max(x_max, x);
      if (!usable(y)) continue;
      y_min = std::min(y_min, y);
      y_max = std::max(y_max, y);
    }
  for (auto [x, y] : bleu.points) {
    x_max = std::max(x_max, x);
    if (std::isfinite(y)) bleu_max = std::max(bleu_max, y);
  }
  if (!std::isfinite(y_min)) y_min = 1, y_max = 10;
  const std::vector<double> ticks = log_ticks(y_min, y_max);
  const double log_low = std::log10(ticks.front()), log_high = std::log10(ticks.back());
  bleu_max = std::ceil(bleu_max / 10) * 10;
  auto px = [&](double x) { return left + (width - left - right) * x / x_max; };
  auto py_loss = [&](double y) {
    return loss_top + (loss_bottom - loss_top) * (1 - (std::log10(y) - log_low) / (log_high - log_low));
  };
  auto py_bleu = [&](double y) { return bleu_top + (bleu_bottom - bleu_top) * (1 - y / bleu_max); };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"24\" font-size=\"16\">loss per target token (log scale)</text>\n",
      width, height, left);
  const auto axes = [&](double top, double bottom) {
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", left, bottom,
                       width - right);
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", left, top, bottom);
    for (int i = 0; i <= 4; ++i)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\">{:.0f}</text>\n", px(x_max * i / 4.0) - 10, bottom + 16,
                         x_max * i / 4.0);
    svg += fmt::format("<text x=\"{}\" y=\"{}\">step</text>\n", width / 2, bottom + 32);
  };
  const auto tick = [&](double y, double value) {
    svg += fmt::format("<line class=\"tick\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>\n"
                       "<text x=\"4\" y=\"{3:.1f}\">{4:g}</text>\n", left, y, width - right, y + 4, value);
  };
  const auto curve = [&](const Curve& c, const auto& py, const auto& keep, const char* colour, double legend_y) {
    std::string path;
    for (auto [x, y] : c.points)
      if (keep(y)) path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", px(x), py(y));
    svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", path, colour);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>\n", width - right - 240, legend_y, colour,
                       escape_markup(c.label));
  };

  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
  for (double value : ticks) tick(py_loss(value), value);
  axes(loss_top, loss_bottom);
  for (size_t i = 0; i < losses.size(); ++i)
    curve(losses[i], py_loss, usable, colours[i % 4], loss_top + 16 * static_cast<double>(i + 1));
  if (with_bleu) {
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"16\">validation BLEU</text>\n", left, bleu_top - 16);
    for (int i = 0; i <= 2; ++i) tick(py_bleu(bleu_max * i / 2.0), bleu_max * i / 2.0);
    axes(bleu_top, bleu_bottom);
    curve(bleu, py_bleu, [](double y) { return std::isfinite(y); }, "#ff7f0e", bleu_top + 16);
  }
  return svg + "</svg>\n";
}

std::string attention_svg(const std::vector<AttentionMap>& all_maps, const std::vector<std::string>& source_tokens,
                          const std::vector<std::string>& target_tokens) {
  std::vector<const AttentionMap*> maps;
  for (const AttentionMap& map : all_maps)
    if (map.kind == AttentionKind::cross) maps.push_back(&map);
  const double cell = 22, label = 110, gap = 40, legend_h = 56, legend_w = 220;
  const double panel_w = label + cell * static_cast<double>(source_tokens.size()) + gap;
  const double panel_h = label + cell * static_cast<double>(target_tokens.size()) + 30;
  const size_t columns = std::min<size_t>(maps.size(), 3);
  const size_t rows = (maps.size() + columns - 1) / std::max<size_t>(columns, 1);
  const double width = std::max(panel_w * static_cast<double>(std::max<size_t>(columns, 1)), legend_w + 40);
  const double legend_y = panel_h * static_cast<double>(rows);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, legend_y + legend_h);
  const auto shade_of = [](double v) { return static_cast<int>(std::lround(255 * (1 - std::clamp(v, 0.0, 1.0)))); };
  for (size_t m = 0; m < maps.size(); ++m) {
    const double ox = panel_w * static_cast<double>(m % columns), oy = panel_h * static_cast<double>(m / columns);
    svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" font-size=\"13\">{}</text>\n", ox + 4, oy + 16,
                       escape_markup(maps[m]->label));
    const Tensor w = maps[m]->weights.to(DType::f64).contiguous();
    const int64_t t_len = std::min<int64_t>(w.size(0), static_cast<int64_t>(target_tokens.size()));
    const int64_t s_len = std::min<int64_t>(w.size(1), static_cast<int64_t>(source_tokens.size()));
    for (int64_t s = 0; s < s_len; ++s)
      svg += fmt::format(
          "<text transform=\"translate({:.1f},{:.1f}) rotate(-60)\">{}</text>\n", ox + label + cell * s + cell / 2,
          oy + label - 4, escape_markup(source_tokens[static_cast<size_t>(s)]));
    for (int64_t t = 0; t < t_len; ++t) {
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ox + label - 4,
                         oy + label + cell * t + cell * 0.7, escape_markup(target_tokens[static_cast<size_t>(t)]));
      for (int64_t s = 0; s < s_len; ++s) {
        const int shade = shade_of(w.at({t, s}));
        svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"rgb({},{},255)\"/>\n",
                           ox + label + cell * s, oy + label + cell * t, cell, cell, shade, shade);
      }
    }
  }
  // The colour scale: the cells' colour ramp from weight 0 to 1, with its values.
  const double lx = 20, ly = legend_y + 14;
  svg += fmt::format("<g class=\"legend\"><text x=\"{}\" y=\"{:.0f}\">attention weight</text>\n", lx, ly - 3);
  const int steps = 20;
  for (int i = 0; i < steps; ++i) {
    const int shade = shade_of((i + 0.5) / steps);
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.0f}\" width=\"{:.1f}\" height=\"12\" fill=\"rgb({},{},255)\"/>\n",
                       lx + legend_w * i / steps, ly, legend_w / steps + 0.2, shade, shade);
  }
  svg += fmt::format("<rect x=\"{}\" y=\"{:.0f}\" width=\"{}\" height=\"12\" fill=\"none\" stroke=\"#888\"/>\n", lx, ly,
                     legend_w);
  for (const double v : {0.0, 0.25, 0.5, 0.75, 1.0})
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.0f}\" text-anchor=\"middle\">{:g}</text>\n", lx + legend_w * v,
                       ly + 26, v);
  return svg + "</g>\n</svg>\n";
}

}  // namespace gradformer::models

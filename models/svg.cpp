#include "models/svg.h"

#include <algorithm>
#include <cmath>

namespace gradformer::models {
namespace {

std::string escape(const std::string& text) {
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

}  // namespace

std::string loss_curve_svg(const std::vector<Curve>& curves, const std::string& title) {
  const double width = 640, height = 400, left = 60, right = 20, top = 40, bottom = 40;
  double x_max = 1, y_min = INFINITY, y_max = -INFINITY;
  for (const Curve& c : curves)
    for (auto [x, y] : c.points) {
      if (!std::isfinite(y)) continue;
      x_max = std::max(x_max, x);
      y_min = std::min(y_min, y);
      y_max = std::max(y_max, y);
    }
  if (!std::isfinite(y_min)) y_min = 0, y_max = 1;
  if (y_max - y_min < 1e-9) y_max = y_min + 1;
  auto px = [&](double x) { return left + (width - left - right) * x / x_max; };
  auto py = [&](double y) { return top + (height - top - bottom) * (1 - (y - y_min) / (y_max - y_min)); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" font-size=\"16\">{}</text>\n",
      width, height, left, escape(title));
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", left, height - bottom,
                     width - right);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", left, top, height - bottom);
  for (int i = 0; i <= 4; ++i) {
    const double y = y_min + (y_max - y_min) * i / 4.0;
    svg += fmt::format("<text x=\"4\" y=\"{:.1f}\">{:.3g}</text>\n", py(y) + 4, y);
    const double x = x_max * i / 4.0;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\">{:.0f}</text>\n", px(x) - 10, height - bottom + 16, x);
  }
  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
  for (size_t i = 0; i < curves.size(); ++i) {
    std::string path;
    for (auto [x, y] : curves[i].points)
      if (std::isfinite(y)) path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", px(x), py(y));
    const char* colour = colours[i % 4];
    svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", path, colour);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>\n", width - right - 150, top + 16 * (i + 1),
                       colour, escape(curves[i].label));
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\">step</text>\n</svg>\n", width / 2, height - 6);
  return svg;
}

std::string attention_svg(const std::vector<AttentionMap>& maps, const std::vector<std::string>& source_tokens,
                          const std::vector<std::string>& target_tokens) {
  const double cell = 22, label = 110, gap = 40;
  const double panel_w = label + cell * static_cast<double>(source_tokens.size()) + gap;
  const double panel_h = label + cell * static_cast<double>(target_tokens.size()) + 30;
  const size_t columns = std::min<size_t>(maps.size(), 3);
  const size_t rows = (maps.size() + columns - 1) / std::max<size_t>(columns, 1);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      panel_w * static_cast<double>(std::max<size_t>(columns, 1)), panel_h * static_cast<double>(rows));
  for (size_t m = 0; m < maps.size(); ++m) {
    const double ox = panel_w * static_cast<double>(m % columns), oy = panel_h * static_cast<double>(m / columns);
    svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" font-size=\"13\">{}</text>\n", ox + 4, oy + 16,
                       escape(maps[m].label));
    const Tensor w = maps[m].weights.to(DType::f64).contiguous();
    const int64_t t_len = std::min<int64_t>(w.size(0), static_cast<int64_t>(target_tokens.size()));
    const int64_t s_len = std::min<int64_t>(w.size(1), static_cast<int64_t>(source_tokens.size()));
    for (int64_t s = 0; s < s_len; ++s)
      svg += fmt::format(
          "<text transform=\"translate({:.1f},{:.1f}) rotate(-60)\">{}</text>\n", ox + label + cell * s + cell / 2,
          oy + label - 4, escape(source_tokens[static_cast<size_t>(s)]));
    for (int64_t t = 0; t < t_len; ++t) {
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ox + label - 4,
                         oy + label + cell * t + cell * 0.7, escape(target_tokens[static_cast<size_t>(t)]));
      for (int64_t s = 0; s < s_len; ++s) {
        const double v = std::clamp(w.at({t, s}), 0.0, 1.0);
        const int shade = static_cast<int>(std::lround(255 * (1 - v)));
        svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"rgb({},{},255)\"/>\n",
                           ox + label + cell * s, oy + label + cell * t, cell, cell, shade, shade);
      }
    }
  }
  return svg + "</svg>\n";
}

}  // namespace gradformer::models

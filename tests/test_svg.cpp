// The training picture of models/svg.h: the loss curves it is given with their labels, a log axis whose ticks
// (1-2-5 values, or denser or sparser as the range asks) are spaced by their logarithm, the validation BLEU panel, and tags that balance.
#include "models/svg.h"

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <regex>
#include <string>
#include <vector>

using namespace gradformer::models;

namespace {

// Whether every opened tag is closed in order (self-closing tags count as both).
bool tags_balance(const std::string& svg) {
  std::vector<std::string> open;
  const std::regex tag(R"(<(/?)([a-zA-Z]+)[^>]*?(/?)>)");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    if (m[3].length() > 0) continue;
    if (m[1].length() == 0) {
      open.push_back(m[2]);
    } else {
      if (open.empty() || open.back() != m[2]) return false;
      open.pop_back();
    }
  }
  return open.empty();
}

// The value axes' tick labels and their heights, in drawing order.
std::vector<std::pair<std::string, double>> ticks_of(const std::string& svg) {
  std::vector<std::pair<std::string, double>> ticks;
  const std::regex label(R"re(<text x="4" y="([0-9.]+)">([^<]*)</text>)re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), label); it != std::sregex_iterator(); ++it)
    ticks.emplace_back((*it)[2], std::stod((*it)[1]));
  return ticks;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("training_svg: both NLL series, the labelled smoothed loss, log ticks and the BLEU panel") {
  const Curve train{"train NLL", {{1, 1.0}, {50, 0.4}, {100, 0.14}}};
  const Curve valid{"valid NLL", {{50, 0.5}, {100, 0.2}}};
  const Curve smoothed{"train, label-smoothed 0.1 (optimised)", {{1, 1.06}, {50, 0.9}, {100, 0.8}}};
  const std::string svg = training_svg({train, valid, smoothed}, {"valid BLEU", {{50, 12.5}, {100, 31.0}}});
  CHECK(tags_balance(svg));
  CHECK(svg.rfind("<svg ", 0) == 0);
  for (const char* label : {"train NLL", "valid NLL", "train, label-smoothed 0.1 (optimised)", "validation BLEU",
                            "valid BLEU", "log scale"}) {
    CAPTURE(label);
    CHECK(svg.find(label) != std::string::npos);
  }
  CHECK(count(svg, "<path ") == 4);  // three losses and BLEU

  std::map<std::string, double> height;
  for (const auto& [text, y] : ticks_of(svg)) height[text] = y;
  // Loss values 0.14 to 1.06 lie between the 1-2-5 ticks 0.1 and 2; BLEU 31 under the axis top of 40.
  for (const char* value : {"0.1", "0.2", "0.5", "1", "2", "0", "20", "40"}) {
    CAPTURE(value);
    CHECK(height.count(value) == 1);
  }
  CHECK(height.count("5") == 0);
  // A log axis: equal ratios are equal distances, and larger values are higher up.
  CHECK(height["0.2"] - height["1"] > 0);
  CHECK(height["0.1"] - height["0.2"] == doctest::Approx(height["1"] - height["2"]).epsilon(0.01));
  CHECK(height["0.1"] - height["1"] ==
        doctest::Approx((height["0.1"] - height["0.2"]) / std::log10(2.0)).epsilon(0.01));
}

TEST_CASE("training_svg: a narrow range gets a tick per unit of its decade") {
  std::vector<std::string> labels;
  for (const auto& [text, y] : ticks_of(training_svg({{"train NLL", {{1, 2.2}, {2, 3.3}}}}, {"valid BLEU", {}})))
    labels.push_back(text);
  CHECK(labels == std::vector<std::string>{"2", "3", "4"});
}

TEST_CASE("training_svg: a wide range gets powers of ten; no BLEU, no panel; non-positive losses are left out") {
  const std::string svg = training_svg({{"train NLL", {{1, 0.001}, {2, 0.0}, {3, 1000}}}}, {"valid BLEU", {}});
  CHECK(tags_balance(svg));
  std::vector<std::string> labels;
  for (const auto& [text, y] : ticks_of(svg)) labels.push_back(text);
  CHECK(labels == std::vector<std::string>{"0.001", "0.01", "0.1", "1", "10", "100", "1000"});
  CHECK(svg.find("BLEU") == std::string::npos);
  CHECK(count(svg, " L") == 1);  // two points drawn, the zero left out
}

TEST_CASE("attention_svg: one panel per cross-attention map, cells shaded by weight, a colour scale with its values") {
  using gradformer::DType;
  const gradformer::Tensor cross = gradformer::from_vector(std::vector<double>{1.0, 0.0, 0.25, 0.75}, {2, 2});
  const gradformer::Tensor self = gradformer::from_vector(std::vector<double>{0.5, 0.5, 0.5, 0.5}, {2, 2});
  const std::vector<AttentionMap> maps{{"layer 0 head 0", cross, AttentionKind::cross, 0, 0},
                                       {"encoder self layer 0 head 0", self, AttentionKind::encoder_self, 0, 0},
                                       {"layer 0 head 1", cross, AttentionKind::cross, 0, 1}};
  const std::string svg = attention_svg(maps, {"a", "<eos>"}, {"x", "<eos>"});
  CHECK(tags_balance(svg));
  CHECK(svg.find("layer 0 head 1") != std::string::npos);
  CHECK(svg.find("encoder self") == std::string::npos);  // the explorer's, not the static picture's
  CHECK(svg.find("&lt;eos&gt;") != std::string::npos);
  // Weight 1 is the darkest blue, 0 white, 0.25 between.
  CHECK(count(svg, "fill=\"rgb(0,0,255)\"/>") == 2);
  CHECK(count(svg, "width=\"22\" height=\"22\" fill=\"rgb(255,255,255)\"") == 2);
  CHECK(count(svg, "fill=\"rgb(191,191,255)\"") == 2);
  // The legend: its label, a ramp from light to dark, and the values 0 to 1 under it.
  CHECK(svg.find("attention weight") != std::string::npos);
  for (const char* value : {">0<", ">0.25<", ">0.5<", ">0.75<", ">1<"}) {
    CAPTURE(value);
    CHECK(count(svg.substr(svg.find("class=\"legend\"")), value) == 1);
  }
  CHECK(count(svg, "height=\"12\" fill=\"rgb(") == 20);
}

#include "models/html_report.h"

#include "autograd/error.h"
#include "models/data/tokenizer.h"
#include "models/html_pages.h"
#include "ops/threads.h"

#include <cmath>
#include <fstream>
#include <thread>

namespace gradformer::models {
namespace {

// JSON inside <script type="application/json">: only "</script" could end the element early, and '<' occurs only
// inside JSON strings, where \u003c means the same character. Invalid UTF-8 (a corpus can hold it) is replaced.
std::string embeddable_json(const nlohmann::json& data) {
  const std::string text = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') out += "\\u003c";
    else out += c;
  }
  return out;
}

// One page: no request may leave it (default-src 'none'), its own inline script and style excepted.
std::string page(const std::string& title, const std::string& style, const std::string& body,
                 const nlohmann::json& data, const std::string& script) {
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; "
      "style-src 'unsafe-inline'; img-src data:\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n"
      "<style>\n{}{}</style>\n</head>\n<body>\n{}\n"
      "<script type=\"application/json\" id=\"gradformer-data\">{}</script>\n<script>\n{}</script>\n</body>\n</html>\n",
      escape_markup(title), html_pages::common_style, style, body, embeddable_json(data), script);
}

double rounded(double value) { return std::round(value * 1e5) / 1e5; }

// weights [queries, keys] as rows of rounded numbers.
nlohmann::json matrix_json(const Tensor& weights) {
  const Tensor w = weights.to(DType::f64).contiguous();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t q = 0; q < w.size(0); ++q) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t k = 0; k < w.size(1); ++k) row.push_back(rounded(w.at({q, k})));
    rows.push_back(std::move(row));
  }
  return rows;
}

nlohmann::json curve_json(const Curve& curve, size_t max_points) {
  const size_t n = curve.points.size();
  const size_t stride = n > max_points ? (n + max_points - 1) / max_points : 1;
  nlohmann::json points = nlohmann::json::array();
  for (size_t i = 0; i < n; ++i) {
    if (i % stride != 0 && i + 1 != n) continue;
    const auto [step, value] = curve.points[i];
    points.push_back({step, std::isfinite(value) ? nlohmann::json(value) : nlohmann::json()});
  }
  return {{"label", curve.label}, {"points", points}};
}

}  // namespace

SentenceAttention attend_sentence(const Seq2SeqModel& model, const TextCodec& codec, size_t line,
                                  const std::string& source, std::vector<ScoredTranslation> n_best,
                                  size_t max_source_tokens) {
  if (n_best.empty()) fail<ValueError>("attend_sentence", "sentence {} has no hypothesis to attend over", line + 1);
  SentenceAttention sentence;
  sentence.line = line;
  sentence.source = source;
  const std::vector<int64_t> source_ids = codec.encode_source(source, max_source_tokens);
  std::vector<int64_t> target_in{data::bos_id};
  target_in.insert(target_in.end(), n_best.front().tokens.begin(), n_best.front().tokens.end());
  std::vector<int64_t> target_out(target_in.begin() + 1, target_in.end());
  target_out.push_back(data::eos_id);
  sentence.source_tokens = codec.tokens(source_ids);
  sentence.target_inputs = codec.tokens(target_in);
  sentence.target_outputs = codec.tokens(target_out);
  sentence.maps = model.attention_maps(make_source_batch({source_ids}), make_source_batch({target_in}));
  sentence.n_best = std::move(n_best);
  return sentence;
}

std::string attention_html(const std::vector<SentenceAttention>& sentences, const AttentionPageInfo& info) {
  if (sentences.empty()) fail<ValueError>("attention_html", "no sentence to show");
  nlohmann::json data{{"title", info.title}, {"model", info.model}, {"show_n_best", info.show_n_best}};
  nlohmann::json& list = data["sentences"] = nlohmann::json::array();
  for (const SentenceAttention& s : sentences) {
    nlohmann::json n_best = nlohmann::json::array();
    for (const ScoredTranslation& h : s.n_best)
      n_best.push_back({{"text", h.text}, {"log_prob", h.log_prob}, {"score", h.score}});
    // attention[kind][layer][head] = [queries][keys]
    nlohmann::json attention = nlohmann::json::object();
    for (const AttentionMap& map : s.maps) {
      nlohmann::json& layers = attention[attention_kind_name(map.kind)];
      if (layers.is_null()) layers = nlohmann::json::array();
      while (static_cast<int64_t>(layers.size()) <= map.layer) layers.push_back(nlohmann::json::array());
      nlohmann::json& heads = layers[static_cast<size_t>(map.layer)];
      while (static_cast<int64_t>(heads.size()) <= map.head) heads.push_back(nullptr);
      heads[static_cast<size_t>(map.head)] = matrix_json(map.weights);
    }
    list.push_back({{"line", s.line + 1},
                    {"source", s.source},
                    {"source_tokens", s.source_tokens},
                    {"target_inputs", s.target_inputs},
                    {"target_outputs", s.target_outputs},
                    {"n_best", n_best},
                    {"attention", attention}});
  }
  return page("attention: " + info.title, html_pages::attention_style, html_pages::attention_body, data,
              html_pages::attention_script);
}

nlohmann::json machine_description(DType precision, int64_t processes) {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) cpu = line.substr(line.find_first_not_of(' ', colon + 1));
    break;
  }
  return {{"cpu", cpu},
          {"cores", std::thread::hardware_concurrency()},
          {"threads", num_threads()},
          {"precision", precision == DType::bf16 ? "bf16 (mixed)" : "f32"},
          {"processes", processes}};
}

std::string training_html(const TrainingReport& report, size_t max_points) {
  nlohmann::json data{{"title", report.title},
                      {"step", report.step},
                      {"train_nll", curve_json(report.train_nll, max_points)},
                      {"valid_nll", curve_json(report.valid_nll, max_points)},
                      {"smoothed_loss", curve_json(report.smoothed_loss, max_points)},
                      {"bleu", curve_json(report.bleu, max_points)},
                      {"chrf", curve_json(report.chrf, max_points)},
                      {"learning_rate", curve_json(report.learning_rate, max_points)},
                      {"tokens_per_second", curve_json(report.tokens_per_second, max_points)},
                      {"config", report.config},
                      {"machine", report.machine}};
  if (report.best)
    data["best"] = {{"path", report.best->path}, {"step", report.best->step}, {"valid_loss", report.best->valid_loss}};
  return page("training: " + report.title, html_pages::training_style, html_pages::training_body, data,
              html_pages::training_script);
}

}  // namespace gradformer::models

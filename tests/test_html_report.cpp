// The HTML pages of models/html_report.h, first as text (the embedded data is the models' attention, the page
// fetches nothing), then in a real browser (tests/browser.h): nothing fails or throws, the selectors hold one entry
// per sentence, layer and head, choosing a head draws that head's weights (read back from the page's cells and
// compared with the model's own numbers), hovering and clicking tokens shows their weights, the training report's
// charts give the values under the pointer and switch to a log axis, and screenshots are not blank.
#include "models/html_report.h"

#include "models/zoo.h"
#include "nn/output_file.h"
#include "tests/browser.h"
#include "tests/helpers.h"
#include "tests/model_helpers.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace gradformer;
using namespace gradformer::testing;

namespace {

const std::vector<data::SentencePair> kPairs{
    {"the cat sees the dog", "die Katze sieht den Hund"},
    {"a dog sleeps", "ein Hund schläft"},
    {"the dog sees a cat <b>", "der Hund sieht eine Katze"},
};

models::TextCodec word_codec() {
  models::TaskOptions options;
  options.tokenizer = "word";
  return models::TextCodec::learn(kPairs, options);
}

nlohmann::json zoo_config(const std::string& name, int64_t vocab_size) {
  if (name == "transformer-tiny") {
    nlohmann::json config = tiny_transformer_config(vocab_size, 0.0, 64, 16);
    config["layers"] = 2;
    return config;  // 2 layers of 2 heads
  }
  models::ModelOptions options;
  options.vocab_size = vocab_size;
  options.dropout = 0.0;
  options.max_length = 64;
  nlohmann::json config = models::model_config(name, options);
  if (name == "attention-seq2seq") config["blocks"] = 2;
  return config;
}

// Each pair's target as the hypothesis attended over, and a second, shorter one for the n-best list.
std::vector<models::SentenceAttention> attend_all(const models::Seq2SeqModel& model, const models::TextCodec& codec) {
  std::vector<models::SentenceAttention> sentences;
  for (size_t i = 0; i < kPairs.size(); ++i) {
    std::vector<int64_t> ids = codec.encode_source(kPairs[i].target, 64);
    ids.pop_back();  // <eos>
    const std::vector<int64_t> shorter(ids.begin(), ids.end() - 1);
    sentences.push_back(models::attend_sentence(
        model, codec, 2 * i, kPairs[i].source,
        {{codec.decode(ids), ids, -1.5 - static_cast<double>(i), -0.25}, {codec.decode(shorter), shorter, -4.0, -0.8}},
        64));
  }
  return sentences;
}

std::string embedded_json_text(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"gradformer-data\">";
  const size_t start = html.find(open);
  REQUIRE(start != std::string::npos);
  const size_t end = html.find("</script>", start);
  REQUIRE(end != std::string::npos);
  return html.substr(start + open.size(), end - start - open.size());
}

// The map of one kind, layer and head.
Tensor map_of(const models::SentenceAttention& s, const std::string& kind, int64_t layer, int64_t head) {
  for (const models::AttentionMap& map : s.maps)
    if (models::attention_kind_name(map.kind) == kind && map.layer == layer && map.head == head)
      return map.weights.to(DType::f64).contiguous();
  FAIL("no map " << kind << " " << layer << " " << head);
  return {};
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Chooses a sentence, kind, layer and head through the page's selectors, as a user's choice fires them, and reads
// back what is drawn.
nlohmann::json choose(Browser& browser, size_t sentence, const std::string& kind, int64_t layer, int64_t head) {
  return browser.evaluate(fmt::format(R"js((() => {{
  const choose = (id, value) => {{
    const select = document.getElementById(id);
    if (![...select.options].some((o) => o.value === value)) throw new Error(`${{id}} has no option ${{value}}`);
    select.value = value;
    select.dispatchEvent(new Event("change", {{bubbles: true}}));
  }};
  choose("sentence", "{}");
  choose("kind", {});
  choose("layer", "{}");
  choose("head", "{}");
  const rows = [...document.querySelectorAll("#matrix tr")].slice(1);
  const rgb = (td) => getComputedStyle(td).backgroundColor.match(/\d+/g).slice(0, 3).map(Number);
  return {{
    layers: document.getElementById("layer").options.length,
    heads: document.getElementById("head").options.length,
    weights: rows.map((tr) => [...tr.querySelectorAll("td")].map((td) => Number(td.dataset.weight))),
    darkness: rows.map((tr) => [...tr.querySelectorAll("td")].map((td) => 765 - rgb(td).reduce((a, b) => a + b))),
    row_tokens: rows.map((tr) => tr.querySelector("th").textContent),
    column_tokens: [...document.querySelectorAll("#matrix th.col")].map((th) => th.textContent),
  }};
}})())js",
                                  sentence, nlohmann::json(kind).dump(), layer, head));
}

// The centre of the first element matching `selector`, scrolled into view, in page coordinates.
std::pair<double, double> centre_of(Browser& browser, const std::string& selector) {
  const nlohmann::json box = browser.evaluate(fmt::format(R"js((() => {{
  const e = document.querySelector({});
  e.scrollIntoView({{block: "center", inline: "center"}});
  const r = e.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2];
}})())js",
                                                          nlohmann::json(selector).dump()));
  return {box[0].get<double>(), box[1].get<double>()};
}

void check_not_blank(Browser& browser, int width, int height) {
  const std::string png = browser.screenshot_png();
  REQUIRE(png.size() > 8);
  CHECK(png.substr(1, 3) == "PNG");
  const nlohmann::json stats = browser.png_statistics(png);
  INFO(stats.dump());
  CHECK(stats["width"] == width);
  CHECK(stats["height"] == height);
  CHECK(stats["non_white"].get<int64_t>() > 2000);  // text, cells, lines
  CHECK(stats["colours"].get<int64_t>() > 20);      // more than text on white: the colour ramp or the curves
  // The measure itself: a blank tab's screenshot has no pixel that is not white.
  CHECK(browser.png_statistics(browser.screenshot_png())["non_white"] == 0);
}

models::Curve curve(const std::string& label, int64_t first, int64_t last, int64_t every, double (*f)(double)) {
  models::Curve c{label, {}};
  for (int64_t step = first; step <= last; step += every) c.points.emplace_back(step, f(static_cast<double>(step)));
  return c;
}

models::TrainingReport sample_report() {
  models::TrainingReport report{
      .title = "runs/sample",
      .train_nll = curve("train NLL", 1, 200, 1, [](double s) { return 4.0 * std::exp(-s / 60) + 0.5; }),
      .valid_nll = curve("valid NLL", 50, 200, 50, [](double s) { return s == 100 ? 2.5 : 3.0 - s / 200; }),
      .smoothed_loss = curve("train, label-smoothed 0.1 (optimised)", 1, 200, 1,
                             [](double s) { return 4.0 * std::exp(-s / 60) + 0.9; }),
      .bleu = curve("valid BLEU", 50, 200, 50, [](double s) { return s / 10; }),
      .chrf = curve("valid chrF", 50, 200, 50, [](double s) { return s / 5; }),
      .learning_rate = curve("learning rate", 1, 200, 1, [](double s) { return 1e-3 * std::min(s / 40, std::sqrt(40 / s)); }),
      .tokens_per_second = curve("tokens/s", 1, 200, 1, [](double s) { return 12000 + 10 * s; }),
      .config = {{"model", {{"name", "transformer-tiny"}, {"d_model", 64}}}, {"training", {{"max_tokens", 2048}}}},
      .machine = models::machine_description(DType::f32, 1),
      .best = models::BestCheckpoint{"runs/sample/best.safetensors", 100, 2.5},
      .step = 200};
  return report;
}

}  // namespace

TEST_CASE("attention_html: the models' maps as JSON in a page that fetches nothing, '<' escaped") {
  const models::TextCodec codec = word_codec();
  const auto model = models::make_model(zoo_config("transformer-tiny", codec.vocabulary().size()));
  model->eval();
  const std::vector<models::SentenceAttention> sentences = attend_all(*model, codec);
  // Cross, encoder self and decoder self; 2 layers of 2 heads each.
  REQUIRE(sentences[0].maps.size() == 12);
  const std::string html = models::attention_html(sentences, {.title = "model <1>", .model = model->config(),
                                                              .show_n_best = true});
  CHECK(html.starts_with("<!DOCTYPE html>"));
  CHECK(html.find("default-src 'none'") != std::string::npos);
  for (const char* external : {"src=\"http", "href=\"http", "@import", "url("}) CHECK(html.find(external) == std::string::npos);
  const std::string json_text = embedded_json_text(html);
  CHECK(json_text.find('<') == std::string::npos);  // "<b>" and "<eos>" come as \u003c
  const nlohmann::json data = nlohmann::json::parse(json_text);
  REQUIRE(data["sentences"].size() == 3);
  const nlohmann::json& first = data["sentences"][0];
  CHECK(first["line"] == 1);
  CHECK(first["source_tokens"].back() == "<eos>");
  CHECK(first["target_inputs"].front() == "<bos>");
  CHECK(first["n_best"].size() == 2);
  const Tensor map = map_of(sentences[0], "decoder self", 1, 1);
  const nlohmann::json& drawn = first["attention"]["decoder self"][1][1];
  REQUIRE(static_cast<int64_t>(drawn.size()) == map.size(0));
  CHECK(std::abs(drawn[2][1].get<double>() - map.at({2, 1})) <= 5e-6);
  CHECK(map.at({1, 2}) == 0.0);  // causal: position 1 does not see input 2
  CHECK(data["title"] == "model <1>");
  CHECK(message_of<ValueError>([] { models::attention_html({}, {}); }) == "attention_html: no sentence to show");
}

TEST_CASE("attention explorer in chromium: selectors, each head's weights drawn, hover and click, n-best, screenshot") {
  REQUIRE_MESSAGE(!chromium_path().empty(), "the browser tests need chromium (apt-get install chromium)");
  const models::TextCodec codec = word_codec();
  const TempDir dir;
  Browser browser;
  for (const std::string name : {"transformer-tiny", "attention-seq2seq", "rnn-attention"}) {
    CAPTURE(name);
    const auto model = models::make_model(zoo_config(name, codec.vocabulary().size()));
    model->eval();
    const std::vector<models::SentenceAttention> sentences = attend_all(*model, codec);
    const std::string path = dir.str(name + ".html");
    nn::write_text_file(path, models::attention_html(sentences, {.title = name, .model = model->config(),
                                                                 .show_n_best = name != "rnn-attention"}));
    browser.open(path);
    CHECK(browser.evaluate("document.getElementById('sentence').options.length") == sentences.size());
    const bool transformer = name == "transformer-tiny";
    const std::vector<std::string> kinds = name == "rnn-attention"
                                               ? std::vector<std::string>{"cross"}
                                               : std::vector<std::string>{"encoder self", "decoder self", "cross"};
    CHECK(browser.evaluate("[...document.getElementById('kind').options].map((o) => o.value)") == nlohmann::json(kinds));
    const int64_t layers = name == "rnn-attention" ? 1 : 2, heads = transformer ? 2 : 1;
    for (size_t s = 0; s < sentences.size(); ++s)
      for (const std::string& kind : kinds)
        for (int64_t layer = 0; layer < layers; ++layer) {
          std::vector<std::vector<double>> previous_head;
          for (int64_t head = 0; head < heads; ++head) {
            CAPTURE(s);
            CAPTURE(kind);
            CAPTURE(layer);
            CAPTURE(head);
            const nlohmann::json drawn = choose(browser, s, kind, layer, head);
            CHECK(drawn["layers"] == layers);
            CHECK(drawn["heads"] == heads);
            const Tensor expected = map_of(sentences[s], kind, layer, head);
            const auto weights = drawn["weights"].get<std::vector<std::vector<double>>>();
            REQUIRE(static_cast<int64_t>(weights.size()) == expected.size(0));
            double largest = -1, worst = 0;
            std::pair<size_t, size_t> darkest{0, 0};
            const auto darkness = drawn["darkness"].get<std::vector<std::vector<double>>>();
            for (size_t q = 0; q < weights.size(); ++q) {
              REQUIRE(static_cast<int64_t>(weights[q].size()) == expected.size(1));
              for (size_t k = 0; k < weights[q].size(); ++k) {
                worst = std::max(worst, std::abs(weights[q][k] - expected.at({static_cast<int64_t>(q), static_cast<int64_t>(k)})));
                if (weights[q][k] > largest) largest = weights[q][k], darkest = {q, k};
              }
            }
            CHECK(worst <= 5.1e-6);  // rounded to 5 decimals
            // The colour says the weight: no cell is darker than the largest weight's.
            double most_dark = 0;
            for (const auto& row : darkness)
              for (double d : row) most_dark = std::max(most_dark, d);
            CHECK(darkness[darkest.first][darkest.second] == most_dark);
            const bool decoder_side = kind != "encoder self";
            CHECK(drawn["row_tokens"] ==
                  nlohmann::json(decoder_side ? sentences[s].target_outputs : sentences[s].source_tokens));
            CHECK(drawn["column_tokens"] ==
                  nlohmann::json(kind == "decoder self" ? sentences[s].target_inputs : sentences[s].source_tokens));
            if (head > 0) CHECK(weights != previous_head);  // the drawing changed with the head
            previous_head = weights;
          }
        }

    // Hovering over a source token (a column of cross-attention) lights its column and lists who attends to it.
    choose(browser, 0, "cross", layers - 1, 0);
    const size_t rows = sentences[0].target_outputs.size();
    std::pair<double, double> at = centre_of(browser, "#matrix th.col[data-col='1']");
    browser.move_mouse(at.first, at.second);
    CHECK(browser.evaluate("document.getElementById('info-heading').textContent") ==
          "source token \"" + sentences[0].source_tokens[1] + "\" is attended by:");
    CHECK(browser.evaluate("document.querySelectorAll('#info-weights tr').length") == rows);
    CHECK(browser.evaluate("document.querySelectorAll('#matrix td.lit').length") == rows);
    // A click on a target token keeps its row shown after the pointer leaves.
    at = centre_of(browser, "#matrix th.row[data-row='0']");
    browser.click(at.first, at.second);
    browser.move_mouse(2, 2);
    CHECK(browser.evaluate("document.getElementById('info-heading').textContent") ==
          "target token \"" + sentences[0].target_outputs[0] + "\" attends to:");
    CHECK(browser.evaluate("document.querySelectorAll('#info-weights tr').length") == sentences[0].source_tokens.size());
    CHECK(browser.evaluate("document.querySelectorAll('#matrix th.pinned').length") == 1);
    // The n-best list when asked for, with its scores.
    CHECK(browser.evaluate("document.getElementById('n-best').hidden") == (name == "rnn-attention"));
    if (name != "rnn-attention") {
      CHECK(browser.evaluate("document.querySelectorAll('#n-best tr').length") == 3);
      CHECK(browser.evaluate("document.querySelector('#n-best tr:nth-child(2)').textContent") ==
            "1" + sentences[0].n_best[0].text + "-1.5000-0.2500");
    }
    CHECK(browser.evaluate("document.getElementById('legend-ticks').textContent") == "00.250.50.751");
    if (transformer) {
      browser.evaluate("window.scrollTo(0, 0)");
      check_not_blank(browser, 1200, 900);
    }
  }
  INFO(fmt::format("{}", fmt::join(browser.problems(), "\n")));
  CHECK(browser.problems().empty());
}

TEST_CASE("training report in chromium: five charts, hover values, the log-scale toggle, the tables, a screenshot") {
  REQUIRE_MESSAGE(!chromium_path().empty(), "the browser tests need chromium (apt-get install chromium)");
  const TempDir dir;
  const std::string path = dir.str("report.html");
  nn::write_text_file(path, models::training_html(sample_report(), 100));
  const nlohmann::json data = nlohmann::json::parse(embedded_json_text(file_text(path)));
  CHECK(data["train_nll"]["points"].size() == 101);  // 200 steps thinned to every second one, and the last
  CHECK(data["valid_nll"]["points"].size() == 4);

  Browser browser;
  browser.open(path, 1200, 1400);
  CHECK(browser.evaluate("[...document.querySelectorAll('.chart')].map((c) => c.querySelectorAll('path.series').length)") ==
        nlohmann::json({3, 2, 2, 1, 1}));
  CHECK(browser.evaluate("document.querySelector('#chart-loss h2').textContent") == "Loss per target token");
  // The pointer over step 100 of the loss chart shows every curve's value at the nearest step.
  const auto hover = [&](const std::string& chart, double step) {
    const nlohmann::json box = browser.evaluate(fmt::format(
        "(() => {{ const r = document.querySelector('#chart-{} rect.overlay').getBoundingClientRect(); "
        "return [r.left, r.top, r.width, r.height]; }})()", chart));
    const double x = box[0].get<double>() + box[2].get<double>() * (step - 1) / (200 - 1);
    browser.move_mouse(x, box[1].get<double>() + box[3].get<double>() / 2);
    return browser.evaluate(fmt::format("document.querySelector('#chart-{} .tip').innerText", chart)).get<std::string>();
  };
  const std::string tip = hover("loss", 100);
  CHECK(tip.find("valid NLL: 2.5 (step 100)") != std::string::npos);
  CHECK(tip.find("train NLL: ") != std::string::npos);
  CHECK(hover("scores", 150).find("valid chrF: 30 (step 150)") != std::string::npos);
  CHECK(hover("perplexity", 100).find(fmt::format("valid perplexity: {:.4g} (step 100)", std::exp(2.5))) !=
        std::string::npos);
  CHECK(hover("tokens-per-second", 199).find("tokens/s: 13,990 (step 199)") != std::string::npos);

  // The log-scale box: the loss axis's ticks become 1-2-5 values.
  const std::string ticks = "[...document.querySelectorAll('#chart-loss .y-tick')].map((t) => t.textContent)";
  const auto linear = browser.evaluate(ticks).get<std::vector<std::string>>();
  const auto [bx, by] = centre_of(browser, "#log-scale");
  browser.click(bx, by);
  CHECK(browser.evaluate("document.getElementById('log-scale').checked") == true);
  const auto logarithmic = browser.evaluate(ticks).get<std::vector<std::string>>();
  CHECK(logarithmic != linear);
  CHECK(logarithmic == std::vector<std::string>{"0.5", "1", "2", "5"});
  CHECK(browser.evaluate("document.querySelectorAll('path.series').length") == 9);

  CHECK(browser.evaluate("document.getElementById('best').innerText").get<std::string>().find("100") != std::string::npos);
  const std::string machine = browser.evaluate("document.getElementById('machine').innerText").get<std::string>();
  CHECK(machine.find("threads") != std::string::npos);
  CHECK(machine.find(models::machine_description(DType::f32, 1)["cpu"].get<std::string>()) != std::string::npos);
  CHECK(browser.evaluate("document.getElementById('config').innerText").get<std::string>().find("model.d_model") !=
        std::string::npos);
  browser.evaluate("window.scrollTo(0, 0)");
  check_not_blank(browser, 1200, 1400);
  INFO(fmt::format("{}", fmt::join(browser.problems(), "\n")));
  CHECK(browser.problems().empty());
}

TEST_CASE("machine_description: the CPU's model name, the threads and the precision") {
  const nlohmann::json machine = models::machine_description(DType::bf16, 2);
  CHECK(machine["precision"] == "bf16 (mixed)");
  CHECK(machine["processes"] == 2);
  CHECK(machine["threads"].get<int>() >= 1);
  CHECK(!machine["cpu"].get<std::string>().empty());
}

#include "autograd/profiler.h"
#include "autograd/engine.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "ops/ops.h"
#include "ops/precision.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

using namespace gradformer;

namespace {

const ProfiledEvent* find_event(const std::vector<ProfiledEvent>& events, std::string_view name) {
  auto it = std::find_if(events.begin(), events.end(), [name](const ProfiledEvent& e) { return e.name == name; });
  return it == events.end() ? nullptr : &*it;
}

// One training step of a small classifier: linear, gelu, linear, cross entropy, backward, Adam.
struct TinyStep {
  Generator gen{7};
  nn::Linear first{32, 64, true, gen}, second{64, 10, true, gen};
  std::vector<Tensor> params;
  std::unique_ptr<optim::Adam> optimizer;
  Tensor x = randn({16, 32}, gen);
  Tensor targets = from_vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5}, {16});

  TinyStep() {
    for (const nn::Module* m : {static_cast<const nn::Module*>(&first), static_cast<const nn::Module*>(&second)})
      for (const Tensor& p : m->parameters()) params.push_back(p);
    optimizer = std::make_unique<optim::Adam>(params, optim::AdamOptions{});
  }
  void run() {
    optimizer->zero_grad();
    cross_entropy(second.forward(gelu(first.forward(x))), targets).backward();
    optimizer->step();
  }
};

}  // namespace

TEST_CASE("profiler: records each op's forward and backward with shapes, dtype and product FLOPs") {
  Generator gen(1);
  const Tensor a = randn({8, 16}, gen).requires_grad_(), b = randn({16, 4}, gen).requires_grad_();
  Profiler profiler;
  sum(matmul(a, b)).backward();
  profiler.stop();
  const std::vector<ProfiledEvent> events = profiler.events();
  const ProfiledEvent* forward = find_event(events, "matmul");
  REQUIRE(forward != nullptr);
  CHECK(forward->kind == ProfiledKind::forward);
  CHECK(forward->op == Op::matmul);
  CHECK(forward->inputs == "[8, 16], [16, 4]");
  CHECK(forward->dtype == DType::f32);
  CHECK(forward->flops == doctest::Approx(2.0 * 8 * 16 * 4));
  CHECK(forward->products == kProductsF32);
  const ProfiledEvent* backward = find_event(events, "matmul backward");
  REQUIRE(backward != nullptr);
  CHECK(backward->kind == ProfiledKind::backward);
  CHECK(backward->op == Op::matmul);
  CHECK(backward->flops == doctest::Approx(2 * 2.0 * 8 * 16 * 4));  // da = dout b^T, db = a^T dout
  const ProfiledEvent* engine = find_event(events, "backward");
  REQUIRE(engine != nullptr);
  CHECK(engine->depth == 0);
  CHECK(backward->depth == 1);  // inside the engine's run
  CHECK(backward->start_ns >= engine->start_ns);
  CHECK(backward->start_ns + backward->duration_ns <= engine->start_ns + engine->duration_ns);
  CHECK(find_event(events, "sum") != nullptr);
  CHECK(find_event(events, "sum backward") != nullptr);
}

TEST_CASE("profiler: nothing is recorded outside a Profiler, and only one records at a time") {
  Generator gen(2);
  const Tensor a = randn({4, 4}, gen);
  {
    Profiler first;
    CHECK_THROWS_AS(Profiler(), ValueError);
  }
  (void)matmul(a, a);  // no profiler: no event anywhere to go
  Profiler profiler;
  (void)matmul(a, a);
  profiler.stop();
  (void)matmul(a, a);
  const std::vector<ProfiledEvent> events = profiler.events();
  CHECK(std::count_if(events.begin(), events.end(), [](const ProfiledEvent& e) { return e.op == Op::matmul; }) == 1);
}

TEST_CASE("profiler: products under autocast are marked bf16 where they ran in bf16, emulated where emulated") {
  Generator gen(3);
  const Tensor a = randn({128, 128}, gen), b = randn({128, 128}, gen), small = randn({4, 4}, gen);
  Profiler profiler;
  {
    const AutocastGuard autocast(DType::bf16);
    (void)matmul(a, b);
    (void)matmul(small, small);  // too small to pay for the rounding: stays f32
  }
  profiler.stop();
  const std::vector<ProfiledEvent> events = profiler.events();
  REQUIRE(events.size() == 2);
  CHECK(events[0].autocast == DType::bf16);
  // Where oneDNN has no bf16 matmul (below AVX-512), the product is rounded to bf16 and run on f32 kernels.
  CHECK(events[0].products == (bf16_products_supported() ? kProductsBf16 : kProductsBf16Emulated));
  CHECK(events[1].products == kProductsF32);
  CHECK(product_precision_name(kProductsBf16 | kProductsF32) == "bf16+f32");
  CHECK(product_precision_name(kProductsBf16Emulated) == "bf16 (emulated on f32)");
}

TEST_CASE("profiler: the self times of a step add up to the step's time, and the table says so") {
  TinyStep step;
  step.run();  // warm: primitives and optimizer state made outside the profile
  Profiler profiler;
  const auto start = std::chrono::steady_clock::now();
  {
    const RecordFunction range("train_step");
    step.run();
  }
  const double measured_ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
                              .count());
  profiler.stop();
  const std::vector<ProfiledEvent> events = profiler.events();
  const ProfiledEvent* range = find_event(events, "train_step");
  REQUIRE(range != nullptr);
  CHECK(static_cast<double>(range->duration_ns) <= measured_ns);
  for (std::string_view name : {"linear", "linear backward", "gelu", "cross_entropy", "Adam.step", "Adam.zero_grad"})
    CHECK_MESSAGE(find_event(events, name) != nullptr, name);
  const ProfiledMemory memory = profiler.memory();
  CHECK(memory.allocations > 0);
  int64_t self_total = memory.allocate_ns + memory.release_ns;
  for (const ProfiledSummary& row : profiler.summary()) self_total += row.self_ns;
  // Every event and allocation of the profile lies inside the step, so its self times tile the step exactly
  // (each event's self time is its duration minus what is nested in it).
  CHECK(self_total == range->duration_ns);
  int64_t shares = 0;
  for (const ProfiledShare& share : profiler.breakdown()) shares += share.self_ns;
  CHECK(shares == self_total);
  const std::string table = profiler.table();
  CHECK(table.find(fmt::format("Self time total: {:.3f} ms", static_cast<double>(self_total) / 1e6)) !=
        std::string::npos);
  CHECK(table.find("linear backward") != std::string::npos);
}

TEST_CASE("profiler: the table sorts by the column asked for") {
  TinyStep step;
  Profiler profiler;
  step.run();
  step.run();
  profiler.stop();
  const std::vector<ProfiledSummary> by_calls = profiler.summary(ProfileSort::calls);
  REQUIRE(by_calls.size() > 3);
  for (size_t i = 1; i < by_calls.size(); ++i) CHECK(by_calls[i - 1].calls >= by_calls[i].calls);
  // Flops count nested events in: the engine's backward holds every backward product, and the first op is linear's.
  const std::vector<ProfiledSummary> by_flops = profiler.summary(ProfileSort::flops);
  for (size_t i = 1; i < by_flops.size(); ++i) CHECK(by_flops[i - 1].flops >= by_flops[i].flops);
  const auto first_op = std::find_if(by_flops.begin(), by_flops.end(), [](const ProfiledSummary& r) { return r.op; });
  REQUIRE(first_op != by_flops.end());
  CHECK(first_op->op == Op::linear);
  const std::vector<ProfiledSummary> by_name = profiler.summary(ProfileSort::name);
  for (size_t i = 1; i < by_name.size(); ++i) CHECK(by_name[i - 1].name <= by_name[i].name);
  CHECK(profile_sort_from_name("total") == ProfileSort::total_time);
  CHECK_THROWS_AS(profile_sort_from_name("speed"), ValueError);
  const std::string two_rows = profiler.table(ProfileSort::self_time, 2);
  CHECK(two_rows.find("more rows") != std::string::npos);
}

TEST_CASE("profiler: the Chrome trace is trace-event JSON with the expected fields") {
  TinyStep step;
  Profiler profiler;
  {
    const RecordFunction range("train_step");
    step.run();
  }
  profiler.stop();
  const std::string path = "test_profiler_trace.json";
  profiler.write_chrome_trace(path);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path.c_str());
  const nlohmann::json trace = nlohmann::json::parse(text.str());
  REQUIRE(trace.contains("traceEvents"));
  const nlohmann::json& events = trace["traceEvents"];
  REQUIRE(events.is_array());
  CHECK(events.size() == profiler.events().size());
  bool saw_flops = false;
  for (const nlohmann::json& event : events) {
    CHECK(event["ph"] == "X");
    CHECK(event["name"].is_string());
    CHECK(event["cat"].is_string());
    CHECK(event["ts"].is_number());
    CHECK(event["dur"].is_number());
    CHECK(event["dur"].get<double>() >= 0);
    CHECK(event["pid"].is_number_integer());
    CHECK(event["tid"].is_number_integer());
    CHECK(event["args"]["inputs"].is_string());
    CHECK(event["args"]["dtype"].is_string());
    if (event["args"].contains("flops")) {
      saw_flops = true;
      CHECK(event["args"]["products"] == "f32");
    }
  }
  CHECK(saw_flops);
  CHECK_THROWS_AS(profiler.write_chrome_trace("/nonexistent-directory/trace.json"), IOError);
}

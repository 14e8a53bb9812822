// The profiler's recording and its reports. Each thread keeps a stack of open events; an event's nested time
// (and the storage allocation inside it) is added to its parent as it closes, so self time falls out without a
// second pass. Closed events go to the session under its mutex; while no Profiler records, nothing here runs.
#include "autograd/profiler.h"

#include "autograd/engine.h"
#include "autograd/error.h"
#include "ops/autocast.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <tuple>

namespace gradformer {

struct Profiler::Session {
  std::mutex mutex;
  std::vector<ProfiledEvent> events;  // guarded by mutex
  int64_t origin_ns = 0;
  std::atomic<bool> stopped{false};
  std::atomic<int64_t> allocations{0}, allocate_ns{0}, releases{0}, release_ns{0};
  rusage usage_at_start{}, usage_at_stop{};
};

namespace {

using Session = Profiler::Session;

std::mutex active_mutex;
std::shared_ptr<Session> active_session;  // guarded by active_mutex
std::atomic<uint64_t> session_generation{0};
std::atomic<int> next_thread_id{0};

struct Frame {
  std::shared_ptr<Session> session;  // the one recording when the event began; null if none was
  ProfiledEvent event;
  int64_t begin_ns = 0;
  int64_t nested_ns = 0;  // nested events' and storage allocation's time
};

struct ThreadState {
  std::vector<Frame> stack;
  std::shared_ptr<Session> session;  // active_session as of `generation`
  uint64_t generation = ~uint64_t{0};
  int id = -1;
};

thread_local ThreadState thread_state;

ThreadState& state() {
  ThreadState& s = thread_state;
  const uint64_t generation = session_generation.load(std::memory_order_acquire);
  if (s.generation != generation) {
    const std::lock_guard lock(active_mutex);
    s.session = active_session;
    s.generation = session_generation.load(std::memory_order_relaxed);
  }
  if (s.id < 0) s.id = next_thread_id++;
  return s;
}

double seconds_of(const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; }

std::string input_shapes(std::initializer_list<const Tensor*> inputs) {
  std::string text;
  for (const Tensor* input : inputs) {
    if (!text.empty()) text += ", ";
    text += input->defined() ? shape_str(input->shape()) : "none";
  }
  return text;
}

DType first_dtype(std::initializer_list<const Tensor*> inputs) {
  for (const Tensor* input : inputs)
    if (input->defined()) return input->dtype();
  return DType::f32;
}

void push_frame(ProfiledEvent event) {
  ThreadState& s = state();
  Frame frame;
  frame.session = s.session;
  frame.event = std::move(event);
  frame.event.thread = s.id;
  frame.event.depth = static_cast<int>(s.stack.size());
  frame.event.autocast = autocast_dtype();
  frame.begin_ns = profiling::now_ns();
  if (frame.session) frame.event.start_ns = frame.begin_ns - frame.session->origin_ns;
  s.stack.push_back(std::move(frame));
}

std::string_view category_of(const ProfiledEvent& event) {
  if (event.kind == ProfiledKind::optimizer) return "optimizer";
  if (!event.op) return event.kind == ProfiledKind::backward ? "autograd" : "rest";
  switch (*event.op) {
    case Op::matmul: case Op::linear: case Op::bmm: return "products";
    case Op::scaled_dot_product_attention: return "attention";
    case Op::layer_norm: case Op::softmax: case Op::log_softmax: return "norms";
    case Op::cross_entropy: case Op::nll_loss: case Op::mse_loss: return "loss";
    case Op::add: case Op::sub: case Op::mul: case Op::div: case Op::neg: case Op::exp: case Op::log: case Op::rsub:
    case Op::rdiv: case Op::abs: case Op::sqrt: case Op::rsqrt: case Op::pow: case Op::tanh: case Op::sigmoid:
    case Op::relu: case Op::gelu: case Op::softplus: case Op::silu: case Op::sin: case Op::cos: case Op::erf:
    case Op::log1p: case Op::expm1: case Op::maximum: case Op::minimum: case Op::where:
    case Op::masked_fill: case Op::dropout:
      return "elementwise";
    default: return "rest";
  }
}

constexpr std::array<std::string_view, 9> kCategories{"products", "attention", "norms",    "elementwise", "loss",
                                                      "optimizer", "memory",    "autograd", "rest"};

}  // namespace

std::string_view profiled_kind_name(ProfiledKind kind) {
  switch (kind) {
    case ProfiledKind::forward: return "forward";
    case ProfiledKind::backward: return "backward";
    case ProfiledKind::optimizer: return "optimizer";
    case ProfiledKind::user: return "user";
  }
  return "user";
}

std::string product_precision_name(uint8_t precisions) {
  std::string name;
  for (auto [bit, label] : {std::pair{kProductsBf16, "bf16"},
                             {kProductsBf16Emulated, "bf16 (emulated on f32)"},
                             {kProductsF32, "f32"},
                             {kProductsF64, "f64"}}) {
    if (!(precisions & bit)) continue;
    if (!name.empty()) name += "+";
    name += label;
  }
  return name;
}

ProfileSort profile_sort_from_name(std::string_view name) {
  if (name == "self") return ProfileSort::self_time;
  if (name == "total") return ProfileSort::total_time;
  if (name == "calls") return ProfileSort::calls;
  if (name == "flops") return ProfileSort::flops;
  if (name == "name") return ProfileSort::name;
  fail<ValueError>("profiler", "sorts by self, total, calls, flops or name, not '{}'", name);
}

namespace profiling {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void begin_op(Op op, ProfiledKind kind, std::initializer_list<const Tensor*> inputs) {
  ProfiledEvent event;
  event.name = op_name(op);
  event.kind = kind;
  event.op = op;
  event.inputs = input_shapes(inputs);
  event.dtype = first_dtype(inputs);
  push_frame(std::move(event));
}

void begin_op(Op op, ProfiledKind kind, const std::vector<Tensor>& inputs) {
  ProfiledEvent event;
  event.name = op_name(op);
  event.kind = kind;
  event.op = op;
  for (const Tensor& input : inputs) {
    if (!event.inputs.empty()) event.inputs += ", ";
    event.inputs += input.defined() ? shape_str(input.shape()) : "none";
  }
  if (!inputs.empty() && inputs.front().defined()) event.dtype = inputs.front().dtype();
  push_frame(std::move(event));
}

void begin_named(std::string_view name, ProfiledKind kind, std::optional<Op> op, const std::string& inputs) {
  ProfiledEvent event;
  event.name = name;
  event.kind = kind;
  event.op = op;
  event.inputs = inputs;
  push_frame(std::move(event));
}

void end() {
  ThreadState& s = thread_state;
  if (s.stack.empty()) return;
  Frame frame = std::move(s.stack.back());
  s.stack.pop_back();
  ProfiledEvent& event = frame.event;
  event.duration_ns = now_ns() - frame.begin_ns;
  event.self_ns = std::max<int64_t>(0, event.duration_ns - frame.nested_ns);
  if (!s.stack.empty()) {
    Frame& parent = s.stack.back();
    parent.nested_ns += event.duration_ns;
    parent.event.flops += event.flops;
    parent.event.products |= event.products;
  }
  if (!frame.session || frame.session->stopped.load(std::memory_order_relaxed)) return;
  const std::lock_guard lock(frame.session->mutex);
  frame.session->events.push_back(std::move(event));
}

void note_product(double flops, ProductPrecision precision) {
  ThreadState& s = thread_state;
  if (s.stack.empty()) return;
  s.stack.back().event.flops += flops;
  s.stack.back().event.products |= precision;
}

void note_storage(bool release, int64_t ns) {
  ThreadState& s = state();
  if (!s.stack.empty()) s.stack.back().nested_ns += ns;
  if (!s.session) return;
  (release ? s.session->releases : s.session->allocations).fetch_add(1, std::memory_order_relaxed);
  (release ? s.session->release_ns : s.session->allocate_ns).fetch_add(ns, std::memory_order_relaxed);
}

}  // namespace profiling

Profiler::Profiler() : session_(std::make_shared<Session>()) {
  const std::lock_guard lock(active_mutex);
  if (active_session) fail<ValueError>("profiler", "another Profiler is recording (one at a time per process)");
  getrusage(RUSAGE_SELF, &session_->usage_at_start);
  session_->origin_ns = profiling::now_ns();
  active_session = session_;
  session_generation.fetch_add(1, std::memory_order_release);
  profiling::active.store(true, std::memory_order_relaxed);
}

Profiler::~Profiler() { stop(); }

void Profiler::stop() {
  if (!recording_) return;
  recording_ = false;
  stopped_ns_ = profiling::now_ns() - session_->origin_ns;
  getrusage(RUSAGE_SELF, &session_->usage_at_stop);
  const std::lock_guard lock(active_mutex);
  session_->stopped.store(true, std::memory_order_relaxed);
  active_session = nullptr;
  session_generation.fetch_add(1, std::memory_order_release);
  profiling::active.store(false, std::memory_order_relaxed);
}

int64_t Profiler::wall_ns() const { return recording_ ? profiling::now_ns() - session_->origin_ns : stopped_ns_; }

std::vector<ProfiledEvent> Profiler::events() const {
  std::vector<ProfiledEvent> events;
  {
    const std::lock_guard lock(session_->mutex);
    events = session_->events;
  }
  std::sort(events.begin(), events.end(), [](const ProfiledEvent& a, const ProfiledEvent& b) {
    return std::tie(a.start_ns, a.thread, a.depth) < std::tie(b.start_ns, b.thread, b.depth);
  });
  return events;
}

std::vector<ProfiledSummary> Profiler::summary(ProfileSort sort) const {
  std::map<std::pair<std::string, ProfiledKind>, ProfiledSummary> rows;
  {
    const std::lock_guard lock(session_->mutex);
    for (const ProfiledEvent& event : session_->events) {
      ProfiledSummary& row = rows[{event.name, event.kind}];
      row.name = event.name;
      row.kind = event.kind;
      row.op = event.op;
      ++row.calls;
      row.total_ns += event.duration_ns;
      row.self_ns += event.self_ns;
      row.flops += event.flops;
      row.products |= event.products;
    }
  }
  std::vector<ProfiledSummary> table;
  for (auto& [key, row] : rows) table.push_back(std::move(row));
  auto key = [sort](const ProfiledSummary& row) {
    switch (sort) {
      case ProfileSort::self_time: return static_cast<double>(row.self_ns);
      case ProfileSort::total_time: return static_cast<double>(row.total_ns);
      case ProfileSort::calls: return static_cast<double>(row.calls);
      case ProfileSort::flops: return row.flops;
      case ProfileSort::name: return 0.0;
    }
    return 0.0;
  };
  std::stable_sort(table.begin(), table.end(), [&key](const ProfiledSummary& a, const ProfiledSummary& b) {
    return key(a) > key(b);
  });
  return table;
}

ProfiledMemory Profiler::memory() const {
  const rusage& start = session_->usage_at_start;
  rusage end{};
  if (recording_)
    getrusage(RUSAGE_SELF, &end);
  else
    end = session_->usage_at_stop;
  ProfiledMemory memory;
  memory.allocations = session_->allocations.load();
  memory.allocate_ns = session_->allocate_ns.load();
  memory.releases = session_->releases.load();
  memory.release_ns = session_->release_ns.load();
  memory.minor_faults = end.ru_minflt - start.ru_minflt;
  memory.major_faults = end.ru_majflt - start.ru_majflt;
  memory.user_seconds = seconds_of(end.ru_utime) - seconds_of(start.ru_utime);
  memory.system_seconds = seconds_of(end.ru_stime) - seconds_of(start.ru_stime);
  return memory;
}

std::vector<ProfiledShare> Profiler::breakdown() const {
  std::vector<ProfiledShare> shares;
  for (std::string_view category : kCategories) shares.push_back({std::string(category), 0, 0});
  auto share = [&shares](std::string_view category) -> ProfiledShare& {
    return *std::find_if(shares.begin(), shares.end(), [category](const ProfiledShare& s) { return s.category == category; });
  };
  {
    const std::lock_guard lock(session_->mutex);
    for (const ProfiledEvent& event : session_->events) {
      ProfiledShare& s = share(category_of(event));
      s.self_ns += event.self_ns;
      ++s.calls;
    }
  }
  const ProfiledMemory memory = this->memory();
  share("memory").self_ns = memory.allocate_ns + memory.release_ns;
  share("memory").calls = memory.allocations + memory.releases;
  return shares;
}

std::string Profiler::table(ProfileSort sort, size_t rows) const {
  std::vector<ProfiledSummary> summary = this->summary(sort);
  const ProfiledMemory memory = this->memory();
  int64_t self_total = memory.allocate_ns + memory.release_ns;
  for (const ProfiledSummary& row : summary) self_total += row.self_ns;
  const double total = std::max<double>(1.0, static_cast<double>(self_total));
  size_t width = 24;
  for (const ProfiledSummary& row : summary) width = std::max(width, row.name.size() + 1);
  std::string out = fmt::format("{:<{}} {:>9} {:>8} {:>11} {:>7} {:>11} {:>7} {:>10} {:>9}  {}\n", "Name", width,
                                "Kind", "Calls", "Self ms", "Self %", "Total ms", "Total %", "GFLOP", "GFLOP/s",
                                "Products");
  out += std::string(out.size() - 1, '-') + "\n";
  const size_t shown = rows == 0 ? summary.size() : std::min(rows, summary.size());
  for (size_t i = 0; i < shown; ++i) {
    const ProfiledSummary& row = summary[i];
    const std::string gflop = row.flops > 0 ? fmt::format("{:.3f}", row.flops / 1e9) : "";
    const std::string rate =
        row.flops > 0 && row.total_ns > 0 ? fmt::format("{:.1f}", row.flops / static_cast<double>(row.total_ns)) : "";
    out += fmt::format("{:<{}} {:>9} {:>8} {:>11.3f} {:>6.1f}% {:>11.3f} {:>6.1f}% {:>10} {:>9}  {}\n", row.name,
                       width, profiled_kind_name(row.kind), row.calls, static_cast<double>(row.self_ns) / 1e6,
                       100.0 * static_cast<double>(row.self_ns) / total, static_cast<double>(row.total_ns) / 1e6,
                       100.0 * static_cast<double>(row.total_ns) / total, gflop, rate,
                       product_precision_name(row.products));
  }
  if (shown < summary.size()) out += fmt::format("... {} more rows\n", summary.size() - shown);
  out += fmt::format("{:<{}} {:>9} {:>8} {:>11.3f} {:>6.1f}%\n", "[storage allocation]", width, "memory",
                     memory.allocations + memory.releases,
                     static_cast<double>(memory.allocate_ns + memory.release_ns) / 1e6,
                     100.0 * static_cast<double>(memory.allocate_ns + memory.release_ns) / total);
  out += fmt::format("Self time total: {:.3f} ms (wall time profiled: {:.3f} ms); page faults: {} minor, {} major; "
                     "CPU time: {:.3f} s user, {:.3f} s system\n",
                     static_cast<double>(self_total) / 1e6, static_cast<double>(wall_ns()) / 1e6, memory.minor_faults,
                     memory.major_faults, memory.user_seconds, memory.system_seconds);
  return out;
}

std::string Profiler::chrome_trace() const {
  const int pid = static_cast<int>(getpid());
  nlohmann::json trace_events = nlohmann::json::array();
  for (const ProfiledEvent& event : events()) {
    nlohmann::json args{{"inputs", event.inputs},
                        {"dtype", dtype_name(event.dtype)},
                        {"autocast", dtype_name(event.autocast)},
                        {"self_us", static_cast<double>(event.self_ns) / 1e3}};
    if (event.products) {
      args["products"] = product_precision_name(event.products);
      args["flops"] = event.flops;
    }
    trace_events.push_back({{"name", event.name},
                            {"cat", profiled_kind_name(event.kind)},
                            {"ph", "X"},
                            {"ts", static_cast<double>(event.start_ns) / 1e3},
                            {"dur", static_cast<double>(event.duration_ns) / 1e3},
                            {"pid", pid},
                            {"tid", event.thread},
                            {"args", std::move(args)}});
  }
  return nlohmann::json{{"traceEvents", std::move(trace_events)}, {"displayTimeUnit", "ms"}}.dump();
}

void Profiler::write_chrome_trace(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail<IOError>("profiler", "cannot open '{}' to write the trace", path);
  out << chrome_trace() << '\n';
  out.close();
  if (!out) fail<IOError>("profiler", "cannot write the trace to '{}'", path);
}

RecordFunction::RecordFunction(std::string_view name, ProfiledKind kind) {
  if (!profiling::active.load(std::memory_order_relaxed)) [[likely]]
    return;
  open_ = true;
  profiling::begin_named(name, kind, std::nullopt, "");
}

RecordFunction::~RecordFunction() {
  if (open_) [[unlikely]]
    profiling::end();
}

}  // namespace gradformer

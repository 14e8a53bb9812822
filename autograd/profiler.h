// The profiler, as torch.profiler: while a Profiler is alive, every op's forward (at its entry), every graph
// node's backward (in Engine::run), the optimizer's step and any RecordFunction range are timed on the thread
// that runs them, with the op's input shapes and dtype, the autocast mode, the FLOPs of the matrix products run
// inside (counted where gemm::multiply runs them) and the precision those products ran in. Storage allocation
// and release are timed too, as counters rather than events (a step makes thousands). Afterwards it gives the
// events, a table grouped by name (calls, total and self time, GFLOP/s, sortable, as key_averages().table()), a
// Chrome trace-event JSON file (Perfetto, chrome://tracing) and a breakdown of the time by kind of work.
//
// Self time is an event's time minus that of the events (and allocations) inside it, so the self times of all
// events, plus allocation time, add up to the time covered by the outermost events: wrap a step in a
// RecordFunction and the table's total is that step's time.
//
// Off, each hook costs one load and one well-predicted branch at entry and one at exit. One Profiler at a time
// per process; it records every thread.
#pragma once

#include "autograd/op.h"
#include "autograd/tensor.h"

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace gradformer {

// What an event timed.
enum class ProfiledKind : uint8_t { forward, backward, optimizer, user };
std::string_view profiled_kind_name(ProfiledKind kind);

// Which precisions the products inside an event ran in: a bit set. kProductsBf16Emulated is a bf16 product on a
// CPU where oneDNN has no bf16 matmul: its operands rounded to bf16, multiplied and accumulated on f32 kernels.
enum ProductPrecision : uint8_t { kProductsF32 = 1, kProductsBf16 = 2, kProductsF64 = 4, kProductsBf16Emulated = 8 };
// "", "f32", "bf16", "bf16+f32", "bf16 (emulated on f32)", ...
std::string product_precision_name(uint8_t precisions);

struct ProfiledEvent {
  std::string name;          // "matmul", "matmul backward" (a node's), "backward" (the engine's), "Adam.step", a
                             // RecordFunction's name
  ProfiledKind kind = ProfiledKind::user;
  std::optional<Op> op;      // the library op, for forward and backward events of one
  std::string inputs;        // the inputs' shapes, "[64, 20, 256], [1024, 256]"
  DType dtype = DType::f32;  // the first input's
  DType autocast = DType::f32;  // autocast_dtype() when the event began
  uint8_t products = 0;      // ProductPrecision bits of the products run inside it, nested events included
  double flops = 0;          // of those products (2 m n k each)
  int64_t start_ns = 0;      // since the profiler started
  int64_t duration_ns = 0;
  int64_t self_ns = 0;       // duration minus nested events and storage allocation inside it
  int thread = 0;            // 0 for the first thread that recorded, then 1, 2, ...
  int depth = 0;             // how many events enclose it on its thread
};

// One row of the table: the events of one name and kind.
struct ProfiledSummary {
  std::string name;
  ProfiledKind kind = ProfiledKind::user;
  std::optional<Op> op;
  int64_t calls = 0;
  int64_t total_ns = 0, self_ns = 0;
  double flops = 0;
  uint8_t products = 0;
};

// What the table is sorted by (descending, except name).
enum class ProfileSort { self_time, total_time, calls, flops, name };
// "self", "total", "calls", "flops", "name"; throws ValueError naming the choices for anything else.
ProfileSort profile_sort_from_name(std::string_view name);

// Storage allocation and the process's page faults and CPU time while the profiler ran.
struct ProfiledMemory {
  int64_t allocations = 0, allocate_ns = 0;
  int64_t releases = 0, release_ns = 0;
  int64_t minor_faults = 0, major_faults = 0;  // getrusage(RUSAGE_SELF)
  double user_seconds = 0, system_seconds = 0;  // CPU time of all threads; system time is mostly page faults
};

// The self time of one kind of work, for Profiler::breakdown.
struct ProfiledShare {
  std::string category;  // products, attention, norms, elementwise, loss, optimizer, memory, autograd, rest
  int64_t self_ns = 0;
  int64_t calls = 0;
};

class Profiler {
 public:
  Profiler();   // starts recording; throws ValueError if another Profiler is recording
  ~Profiler();  // stops, if stop() was not called
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Stops recording (events still open on some thread are left out); the results below stay.
  void stop();
  bool recording() const { return recording_; }

  // Every finished event, by start time.
  std::vector<ProfiledEvent> events() const;
  std::vector<ProfiledSummary> summary(ProfileSort sort = ProfileSort::self_time) const;
  ProfiledMemory memory() const;
  // Self time by kind of work (the categories of ProfiledShare, in that order); memory is allocation and
  // release; autograd is the engine's own time (ordering the graph, accumulating gradients); rest is every
  // other op and the self time of RecordFunction ranges. The shares add up to the table's total.
  std::vector<ProfiledShare> breakdown() const;
  int64_t wall_ns() const;  // from start to stop (or to now, while recording)

  // The table, at most `rows` rows (0: all), then the total of the self times.
  std::string table(ProfileSort sort = ProfileSort::self_time, size_t rows = 0) const;
  // The Chrome trace-event JSON: {"traceEvents": [{"name", "cat", "ph": "X", "ts", "dur" (µs), "pid", "tid",
  // "args": {inputs, dtype, autocast, products, flops, self_us}}, ...], "displayTimeUnit": "ms"}.
  std::string chrome_trace() const;
  void write_chrome_trace(const std::string& path) const;  // throws IOError naming the path

  struct Session;

 private:
  std::shared_ptr<Session> session_;
  bool recording_ = true;
  int64_t stopped_ns_ = 0;
};

// A named range in the profile, as torch.profiler.record_function: a training step, a decoding step.
class RecordFunction {
 public:
  explicit RecordFunction(std::string_view name, ProfiledKind kind = ProfiledKind::user);
  ~RecordFunction();
  RecordFunction(const RecordFunction&) = delete;
  RecordFunction& operator=(const RecordFunction&) = delete;

 private:
  bool open_ = false;
};

namespace profiling {

// Whether a Profiler is recording: the one flag every hook tests.
inline std::atomic<bool> active{false};

void begin_op(Op op, ProfiledKind kind, std::initializer_list<const Tensor*> inputs);
void begin_op(Op op, ProfiledKind kind, const std::vector<Tensor>& inputs);
void begin_named(std::string_view name, ProfiledKind kind, std::optional<Op> op, const std::string& inputs);
void end();
// A product of `flops` in `precision` ran inside the innermost open event of this thread.
void note_product(double flops, ProductPrecision precision);
// Storage allocation (or release) took `ns`.
void note_storage(bool release, int64_t ns);
int64_t now_ns();

}  // namespace profiling

// The hook at an op's entry: `const ProfiledOp profiled(Op::matmul, a, b);` times the op to the end of the scope.
class ProfiledOp {
 public:
  template <class... Inputs>
  explicit ProfiledOp(Op op, const Inputs&... inputs) {
    if (!profiling::active.load(std::memory_order_relaxed)) [[likely]]
      return;
    open_ = true;
    begin(op, inputs...);
  }
  ~ProfiledOp() {
    if (open_) [[unlikely]]
      profiling::end();
  }
  ProfiledOp(const ProfiledOp&) = delete;
  ProfiledOp& operator=(const ProfiledOp&) = delete;

 private:
  template <class... Inputs>
  static void begin(Op op, const Inputs&... inputs) {
    if constexpr (sizeof...(Inputs) == 1 && (std::is_same_v<Inputs, std::vector<Tensor>> && ...))
      profiling::begin_op(op, ProfiledKind::forward, inputs...);
    else
      profiling::begin_op(op, ProfiledKind::forward, {&inputs...});
  }
  bool open_ = false;
};

// A hook whose name and inputs are worked out only when recording: `describe` returns a ProfiledName. The
// engine's per-node backward hook and the optimizer's step use it.
struct ProfiledName {
  std::string name;
  std::string inputs;
};

class ProfiledRange {
 public:
  template <class Describe>
  ProfiledRange(ProfiledKind kind, std::optional<Op> op, Describe describe) {
    if (!profiling::active.load(std::memory_order_relaxed)) [[likely]]
      return;
    open_ = true;
    const ProfiledName named = describe();
    profiling::begin_named(named.name, kind, op, named.inputs);
  }
  ~ProfiledRange() {
    if (open_) [[unlikely]]
      profiling::end();
  }
  ProfiledRange(const ProfiledRange&) = delete;
  ProfiledRange& operator=(const ProfiledRange&) = delete;

 private:
  bool open_ = false;
};

// Storage allocation's hook (autograd/allocator.cpp): times its scope as allocation or release.
class ProfiledStorage {
 public:
  explicit ProfiledStorage(bool release) : release_(release) {
    if (profiling::active.load(std::memory_order_relaxed)) [[unlikely]]
      start_ = profiling::now_ns();
  }
  ~ProfiledStorage() {
    if (start_ >= 0) [[unlikely]]
      profiling::note_storage(release_, profiling::now_ns() - start_);
  }
  ProfiledStorage(const ProfiledStorage&) = delete;
  ProfiledStorage& operator=(const ProfiledStorage&) = delete;

 private:
  bool release_;
  int64_t start_ = -1;
};

}  // namespace gradformer

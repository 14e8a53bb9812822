// The loop under every elementwise kernel: walks N operands that share one iteration shape, each with its own
// element strides (0 where an operand is broadcast or reduced over), and hands the body one innermost run at a
// time. Adjacent dimensions that are contiguous in every operand are merged first, so contiguous tensors become
// one long run that the compiler vectorises. Runs are split across OpenMP threads when the work is large and
// the caller says writes cannot collide (not for reductions, whose output stride is 0 along the reduced axes).
#pragma once

#include <omp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace gradformer {

// Below these many elements a kernel stays on one thread: waking the OpenMP team (a fork and a join: microseconds
// on idle cores, far more once the cores are shared and a team member waits for its time slice) costs more
// than it saves. A loop that computes an exp, a sqrt or a division per element pays for it sooner than one that
// only moves a few bytes per element (copies, fills, adds, the elementwise maps), which takes kMemoryBoundGrain.
inline constexpr int64_t kParallelGrain = 1 << 15;
inline constexpr int64_t kMemoryBoundGrain = 1 << 17;

// f(i) for every i in [0, count): on the OpenMP team when `work` (the elements the loop touches) reaches `grain`
// and there is more than one thread, else as a plain loop. A branch rather than an `if` clause, which still
// enters the OpenMP runtime to start a team of one.
template <class F>
void parallel_for(int64_t count, int64_t work, int64_t grain, F&& f) {
  if (count > 1 && work >= grain && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) f(i);
  } else {
    for (int64_t i = 0; i < count; ++i) f(i);
  }
}

template <size_t N>
struct StridedLayout {
  std::vector<int64_t> shape;
  std::array<std::vector<int64_t>, N> strides;  // in elements

  // Merges dimension d into d+1 wherever all operands allow it and drops size-1 dimensions.
  void coalesce() {
    std::vector<int64_t> new_shape;
    std::array<std::vector<int64_t>, N> new_strides;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      if (!new_shape.empty()) {
        bool mergeable = true;
        for (size_t k = 0; k < N; ++k)
          mergeable = mergeable && new_strides[k].back() == strides[k][d] * shape[d];
        if (mergeable) {
          new_shape.back() *= shape[d];
          for (size_t k = 0; k < N; ++k) new_strides[k].back() = strides[k][d];
          continue;
        }
      }
      new_shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) new_strides[k].push_back(strides[k][d]);
    }
    shape = std::move(new_shape);
    strides = std::move(new_strides);
  }
};

// body(std::array<std::byte*, N> row_starts, int64_t run_length, const std::array<int64_t, N>& run_strides)
// with strides in elements; element_sizes converts them to bytes.
template <size_t N, class Body>
void for_each_run(StridedLayout<N> layout, std::array<std::byte*, N> base, std::array<size_t, N> element_sizes,
                  bool allow_parallel, Body&& body) {
  layout.coalesce();
  const size_t rank = layout.shape.size();
  if (rank == 0) {  // a single element
    body(base, int64_t{1}, std::array<int64_t, N>{});
    return;
  }
  const int64_t run = layout.shape[rank - 1];
  std::array<int64_t, N> run_strides;
  for (size_t k = 0; k < N; ++k) run_strides[k] = layout.strides[k][rank - 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d) rows *= layout.shape[d];

  auto row_start = [&](int64_t row) {
    std::array<std::byte*, N> ptrs = base;
    for (size_t d = rank - 1; d-- > 0;) {
      const int64_t i = row % layout.shape[d];
      row /= layout.shape[d];
      for (size_t k = 0; k < N; ++k)
        ptrs[k] += i * layout.strides[k][d] * static_cast<int64_t>(element_sizes[k]);
    }
    return ptrs;
  };

  const bool parallel = allow_parallel && rows * run >= kMemoryBoundGrain && omp_get_max_threads() > 1;
  if (!parallel) {
    for (int64_t row = 0; row < rows; ++row) body(row_start(row), run, run_strides);
    return;
  }
  if (rows == 1) {  // one long run: cut it into chunks
    const int64_t chunk = kMemoryBoundGrain / 2;
    const int64_t chunks = (run + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      std::array<std::byte*, N> ptrs = base;
      for (size_t k = 0; k < N; ++k)
        ptrs[k] += c * chunk * run_strides[k] * static_cast<int64_t>(element_sizes[k]);
      body(ptrs, std::min(chunk, run - c * chunk), run_strides);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) body(row_start(row), run, run_strides);
}

}  // namespace gradformer

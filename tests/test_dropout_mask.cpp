// The counter-based dropout mask (ops/dropout_mask.h) on its own: its words against splitmix64 reached another
// way (Generator's seeding), the same mask for one and two threads, the realised rate, replay from a saved
// generator state, and one generator word per call whatever the size. The ops that use it are tested in
// test_normalization.cpp (dropout) and test_attention.cpp (attention dropout).
#include "ops/dropout_mask.h"

#include "autograd/strided.h"
#include "ops/threads.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

using gradformer::Generator;
using gradformer::kParallelGrain;
using gradformer::kernels::DropoutMask;

namespace {

// The scale of every element: the mask applied to ones.
template <class T>
std::vector<T> scales(const DropoutMask& mask, int64_t count) {
  const std::vector<T> ones(static_cast<size_t>(count), T(1));
  std::vector<T> out(static_cast<size_t>(count));
  mask.apply(ones.data(), out.data(), count);
  return out;
}

// Sets the kernels' thread count while it lives.
class Threads {
 public:
  explicit Threads(int n) { gradformer::set_num_threads(n); }
  ~Threads() { gradformer::set_num_threads(previous_); }
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;

 private:
  int previous_ = gradformer::num_threads();
};

}  // namespace

TEST_CASE("dropout mask: word c is splitmix64's output at key + (c + 1) · gamma, chunks below the threshold drop") {
  // Generator(seed) fills its four state words with splitmix64 started at seed: the same words, computed by
  // Generator's seeding, as the mask's first four with key = seed.
  const uint64_t key = 0x0123456789abcdefULL;
  const auto words = Generator(key).state().words;
  const double p = 0.5;
  const std::vector<double> got = scales<double>({.p = p, .key = key}, 16);
  for (int64_t j = 0; j < 16; ++j) {
    CAPTURE(j);
    const uint64_t chunk = (words[static_cast<size_t>(j / 4)] >> (16 * (j % 4))) & 0xFFFFu;
    CHECK(got[static_cast<size_t>(j)] == (chunk >= 32768 ? 2.0 : 0.0));
  }
}

TEST_CASE("dropout mask: the same for one and two threads, and for a prefix, on a size above the parallel grain") {
  // Odd-sized, so the last word is cut, and over several chunks of the parallel loop.
  const int64_t count = 3 * kParallelGrain + 7;
  const DropoutMask mask{.p = 0.25, .key = 99};
  std::vector<float> one_thread, two_threads;
  {
    const Threads threads(1);
    one_thread = scales<float>(mask, count);
  }
  {
    const Threads threads(2);
    two_threads = scales<float>(mask, count);
  }
  CHECK(one_thread == two_threads);
  // Element j depends on j alone, not on the count: a shorter mask is a prefix of the longer one.
  const std::vector<float> shorter = scales<float>(mask, 1001);
  CHECK(std::equal(shorter.begin(), shorter.end(), one_thread.begin()));
}

TEST_CASE("dropout mask: the dropped fraction is p within 5 standard deviations, in every chunk position") {
  const int64_t count = int64_t{1} << 20;
  for (double p : {0.1, 0.5, 0.9}) {
    CAPTURE(p);
    Generator gen(3);
    const std::vector<float> got = scales<float>(DropoutMask::draw(p, gen), count);
    // Each of the four 16-bit positions of a word on its own, then all together: a binomial over n elements has
    // standard deviation sqrt(p (1 - p) / n) in its fraction (0.0009 at p = 0.5 for n = 2^18).
    std::vector<int64_t> dropped(4, 0);
    int64_t neither_dropped_nor_scaled = 0;
    for (int64_t j = 0; j < count; ++j) {
      const float v = got[static_cast<size_t>(j)];
      if (v == 0.f)
        ++dropped[static_cast<size_t>(j % 4)];
      else
        neither_dropped_nor_scaled += v != static_cast<float>(1.0 / (1.0 - p));
    }
    CHECK(neither_dropped_nor_scaled == 0);
    int64_t total = 0;
    for (int64_t position = 0; position < 4; ++position) {
      const double n = static_cast<double>(count / 4);
      CHECK(std::abs(static_cast<double>(dropped[static_cast<size_t>(position)]) / n - p) <
            5 * std::sqrt(p * (1 - p) / n));
      total += dropped[static_cast<size_t>(position)];
    }
    const double n = static_cast<double>(count);
    CHECK(std::abs(static_cast<double>(total) / n - p) < 5 * std::sqrt(p * (1 - p) / n));
  }
  // p = 1 drops everything: the threshold 65536 is above every chunk.
  for (float v : scales<float>({.p = 1.0, .key = 5}, 1000)) CHECK(v == 0.f);
}

TEST_CASE("dropout mask: a replayed generator state gives the same mask, a later one another") {
  Generator gen(8);
  const Generator::State saved = gen.state();
  const DropoutMask first = DropoutMask::draw(0.3, gen);
  const DropoutMask second = DropoutMask::draw(0.3, gen);
  Generator replay(0);
  replay.set_state(saved);
  const DropoutMask replayed = DropoutMask::draw(0.3, replay);
  CHECK(scales<double>(replayed, 5000) == scales<double>(first, 5000));
  CHECK(scales<double>(second, 5000) != scales<double>(first, 5000));
}

TEST_CASE("dropout mask: a call takes one generator word whatever the size") {
  for (int64_t count : {int64_t{1}, int64_t{4}, int64_t{1000}, 2 * kParallelGrain + 3}) {
    CAPTURE(count);
    Generator gen(21), one_word(21);
    scales<float>(DropoutMask::draw(0.1, gen), count);
    one_word.next_u64();
    CHECK(gen.state() == one_word.state());
  }
}

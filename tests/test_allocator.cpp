#include "autograd/allocator.h"
#include "autograd/tensor.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

using namespace gradformer;

namespace {

// Restores the caching switch a test changes (the environment may have turned caching off for the whole run).
class CachingSwitch {
 public:
  explicit CachingSwitch(bool enabled) : previous_(storage_caching_enabled()) { set_storage_caching(enabled); }
  ~CachingSwitch() { set_storage_caching(previous_); }
  CachingSwitch(const CachingSwitch&) = delete;
  CachingSwitch& operator=(const CachingSwitch&) = delete;

 private:
  bool previous_;
};

}  // namespace

TEST_CASE("allocator: size classes are 64-byte multiples at most 25% above the request") {
  CHECK(storage_size_class(0) == 64);
  CHECK(storage_size_class(1) == 64);
  CHECK(storage_size_class(65) == 128);
  CHECK(storage_size_class(4096) == 4096);
  CHECK(storage_size_class(4097) == 5120);
  CHECK(storage_size_class(8192) == 8192);
  for (size_t n : {size_t{100}, size_t{5000}, size_t{123457}, size_t{3} << 20, (size_t{1} << 26) + 1}) {
    const size_t capacity = storage_size_class(n);
    CHECK(capacity >= n);
    CHECK(capacity % 64 == 0);
    CHECK(capacity <= std::max<size_t>(64, n + n / 4 + 64));
    CHECK(storage_size_class(capacity) == capacity);
  }
}

TEST_CASE("allocator: a freed block is handed out again to a request of its class") {
  const CachingSwitch caching(true);
  std::byte* first = nullptr;
  {
    const Tensor t = empty({1000, 37});
    first = t.storage()->data();
    std::memset(first, 0x5a, t.storage()->nbytes());
  }
  const StorageCacheStats before = storage_cache_stats();
  CHECK(before.cached_bytes >= storage_size_class(1000 * 37 * 4));
  const Tensor again = empty({37, 1000});  // same byte count, other shape
  CHECK(again.storage()->data() == first);
  CHECK(reinterpret_cast<uintptr_t>(again.storage()->data()) % 64 == 0);
  const StorageCacheStats after = storage_cache_stats();
  CHECK(after.hits == before.hits + 1);
  CHECK(after.misses == before.misses);
  // zeros() still zeroes a reused block
  std::byte* reused = nullptr;
  {
    const Tensor scratch = full({999}, 3.0);
    reused = scratch.storage()->data();
  }
  const Tensor zeroed = zeros({999});
  CHECK(zeroed.storage()->data() == reused);
  for (float v : zeroed.to_vector<float>()) CHECK(v == 0.0f);
}

TEST_CASE("allocator: live plus cached bytes never exceed the peak of live bytes") {
  const CachingSwitch caching(true);
  empty_storage_cache();
  {
    const Tensor big = empty({1 << 20});
  }
  CHECK(storage_cache_stats().cached_bytes >= (size_t{4} << 20));
  // A request of another class while the big block sits in the cache: the cache gives blocks back rather than
  // let the footprint pass the peak.
  std::vector<Tensor> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(empty({(1 << 19) + 4096 * i}));
    const StorageCacheStats stats = storage_cache_stats();
    CHECK(stats.live_bytes + stats.cached_bytes <= stats.peak_bytes);
  }
  held.clear();
  const StorageCacheStats stats = storage_cache_stats();
  CHECK(stats.live_bytes + stats.cached_bytes <= stats.peak_bytes);
}

TEST_CASE("allocator: empty_storage_cache gives every cached block back") {
  const CachingSwitch caching(true);
  {
    const Tensor a = empty({4096}), b = empty({77});
  }
  CHECK(storage_cache_stats().cached_bytes > 0);
  const size_t live = storage_cache_stats().live_bytes;
  empty_storage_cache();
  CHECK(storage_cache_stats().cached_bytes == 0);
  CHECK(storage_cache_stats().live_bytes == live);
  const int64_t misses = storage_cache_stats().misses;
  const Tensor c = empty({4096});
  CHECK(storage_cache_stats().misses == misses + 1);
}

TEST_CASE("allocator: with caching off every free is a real free") {
  const CachingSwitch caching(false);
  CHECK_FALSE(storage_caching_enabled());
  CHECK(storage_cache_stats().cached_bytes == 0);
  const int64_t hits = storage_cache_stats().hits;
  for (int i = 0; i < 3; ++i) {
    const Tensor t = empty({512, 3});
  }
  CHECK(storage_cache_stats().cached_bytes == 0);
  CHECK(storage_cache_stats().hits == hits);
}

TEST_CASE("allocator: threads allocating and freeing at once keep the books straight") {
  const CachingSwitch caching(true);
  const size_t live_before = storage_cache_stats().live_bytes;
  std::atomic<int> shared_blocks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &shared_blocks] {
      for (int i = 0; i < 2000; ++i) {
        const int64_t n = 16 + (i * 37 + t * 101) % 3000;
        const Tensor a = full({n}, static_cast<double>(t));
        const Tensor b = empty({n / 2 + 1});
        // a block is never handed to two owners at once: this thread's values stay its own
        if (a.at({n - 1}) != static_cast<double>(t) || a.storage()->data() == b.storage()->data()) ++shared_blocks;
      }
    });
  for (std::thread& thread : threads) thread.join();
  CHECK(shared_blocks == 0);
  const StorageCacheStats stats = storage_cache_stats();
  CHECK(stats.live_bytes == live_before);
  CHECK(stats.live_bytes + stats.cached_bytes <= stats.peak_bytes);
}

// The caching allocator: free lists keyed by size class under one mutex; the system's memory behind them
// (aligned_alloc and free, or mmap and munmap for large blocks), called outside the lock.
#include "autograd/allocator.h"

#include "autograd/error.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <string_view>
#include <vector>

namespace gradformer {
namespace {

constexpr size_t kAlignment = 64;

// While caching, blocks from this size on are mapped from the kernel (mmap) and unmapped when given back. From
// malloc, glibc would serve them from its heap once its mmap threshold has risen past them (it rises to the
// largest block freed, up to 32 MiB), and the holes that blocks given back leave there stay resident: 52 of the
// 318 MB resident after the small bench config's training steps in bf16. A page-aligned mapping meets
// kAlignment. Without caching every block comes from malloc, which AddressSanitizer and heap profilers watch.
constexpr size_t kMappedFrom = size_t{1} << 20;

// The cache's bound is the peak of live bytes plus this share of it. Held to the peak itself, blocks needed again
// later in a step were given back and mapped afresh: 39 of the 577 requests of every small bf16 training step
// missed, each a mapping to page in; an eighth more let every request of a step after the second hit.
constexpr size_t kSlackDivisor = 8;

StorageBlock system_allocate(size_t capacity, bool map) {
  if (!map) return {static_cast<std::byte*>(std::aligned_alloc(kAlignment, capacity)), capacity, false};
  void* data = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return {data == MAP_FAILED ? nullptr : static_cast<std::byte*>(data), capacity, true};
}

void system_free(const StorageBlock& block) {
  if (block.mapped)
    munmap(block.data, block.capacity);
  else
    std::free(block.data);
}

bool caching_from_environment() {
  const char* value = std::getenv("GRADFORMER_CACHING_ALLOCATOR");
  if (value == nullptr || std::string_view(value) == "1") return true;
  if (std::string_view(value) == "0") return false;
  fail<ValueError>("GRADFORMER_CACHING_ALLOCATOR", "expected 0 (caching off) or 1 (on), got '{}'", value);
}

class StorageCache {
 public:
  // Never destroyed: tensors with static storage duration may be freed after every static destructor has run.
  static StorageCache& instance() {
    static StorageCache* cache = new StorageCache(caching_from_environment());
    return *cache;
  }

  StorageBlock allocate(size_t nbytes) {
    const size_t capacity = storage_size_class(nbytes);
    std::vector<StorageBlock> evicted;
    bool map = false;
    {
      const std::lock_guard lock(mutex_);
      map = enabled_ && capacity >= kMappedFrom;
      stats_.live_bytes += capacity;
      stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.live_bytes);
      if (auto it = free_lists_.find(capacity); it != free_lists_.end()) {
        const StorageBlock block = it->second.back();
        it->second.pop_back();
        if (it->second.empty()) free_lists_.erase(it);
        stats_.cached_bytes -= capacity;
        ++stats_.hits;
        return block;
      }
      ++stats_.misses;
      // Keep live + cached within the bound: give back the largest cached blocks first.
      while (stats_.live_bytes + stats_.cached_bytes > stats_.peak_bytes + stats_.peak_bytes / kSlackDivisor) {
        auto largest = std::prev(free_lists_.end());
        evicted.push_back(largest->second.back());
        largest->second.pop_back();
        stats_.cached_bytes -= largest->first;
        if (largest->second.empty()) free_lists_.erase(largest);
      }
    }
    for (const StorageBlock& block : evicted) system_free(block);
    const StorageBlock block = system_allocate(capacity, map);
    if (block.data == nullptr) {
      const std::lock_guard lock(mutex_);
      stats_.live_bytes -= capacity;
      throw std::bad_alloc();
    }
    return block;
  }

  void release(StorageBlock block) {
    {
      const std::lock_guard lock(mutex_);
      stats_.live_bytes -= block.capacity;
      if (enabled_) {
        free_lists_[block.capacity].push_back(block);
        stats_.cached_bytes += block.capacity;
        return;
      }
    }
    system_free(block);
  }

  void empty() {
    std::map<size_t, std::vector<StorageBlock>> lists;
    {
      const std::lock_guard lock(mutex_);
      lists.swap(free_lists_);
      stats_.cached_bytes = 0;
    }
    for (auto& [capacity, blocks] : lists)
      for (const StorageBlock& block : blocks) system_free(block);
  }

  void set_enabled(bool enabled) {
    {
      const std::lock_guard lock(mutex_);
      enabled_ = enabled;
    }
    if (!enabled) empty();
  }

  bool enabled() {
    const std::lock_guard lock(mutex_);
    return enabled_;
  }

  StorageCacheStats stats() {
    const std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
  explicit StorageCache(bool enabled) : enabled_(enabled) {}

  std::mutex mutex_;
  bool enabled_;
  std::map<size_t, std::vector<StorageBlock>> free_lists_;  // ordered, so the largest blocks are evicted first
  StorageCacheStats stats_;
};

}  // namespace

size_t storage_size_class(size_t nbytes) {
  const size_t n = std::max<size_t>(nbytes, 1);
  if (n <= 4096) return (n + kAlignment - 1) / kAlignment * kAlignment;
  // Past a quarter of the address space no class is needed: aligned_alloc fails on such sizes anyway.
  if (n > std::numeric_limits<size_t>::max() / 4) return n;
  const size_t step = std::bit_floor(n) / 4;  // four classes per power of two
  return (n + step - 1) / step * step;
}

StorageBlock allocate_storage(size_t nbytes) { return StorageCache::instance().allocate(nbytes); }
void release_storage(StorageBlock block) { StorageCache::instance().release(block); }
void empty_storage_cache() { StorageCache::instance().empty(); }
void set_storage_caching(bool enabled) { StorageCache::instance().set_enabled(enabled); }
bool storage_caching_enabled() { return StorageCache::instance().enabled(); }
StorageCacheStats storage_cache_stats() { return StorageCache::instance().stats(); }

}  // namespace gradformer

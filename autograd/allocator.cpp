// The caching allocator: free lists keyed by size class under one mutex; the system's aligned_alloc and free
// behind them, called outside the lock.
#include "autograd/allocator.h"

#include "autograd/error.h"

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
    std::vector<std::byte*> evicted;
    {
      const std::lock_guard lock(mutex_);
      stats_.live_bytes += capacity;
      stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.live_bytes);
      if (auto it = free_lists_.find(capacity); it != free_lists_.end()) {
        std::byte* data = it->second.back();
        it->second.pop_back();
        if (it->second.empty()) free_lists_.erase(it);
        stats_.cached_bytes -= capacity;
        ++stats_.hits;
        return {data, capacity};
      }
      ++stats_.misses;
      // Keep live + cached within the peak: give back the largest cached blocks first.
      while (stats_.live_bytes + stats_.cached_bytes > stats_.peak_bytes) {
        auto largest = std::prev(free_lists_.end());
        evicted.push_back(largest->second.back());
        largest->second.pop_back();
        stats_.cached_bytes -= largest->first;
        if (largest->second.empty()) free_lists_.erase(largest);
      }
    }
    for (std::byte* block : evicted) std::free(block);
    auto* data = static_cast<std::byte*>(std::aligned_alloc(kAlignment, capacity));
    if (data == nullptr) {
      const std::lock_guard lock(mutex_);
      stats_.live_bytes -= capacity;
      throw std::bad_alloc();
    }
    return {data, capacity};
  }

  void release(StorageBlock block) noexcept {
    {
      const std::lock_guard lock(mutex_);
      stats_.live_bytes -= block.capacity;
      if (enabled_) {
        // A free list's growth may fail when memory is exhausted, which is when blocks are freed while a
        // std::bad_alloc unwinds: such a block is given back instead of cached.
        try {
          free_lists_[block.capacity].push_back(block.data);
          stats_.cached_bytes += block.capacity;
          return;
        } catch (const std::bad_alloc&) {
        }
      }
    }
    std::free(block.data);
  }

  void empty() {
    std::map<size_t, std::vector<std::byte*>> lists;
    {
      const std::lock_guard lock(mutex_);
      lists.swap(free_lists_);
      stats_.cached_bytes = 0;
    }
    for (auto& [capacity, blocks] : lists)
      for (std::byte* block : blocks) std::free(block);
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
  std::map<size_t, std::vector<std::byte*>> free_lists_;  // ordered, so the largest blocks are evicted first
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
// Never throws (StorageCache::release is noexcept): it runs in Storage's destructor, also while a std::bad_alloc
// unwinds through a model's constructor.
void release_storage(StorageBlock block) { StorageCache::instance().release(block); }
void empty_storage_cache() { StorageCache::instance().empty(); }
void set_storage_caching(bool enabled) { StorageCache::instance().set_enabled(enabled); }
bool storage_caching_enabled() { return StorageCache::instance().enabled(); }
StorageCacheStats storage_cache_stats() { return StorageCache::instance().stats(); }

}  // namespace gradformer

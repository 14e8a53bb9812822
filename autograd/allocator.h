// The caching allocator behind tensor storage (Storage in autograd/tensor.h). A training step allocates the same
// activation and gradient buffers every step; handing a freed block back out, instead of returning it to malloc
// (which gives large blocks back to the kernel with munmap and page-faults fresh zeroed pages in on the next
// step), removes that cost. It is not a general allocator: blocks are 64-byte aligned, sized in classes, and only
// Storage uses it.
//
// Freed blocks are kept in free lists, one per size class (a multiple of 64 bytes up to 4 KiB, then four classes
// per power of two, so a block is at most 25% larger than asked for), and a request takes a block of exactly its
// class. The cache is bounded: live plus cached bytes never exceed the highest live total seen so far (the
// training step's own peak), so caching never raises the peak footprint; blocks that would break the bound go
// back to the system, largest first. Thread-safe (one mutex).
//
// Like torch.cuda.empty_cache(), empty_storage_cache() gives every cached block back. The environment variable
// GRADFORMER_CACHING_ALLOCATOR=0 (read once, at the first allocation) turns caching off, so that every free is a
// real free (AddressSanitizer, leak checkers, heap profilers); set_storage_caching(false) does the same at run time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradformer {

struct StorageCacheStats {
  size_t live_bytes = 0;    // in blocks handed out and not yet freed, counted by their class size
  size_t cached_bytes = 0;  // in freed blocks kept for reuse
  size_t peak_bytes = 0;    // the highest live_bytes so far: the bound on live + cached
  int64_t hits = 0;         // requests served from the cache
  int64_t misses = 0;       // requests that went to the system
};

// A block of at least `nbytes` bytes (never null: throws std::bad_alloc) and its class size, which
// release_storage must be given back.
struct StorageBlock {
  std::byte* data = nullptr;
  size_t capacity = 0;
};
StorageBlock allocate_storage(size_t nbytes);
void release_storage(StorageBlock block);

// The class a request of `nbytes` bytes is served from.
size_t storage_size_class(size_t nbytes);

// Gives every cached block back to the system.
void empty_storage_cache();
// Caching on or off; turning it off empties the cache. Starts on unless GRADFORMER_CACHING_ALLOCATOR=0.
void set_storage_caching(bool enabled);
bool storage_caching_enabled();
StorageCacheStats storage_cache_stats();

}  // namespace gradformer

// The caching allocator of page-locked host memory (cudaHostAlloc) behind Tensor::empty_pinned: freed blocks are
// reused once the GPU copies that read them (record_stream) have finished, so steady training allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/tensor/storage.h"

namespace px {

struct PinnedAllocatorStats {
  size_t allocated_bytes = 0;   // in blocks handed out now (rounded sizes)
  size_t reserved_bytes = 0;    // obtained from cudaHostAlloc (allocated + cached + waiting on copies)
  uint64_t num_host_allocs = 0; // cudaHostAlloc calls
};

// Blocks are rounded up to a power of two (at least 512 B) and cached per size; a request takes a cached block of
// its size or calls cudaHostAlloc (portable: any device copies from it). A block freed while a copy queued on a
// stream may still read it (record_stream) is reused only once an event recorded after that copy has completed,
// checked without blocking at the next allocate. Memory is never returned to CUDA except by empty_cache().
// Thread-safe (the prefetch thread allocates, the training thread frees).
class PinnedHostAllocator final : public Allocator {
 public:
  PinnedHostAllocator() = default;
  PinnedHostAllocator(const PinnedHostAllocator&) = delete;
  PinnedHostAllocator& operator=(const PinnedHostAllocator&) = delete;

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;

  // ptr (a live block's start) is read by work just queued on `stream` (a cudaStream_t as void*) of the current
  // device: records an event there now; the block is not reused before the event completes.
  void record_stream(void* ptr, void* stream);
  // cudaFreeHost of every cached block whose copies have completed (cudaFreeHost may synchronise the device).
  void empty_cache();
  PinnedAllocatorStats stats() const;

  static size_t round_size(size_t bytes);

 private:
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;
    std::vector<void*> events;  // cudaEvent_t's of copies that read the block
  };

  void process_pending_locked();

  mutable std::mutex mu_;
  std::multimap<size_t, Block*> free_;
  std::unordered_map<void*, Block*> live_;
  std::vector<Block*> pending_;  // freed, waiting on events
  PinnedAllocatorStats stats_;
};

// The process-wide instance (never destroyed, like the device allocator).
PinnedHostAllocator& pinned_host_allocator();

}  // namespace px

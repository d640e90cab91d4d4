// The caching, stream-ordered CUDA allocator behind every device Storage: freed blocks go back to a
// per-(device, stream) pool and are reused by later work on that stream without synchronising.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/tensor/storage.h"

namespace px {

struct CudaAllocatorStats {
  size_t allocated_bytes = 0;       // in blocks handed out now (rounded sizes)
  size_t reserved_bytes = 0;        // obtained from cudaMalloc and not yet returned (allocated + cached)
  size_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes
  uint64_t num_mallocs = 0;         // cudaMalloc calls
  uint64_t num_cache_flushes = 0;   // empty_cache() runs, including OOM retries
};

// Blocks are rounded up to 512 B and cached in size-ordered free lists per (device, stream); a request
// takes the smallest cached block that fits and is at most 1/8 larger (blocks are never split), else
// cudaMalloc. On cudaMalloc OOM the cache is emptied and the call retried once; a second failure is fatal
// with the stats. A block freed while other streams still use it (record_stream) becomes reusable only
// once events recorded on those streams complete. Thread-safe.
class CudaCachingAllocator final : public Allocator {
 public:
  CudaCachingAllocator() = default;
  CudaCachingAllocator(const CudaCachingAllocator&) = delete;
  CudaCachingAllocator& operator=(const CudaCachingAllocator&) = delete;

  // Memory on the current device, ordered on the current stream (current_cuda_stream()).
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;

  // Marks ptr (a live block) as used by `stream` too (a cudaStream_t as void*), so that freeing it
  // waits for that stream's work queued so far.
  void record_stream(void* ptr, void* stream);
  // Returns every cached, unused block to CUDA (cudaFree); blocks in use stay.
  void empty_cache();
  CudaAllocatorStats stats() const;

  static constexpr size_t kRound = 512;
  static size_t round_size(size_t bytes) { return (bytes + kRound - 1) / kRound * kRound; }

 private:
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;
    int device = 0;
    void* stream = nullptr;              // the stream it was allocated on
    std::vector<void*> other_streams;    // from record_stream
    std::vector<void*> pending_events;   // cudaEvent_t's to wait for before reuse
  };
  struct PoolKey {
    int device;
    void* stream;
    bool operator<(const PoolKey& o) const { return device != o.device ? device < o.device : stream < o.stream; }
  };
  using FreeList = std::multimap<size_t, Block*>;

  void* malloc_block_locked(size_t size, int device);
  void free_cached_locked();
  void process_pending_locked();
  void release_block_locked(Block* b);

  mutable std::mutex mu_;
  std::map<PoolKey, FreeList> pools_;
  std::unordered_map<void*, Block*> live_;
  std::vector<Block*> pending_;  // freed, waiting on events
  CudaAllocatorStats stats_;
};

// The process-wide instance (intentionally never destroyed: CUDA may be torn down before static destructors).
CudaCachingAllocator& cuda_caching_allocator();

}  // namespace px

// The caching, stream-ordered CUDA allocator behind every device Storage: freed blocks go back to a
// per-(device, stream) pool and are reused by later work on that stream without synchronising.
#include "core/backend/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include "core/backend/cuda/cuda_backend.h"
#include "core/util/check.h"

namespace px {

namespace {
constexpr size_t kMaxSlackDivisor = 8;  // a cached block may exceed the request by at most 1/8

std::string mib(size_t bytes) { return std::to_string(bytes / (1024.0 * 1024.0)) + " MiB"; }
}  // namespace

CudaCachingAllocator& cuda_caching_allocator() {
  static CudaCachingAllocator* allocator = new CudaCachingAllocator();
  return *allocator;
}

void* CudaCachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  void* stream = current_cuda_stream();

  std::lock_guard<std::mutex> lock(mu_);
  process_pending_locked();
  Block* block = nullptr;
  FreeList& pool = pools_[PoolKey{device, stream}];
  auto it = pool.lower_bound(size);
  if (it != pool.end() && it->first <= size + size / kMaxSlackDivisor) {
    block = it->second;
    pool.erase(it);
  } else {
    block = new Block();
    block->ptr = malloc_block_locked(size, device);
    block->size = size;
    block->device = device;
    block->stream = stream;
  }
  live_[block->ptr] = block;
  stats_.allocated_bytes += block->size;
  if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
  return block->ptr;
}

void* CudaCachingAllocator::malloc_block_locked(size_t size, int device) {
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, size);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the error before retrying
    LOG(WARNING) << "CUDA: cudaMalloc of " << mib(size) << " on cuda:" << device
                 << " failed; emptying the allocator cache (" << mib(stats_.reserved_bytes - stats_.allocated_bytes)
                 << " cached) and retrying";
    CUDA_CHECK(cudaDeviceSynchronize());
    process_pending_locked();
    free_cached_locked();
    err = cudaMalloc(&ptr, size);
  }
  if (err != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    LOG(FATAL) << "CUDA out of memory: cudaMalloc(" << mib(size) << ") on cuda:" << device << " failed with "
               << cuda_error_string(static_cast<int>(err)) << "; allocated " << mib(stats_.allocated_bytes)
               << ", reserved " << mib(stats_.reserved_bytes) << ", device free " << mib(free_b) << " of "
               << mib(total_b);
  }
  stats_.reserved_bytes += size;
  ++stats_.num_mallocs;
  return ptr;
}

void CudaCachingAllocator::deallocate(void* ptr, size_t) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  CHECK(it != live_.end()) << "CudaCachingAllocator: freeing " << ptr << ", which it did not allocate";
  Block* block = it->second;
  live_.erase(it);
  stats_.allocated_bytes -= block->size;
  if (block->other_streams.empty()) {
    release_block_locked(block);
    return;
  }
  // Used on other streams: reuse only after the work queued there so far has finished.
  int current = 0;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != block->device) CUDA_CHECK(cudaSetDevice(block->device));
  for (void* s : block->other_streams) {
    cudaEvent_t ev;
    CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(ev, static_cast<cudaStream_t>(s)));
    block->pending_events.push_back(ev);
  }
  if (current != block->device) CUDA_CHECK(cudaSetDevice(current));
  block->other_streams.clear();
  pending_.push_back(block);
}

void CudaCachingAllocator::release_block_locked(Block* b) {
  pools_[PoolKey{b->device, b->stream}].emplace(b->size, b);
}

void CudaCachingAllocator::process_pending_locked() {
  for (size_t i = 0; i < pending_.size();) {
    Block* b = pending_[i];
    while (!b->pending_events.empty()) {
      auto ev = static_cast<cudaEvent_t>(b->pending_events.back());
      const cudaError_t q = cudaEventQuery(ev);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();
        break;
      }
      CUDA_CHECK(q);
      CUDA_CHECK(cudaEventDestroy(ev));
      b->pending_events.pop_back();
    }
    if (b->pending_events.empty()) {
      release_block_locked(b);
      pending_[i] = pending_.back();
      pending_.pop_back();
    } else {
      ++i;
    }
  }
}

void CudaCachingAllocator::free_cached_locked() {
  ++stats_.num_cache_flushes;
  for (auto& [key, pool] : pools_) {
    for (auto& [size, block] : pool) {
      CUDA_CHECK(cudaFree(block->ptr));
      stats_.reserved_bytes -= block->size;
      delete block;
    }
    pool.clear();
  }
}

void CudaCachingAllocator::record_stream(void* ptr, void* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  CHECK(it != live_.end()) << "CudaCachingAllocator::record_stream: " << ptr << " is not a live block";
  Block* b = it->second;
  if (stream == b->stream) return;
  for (void* s : b->other_streams)
    if (s == stream) return;
  b->other_streams.push_back(stream);
}

void CudaCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  process_pending_locked();
  free_cached_locked();
}

CudaAllocatorStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace px

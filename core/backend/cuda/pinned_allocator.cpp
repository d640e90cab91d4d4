// The caching allocator of page-locked host memory (cudaHostAlloc) behind Tensor::empty_pinned: freed blocks are
// reused once the GPU copies that read them (record_stream) have finished, so steady training allocates nothing.
#include "core/backend/cuda/pinned_allocator.h"

#include <cuda_runtime.h>

#include <string>

#include "core/util/check.h"

namespace px {

namespace {
constexpr size_t kMinBlock = 512;

// True when every event of b has completed (each completed one is destroyed and dropped).
bool events_done(std::vector<void*>& events) {
  while (!events.empty()) {
    auto ev = static_cast<cudaEvent_t>(events.back());
    const cudaError_t q = cudaEventQuery(ev);
    if (q == cudaErrorNotReady) {
      (void)cudaGetLastError();
      return false;
    }
    CUDA_CHECK(q);
    CUDA_CHECK(cudaEventDestroy(ev));
    events.pop_back();
  }
  return true;
}
}  // namespace

PinnedHostAllocator& pinned_host_allocator() {
  static PinnedHostAllocator* allocator = new PinnedHostAllocator();
  return *allocator;
}

size_t PinnedHostAllocator::round_size(size_t bytes) {
  size_t size = kMinBlock;
  while (size < bytes) size *= 2;
  return size;
}

void* PinnedHostAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  process_pending_locked();
  Block* block = nullptr;
  auto it = free_.find(size);
  if (it != free_.end()) {
    block = it->second;
    free_.erase(it);
  } else {
    void* ptr = nullptr;
    const cudaError_t err = cudaHostAlloc(&ptr, size, cudaHostAllocPortable);
    CHECK(err == cudaSuccess) << "CUDA: cudaHostAlloc of " << size << " bytes of pinned host memory failed ("
                              << cudaGetErrorString(err) << "); " << stats_.reserved_bytes << " bytes pinned so far";
    block = new Block();
    block->ptr = ptr;
    block->size = size;
    stats_.reserved_bytes += size;
    ++stats_.num_host_allocs;
  }
  live_[block->ptr] = block;
  stats_.allocated_bytes += block->size;
  return block->ptr;
}

void PinnedHostAllocator::deallocate(void* ptr, size_t) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  CHECK(it != live_.end()) << "PinnedHostAllocator: freeing " << ptr << ", which it did not allocate";
  Block* block = it->second;
  live_.erase(it);
  stats_.allocated_bytes -= block->size;
  if (events_done(block->events)) free_.emplace(block->size, block);
  else pending_.push_back(block);
}

void PinnedHostAllocator::record_stream(void* ptr, void* stream) {
  cudaEvent_t ev;
  CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(ev, static_cast<cudaStream_t>(stream)));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  CHECK(it != live_.end()) << "PinnedHostAllocator::record_stream: " << ptr << " is not the start of a live block";
  it->second->events.push_back(ev);
}

void PinnedHostAllocator::process_pending_locked() {
  for (size_t i = 0; i < pending_.size();) {
    Block* b = pending_[i];
    if (events_done(b->events)) {
      free_.emplace(b->size, b);
      pending_[i] = pending_.back();
      pending_.pop_back();
    } else {
      ++i;
    }
  }
}

void PinnedHostAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  process_pending_locked();
  for (auto& [size, block] : free_) {
    CUDA_CHECK(cudaFreeHost(block->ptr));
    stats_.reserved_bytes -= block->size;
    delete block;
  }
  free_.clear();
}

PinnedAllocatorStats PinnedHostAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace px

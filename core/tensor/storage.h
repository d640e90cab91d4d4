// Ref-counted buffers from a per-device allocator; the storage also carries the
// version counter that views share and in-place ops bump (autograd checks it).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/tensor/device.h"

namespace px {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

// Host allocator: 64-byte aligned blocks (cache lines, AVX-512 loads).
Allocator& cpu_allocator();

// Registers the allocator used for `type` devices (the CUDA backend registers itself).
void register_allocator(DeviceType type, Allocator* allocator);
Allocator& allocator_for(Device device);

// Page-locked host memory (cudaHostAlloc, cached), which the GPU copies from without the host waiting. The CUDA
// backend registers it when it finds a GPU; until then, and in a build without CUDA, there is none (null).
void register_pinned_allocator(Allocator* allocator);
Allocator* pinned_allocator();

class Storage {
 public:
  Storage(size_t bytes, Device device);
  // Host memory from the pinned allocator when one is registered, else ordinary host memory (pinned() false).
  static std::shared_ptr<Storage> pinned_host(size_t bytes);
  ~Storage();
  Storage(size_t bytes, Allocator& allocator, bool pinned);  // host memory from `allocator`
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // Host memory in page-locked pages (from pinned_allocator()).
  bool pinned() const { return pinned_; }
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  bool pinned_ = false;
  std::atomic<uint64_t> version_{0};
};

}  // namespace px

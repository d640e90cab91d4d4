// Ref-counted buffers from a per-device allocator; the storage also carries the
// version counter that views share and in-place ops bump (autograd checks it).
#include "core/tensor/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/util/check.h"

namespace px {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

Allocator* g_allocators[2] = {&cpu_allocator(), nullptr};
std::atomic<Allocator*> g_pinned_allocator{nullptr};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

void register_allocator(DeviceType type, Allocator* allocator) {
  g_allocators[static_cast<int>(type)] = allocator;
}

Allocator& allocator_for(Device device) {
  Allocator* a = g_allocators[static_cast<int>(device.type)];
  CHECK(a != nullptr) << "no allocator registered for device " << device.str()
                      << " (built without CUDA, or no GPU present)";
  return *a;
}

void register_pinned_allocator(Allocator* allocator) { g_pinned_allocator.store(allocator); }
Allocator* pinned_allocator() { return g_pinned_allocator.load(); }

Storage::Storage(size_t bytes, Allocator& allocator, bool pinned)
    : bytes_(bytes), device_(cpu()), allocator_(&allocator), pinned_(pinned) {
  data_ = allocator_->allocate(bytes);
}

std::shared_ptr<Storage> Storage::pinned_host(size_t bytes) {
  Allocator* pinned = pinned_allocator();
  return pinned != nullptr ? std::make_shared<Storage>(bytes, *pinned, true)
                           : std::make_shared<Storage>(bytes, cpu_allocator(), false);
}

Storage::Storage(size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(bytes);
}

Storage::~Storage() {
  if (data_ != nullptr) allocator_->deallocate(data_, bytes_);
}

}  // namespace px

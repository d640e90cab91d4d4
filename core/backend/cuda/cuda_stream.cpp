// The CUDA side of core/backend/stream.h: the per-device copy stream, events and cross-stream use of memory, as
// void* handles (cudaStream_t, cudaEvent_t) so that this header stays free of CUDA headers.
#include "core/backend/cuda/cuda_stream.h"

#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "core/backend/cuda/caching_allocator.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/pinned_allocator.h"
#include "core/util/check.h"

namespace px {

void* cuda_copy_stream(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t>* streams = new std::vector<cudaStream_t>();  // never destroyed, like the allocator
  CHECK_GE(device, 0) << "cuda_copy_stream: device index";
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<size_t>(device) >= streams->size()) streams->resize(device + 1, nullptr);
  cudaStream_t& s = (*streams)[device];
  if (s == nullptr) {
    CudaDeviceGuard g(cuda(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return s;
}

void* cuda_event_record(void* stream) {
  cudaEvent_t ev;
  CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(ev, static_cast<cudaStream_t>(stream)));
  return ev;
}

void cuda_stream_wait_event(void* stream, void* event) {
  CHECK(event != nullptr) << "cuda_stream_wait_event: no event";
  CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0));
}

void cuda_event_destroy(void* event) {
  if (event != nullptr) CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void cuda_record_stream(const Tensor& t, void* stream) {
  if (!t.defined() || t.storage()->bytes() == 0) return;
  if (t.device().type == DeviceType::cuda) {
    cuda_caching_allocator().record_stream(t.storage()->data(), stream);
  } else if (t.is_pinned()) {
    pinned_host_allocator().record_stream(t.storage()->data(), stream);
  }
}

}  // namespace px

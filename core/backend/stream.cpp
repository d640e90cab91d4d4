// Overlapping host-to-device copies with compute, free of CUDA headers: the per-device copy stream, events that
// order one stream after another on the GPU, and cross-stream use of memory. Every call is a no-op on the host.
#include "core/backend/stream.h"

#include <utility>

#include "core/util/check.h"
#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_stream.h"
#endif

namespace px {

#ifdef PARALLAX_WITH_CUDA

struct CopyStreamGuard::State {
  explicit State(Device device) : device_guard(device), previous_stream(current_cuda_stream()) {
    set_current_cuda_stream(cuda_copy_stream(device.index));
  }
  ~State() { set_current_cuda_stream(previous_stream); }
  CudaDeviceGuard device_guard;
  void* previous_stream;
};

CopyStreamGuard::CopyStreamGuard(Device device) {
  if (device.type == DeviceType::cuda) state_ = std::make_unique<State>(device);
}

StreamEvent StreamEvent::record(Device device) {
  StreamEvent e;
  if (device.type != DeviceType::cuda) return e;
  CudaDeviceGuard g(device);
  e.event_ = cuda_event_record(current_cuda_stream());
  e.device_ = device;
  return e;
}

StreamEvent::~StreamEvent() { cuda_event_destroy(event_); }

void StreamEvent::block_current_stream() const {
  if (event_ == nullptr) return;
  CudaDeviceGuard g(device_);
  cuda_stream_wait_event(current_cuda_stream(), event_);
}

void record_stream_use(const Tensor& t) {
  if (t.defined() && t.device().type == DeviceType::cuda) cuda_record_stream(t, current_cuda_stream());
}

#else  // a build without CUDA: host devices only

struct CopyStreamGuard::State {};

CopyStreamGuard::CopyStreamGuard(Device device) {
  CHECK(device.is_cpu()) << "CopyStreamGuard(" << device.str() << "): built without CUDA";
}

StreamEvent StreamEvent::record(Device device) {
  CHECK(device.is_cpu()) << "StreamEvent::record(" << device.str() << "): built without CUDA";
  return StreamEvent();
}

StreamEvent::~StreamEvent() = default;
void StreamEvent::block_current_stream() const {}
void record_stream_use(const Tensor&) {}

#endif

CopyStreamGuard::~CopyStreamGuard() = default;

StreamEvent::StreamEvent(StreamEvent&& o) noexcept
    : event_(std::exchange(o.event_, nullptr)), device_(o.device_) {}

StreamEvent& StreamEvent::operator=(StreamEvent&& o) noexcept {
  if (this != &o) {
    StreamEvent old(std::move(*this));  // destroys our event
    event_ = std::exchange(o.event_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

}  // namespace px

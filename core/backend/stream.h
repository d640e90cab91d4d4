// Overlapping host-to-device copies with compute, free of CUDA headers: the per-device copy stream, events that
// order one stream after another on the GPU, and cross-stream use of memory. Every call is a no-op on the host.
#pragma once

#include <memory>

#include "core/tensor/tensor.h"

namespace px {

// For its lifetime the calling thread launches on `device`'s copy stream (a non-blocking stream for host-to-device
// copies, one per GPU) with `device` current; tensors it allocates there come from that stream's pool. No-op on
// the host. Restores the previous device and stream.
class CopyStreamGuard {
 public:
  explicit CopyStreamGuard(Device device);
  ~CopyStreamGuard();
  CopyStreamGuard(const CopyStreamGuard&) = delete;
  CopyStreamGuard& operator=(const CopyStreamGuard&) = delete;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A point in one stream's work. Move-only; destroying it is safe while it is pending or waited on.
class StreamEvent {
 public:
  StreamEvent() = default;
  // Recorded now on the calling thread's current stream, on `device`; an empty event for a host device.
  static StreamEvent record(Device device);
  ~StreamEvent();
  StreamEvent(StreamEvent&& o) noexcept;
  StreamEvent& operator=(StreamEvent&& o) noexcept;
  StreamEvent(const StreamEvent&) = delete;
  StreamEvent& operator=(const StreamEvent&) = delete;

  bool empty() const { return event_ == nullptr; }
  // The calling thread's current stream runs its later work only after the recorded work (cudaStreamWaitEvent):
  // the GPU waits, the host does not. No-op for an empty event.
  void block_current_stream() const;

 private:
  void* event_ = nullptr;  // cudaEvent_t
  Device device_;
};

// `t` (any tensor) is used by work queued on the calling thread's current stream: a device tensor allocated on
// another stream is not reused there before that work has finished (the caching allocator's record_stream).
// No-op for host tensors.
void record_stream_use(const Tensor& t);

}  // namespace px

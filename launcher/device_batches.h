// DeviceBatches: a BatchSource that hands the step its batches already on the model's GPU, copied from pinned host
// memory on the device's copy stream by a prefetch thread while earlier steps run; a pass-through on the host.
#pragma once

#include <memory>
#include <optional>

#include "core/backend/stream.h"
#include "core/tensor/device.h"
#include "data/prefetcher.h"
#include "launcher/task.h"

namespace px {

// On a GPU, a background thread takes `inner`'s batches in order and, for each, copies every tensor of
// TaskBatch::device_tensors() to `device` on its copy stream (CopyStreamGuard): from the tensor itself when it is
// contiguous pinned memory, else through a pinned buffer it fills first (a host memcpy; the loaders' own threads
// stay free of CUDA calls, which on a thread without a current device would open a context on GPU 0); then it
// records an event. next() makes the calling thread's current (compute) stream wait for that event on the GPU, marks the
// device tensors as used by that stream (so the copy stream does not reuse their memory before the step's work is
// done) and returns the batch: no host wait when the thread keeps up, no host sync counted. At most `capacity`
// batches are copied ahead. Order, cursors (`after`), the end of the data and the inner source's errors (rethrown
// by next() in order) are the inner source's.
// On the host the batches pass through: next() is inner->next(), no thread, no copies.
class DeviceBatches final : public BatchSource {
 public:
  DeviceBatches(std::unique_ptr<BatchSource> inner, Device device, int capacity = 2);
  ~DeviceBatches() override;
  DeviceBatches(const DeviceBatches&) = delete;
  DeviceBatches& operator=(const DeviceBatches&) = delete;

  std::unique_ptr<TaskBatch> next() override;

 private:
  struct Staged {
    std::unique_ptr<TaskBatch> batch;  // its device_tensors() on device_, written by copies queued before `copied`
    StreamEvent copied;
  };
  // On the prefetch thread: the inner source's next batch, its copies queued; nullopt at the end of the data.
  std::optional<Staged> stage();

  std::unique_ptr<BatchSource> inner_;
  Device device_;
  std::unique_ptr<data::Prefetcher<Staged>> prefetcher_;  // null on the host; last: joined before inner_ goes
};

}  // namespace px

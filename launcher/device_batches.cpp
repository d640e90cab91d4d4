// DeviceBatches: a BatchSource that hands the step its batches already on the model's GPU, copied from pinned host
// memory on the device's copy stream by a prefetch thread while earlier steps run; a pass-through on the host.
#include "launcher/device_batches.h"

#include <cstring>
#include <utility>

#include "core/backend/backend.h"
#include "core/util/check.h"

namespace px {

DeviceBatches::DeviceBatches(std::unique_ptr<BatchSource> inner, Device device, int capacity)
    : inner_(std::move(inner)), device_(device) {
  CHECK(inner_ != nullptr) << "DeviceBatches: no batch source";
  if (device_.is_cpu()) return;
  prefetcher_ = std::make_unique<data::Prefetcher<Staged>>([this] { return stage(); }, capacity);
}

DeviceBatches::~DeviceBatches() {
  prefetcher_.reset();  // joins the thread (a stage() in progress finishes) while inner_ still exists
}

std::optional<DeviceBatches::Staged> DeviceBatches::stage() {
  // Every CUDA call here (pinned and device allocations, copies, events; the inner source's own, if any) runs with
  // device_ current: on a thread without a current device CUDA would open a context on GPU 0.
  CopyStreamGuard on_copy_stream(device_);
  std::unique_ptr<TaskBatch> batch = inner_->next();
  if (!batch) return std::nullopt;
  for (Tensor* t : batch->device_tensors()) {
    CHECK(t != nullptr && t->defined() && t->device().is_cpu())
        << "DeviceBatches: a batch tensor to copy to " << device_.str() << " must be a host tensor, got "
        << (t != nullptr ? t->str() : "null");
    Tensor pinned = *t;
    if (!pinned.is_pinned() || !pinned.is_contiguous()) {  // stage through page-locked memory
      pinned = Tensor::empty_pinned(t->shape(), t->dtype());
      if (!t->is_contiguous()) backend_for(cpu()).copy(*t, pinned);
      else if (t->numel() > 0) std::memcpy(pinned.raw_data(), t->raw_data(), t->numel() * dtype_size(t->dtype()));
    }
    Tensor on_device = Tensor::empty(t->shape(), t->dtype(), device_);  // from the copy stream's pool
    backend_for(device_).copy(pinned, on_device);  // queued on the copy stream; the host does not wait
    *t = on_device;
  }
  return Staged{std::move(batch), StreamEvent::record(device_)};
}

std::unique_ptr<TaskBatch> DeviceBatches::next() {
  if (!prefetcher_) return inner_->next();
  std::optional<Staged> staged = prefetcher_->next();
  if (!staged) return nullptr;
  staged->copied.block_current_stream();
  for (Tensor* t : staged->batch->device_tensors()) record_stream_use(*t);
  return std::move(staged->batch);
}

}  // namespace px

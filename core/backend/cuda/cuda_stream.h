// The CUDA side of core/backend/stream.h: the per-device copy stream, events and cross-stream use of memory, as
// void* handles (cudaStream_t, cudaEvent_t) so that this header stays free of CUDA headers.
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// A non-blocking stream of GPU `device` for host-to-device copies, created on first use and never destroyed
// (blocks its copies allocated stay in the caching allocator's pool of that stream, valid for the process).
void* cuda_copy_stream(int device);
// A new event (no timing) recorded now on `stream` of the current device.
void* cuda_event_record(void* stream);
// `stream` waits on the GPU for `event` (work queued before the event's record); the host does not block.
void cuda_stream_wait_event(void* stream, void* event);
// Destroys an event; its resources go once it has completed (waits already queued on it keep their meaning).
void cuda_event_destroy(void* event);
// Marks t's memory as used by `stream`: a device tensor's block (caching allocator) is not reused by its own stream
// before the work queued on `stream` so far has finished; a pinned host tensor's block (pinned allocator) is not
// reused before the work just queued on `stream` has read it. A no-op for ordinary host tensors and empty storage.
void cuda_record_stream(const Tensor& t, void* stream);

}  // namespace px

// GradBucketer: data-parallel gradient all-reduce in buckets, started from the autograd grad-ready hooks
// while backward is still running, in reverse parameter order (the order backward produces gradients).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "parallel/comm/process_group.h"

namespace px::parallel {

struct GradBucketerOptions {
  int64_t bucket_bytes = 25 * 1024 * 1024;  // a bucket is launched once it holds this much (or at the end)
  ReduceOp op = ReduceOp::sum;  // sum: the loss is already divided by the global count; avg: per-rank means
  bool overlap = true;  // false: nothing starts until finish() (the benchmark's "overlap off")
  // The dtype gradients are all-reduced in (parallel.grad_dtype: bf16 halves the bytes); unset: the gradients' own
  // (f32 for bf16/f16 parameters, whose gradients accumulate in f32).
  std::optional<DType> wire_dtype;
};

// Buckets are formed once, from `params` in reverse order, each a contiguous flat buffer of one wire dtype and
// device of at most bucket_bytes (a larger parameter gets a bucket of its own). When every gradient of a
// bucket is ready (its hooks fired) during an enabled backward, the gradients are copied into the buffer
// and its all_reduce starts at once; finish() launches whatever is left, waits for all, and copies the
// reduced values back into each param.grad. A parameter that got no gradient in this backward contributes
// zeros (and gets a zero gradient), so every rank launches the same buckets in the same order.
//
// Gradient accumulation: set_sync(false) for every micro-batch but the last; hooks then do nothing and
// gradients accumulate locally; set_sync(true) before the last backward, then finish().
class GradBucketer {
 public:
  GradBucketer(const std::vector<Tensor>& params, ProcessGroup& dp, GradBucketerOptions options = {});
  ~GradBucketer();
  GradBucketer(const GradBucketer&) = delete;
  GradBucketer& operator=(const GradBucketer&) = delete;

  void set_sync(bool sync) { sync_ = sync; }
  bool sync() const { return sync_; }
  // Launches the buckets not yet started, waits for every all-reduce (Work::wait_on_stream: on NCCL the current
  // stream waits for it and the host goes on; elsewhere the host waits, CommError past the deadline) and writes
  // the results into the gradients (ordered on the current stream). Call after the synchronised backward, before
  // clipping/stepping.
  void finish();

  int num_buckets() const;
  // Seconds finish() spent waiting for communication in the last step (the exposed communication time; on
  // NCCL only the host's share, about 0: the GPU waits instead).
  double last_wait_seconds() const { return last_wait_seconds_; }

 private:
  struct Bucket;
  void on_grad_ready(size_t bucket, size_t slot);
  void launch(Bucket& bucket);

  ProcessGroup* dp_;
  GradBucketerOptions options_;
  bool sync_ = true;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  double last_wait_seconds_ = 0;
};

}  // namespace px::parallel

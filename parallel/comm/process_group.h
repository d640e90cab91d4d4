// ProcessGroup: the collective interface both backends implement (MPI for host tensors, NCCL for GPU
// tensors), the Work handle every call returns, CommError, and LocalProcessGroup (a world of one).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"
#include "core/util/error.h"

namespace px::parallel {

// A collective failed or did not complete before its deadline. what() is one line naming the group, the
// collective (name and sequence number) and the ranks that did not arrive.
class CommError : public Error {
 public:
  using Error::Error;
};

// avg is sum / size (integer tensors: refused with a CHECK, as in NCCL).
enum class ReduceOp : uint8_t { sum, avg, max };
const char* reduce_op_name(ReduceOp op);

// The handle of one collective in flight. Tensors passed to the collective must stay alive and untouched
// until wait() returns (or is_completed() says true).
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the collective is complete: host tensors hold the result; GPU tensors are ordered before
  // later work on the caller's current stream. Past the group's deadline (counted from when the collective
  // was issued) it throws CommError naming group, op and the ranks that did not arrive.
  virtual void wait() = 0;
  // Non-blocking: true once complete (after which wait() returns at once); throws as wait() on failure.
  virtual bool is_completed() = 0;
  // Orders the collective before later work on the caller's current stream without blocking the host where the
  // backend can (NCCL: the current stream waits on the collective's completion event; its deadline is then
  // watched by the group, which aborts the communicator on expiry and throws from the group's next call). Host
  // tensors, and the backends that finish on the host (MPI, a group of one): wait().
  virtual void wait_on_stream() { wait(); }
};

struct GroupOptions {
  std::chrono::milliseconds timeout{10 * 60 * 1000};  // per collective, from issue to completion
};

// Group ranks are 0..size-1; world_ranks()[r] is group rank r's rank in the world. Every member must issue
// the same collectives in the same order (sequence numbers count them per group).
// Tensors: contiguous, on the backend's device kind; dtypes f32, f64, bf16, f16, i32, i64, u8 (u8/bool
// only for gather/broadcast).
class ProcessGroup {
 public:
  ProcessGroup(std::string name, int rank, std::vector<int> world_ranks, GroupOptions options);
  virtual ~ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  const std::string& name() const { return name_; }  // "world", "dp", "tp", ... for messages
  int rank() const { return rank_; }
  int size() const { return static_cast<int>(world_ranks_.size()); }
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  const GroupOptions& options() const { return options_; }
  // Groups made of other groups (DeviceRoutedProcessGroup) pass it on.
  virtual void set_timeout(std::chrono::milliseconds timeout) { options_.timeout = timeout; }

  // t = op over ranks of t, in place. t (n)
  virtual std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) = 0;
  // out = concat over ranks of in, along dim 0. in (n, ...), out (size * n, ...)
  virtual std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) = 0;
  // out = op over ranks of in[rank * n : (rank + 1) * n] along dim 0. in (size * n, ...), out (n, ...)
  virtual std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  // t = root's t. t (...)
  virtual std::shared_ptr<Work> broadcast(const Tensor& t, int root) = 0;
  virtual std::shared_ptr<Work> barrier() = 0;

  // A subgroup: members with the same color form one group, ordered by key then by this group's rank.
  // Collective over this group (every member calls it).
  virtual std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) = 0;
  // split() for a group that runs beside `control`, a group over the same ranks that the caller has just split
  // with the same color and key (a DeviceRoutedProcessGroup's host group): NCCL makes `control` the new group's
  // control group (ids, arrival reports), which must outlive it. Default: split(). Collective.
  virtual std::unique_ptr<ProcessGroup> split_with_control(int color, int key, const std::string& name,
                                                           ProcessGroup& control);
  // Throws CommError when a collective of this group failed where no caller was waiting for it (NCCL: one that
  // wait_on_stream() left to the group's watchdog); a no-op for groups whose failures surface in wait().
  virtual void check_health() {}

  // "'dp' (world ranks 0,2)" for messages.
  std::string describe() const;

 protected:
  // Argument CHECKs shared by the backends, naming the group and the collective. A reduced tensor is defined,
  // contiguous, not u8/bool, and a float dtype for avg. t (...)
  void check_reduce_args(const char* collective, const Tensor& t, ReduceOp op) const;
  // `part` is one rank's share of `whole`, both contiguous of one dtype and device. part (n, ...),
  // whole (size * n, ...)
  void check_gather_args(const char* collective, const Tensor& part, const Tensor& whole) const;
  // A defined, contiguous tensor (broadcast accepts every dtype). t (...)
  void check_tensor_arg(const char* collective, const Tensor& t) const;

 private:
  std::string name_;
  int rank_;
  std::vector<int> world_ranks_;
  GroupOptions options_;
};

// op over the group's ranks of one number (a 1-element f64 all_reduce, waited for). Collective.
double all_reduce_value(ProcessGroup& group, double value, ReduceOp op);

// A group of one process: every collective completes immediately (all_reduce and broadcast leave t as is,
// all_gather / reduce_scatter copy). Single-process runs use it so that tp = dp = 1 takes the same code path.
class LocalProcessGroup final : public ProcessGroup {
 public:
  explicit LocalProcessGroup(std::string name = "local", int world_rank = 0);
  std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) override;
  std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) override;
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override;
  std::shared_ptr<Work> broadcast(const Tensor& t, int root) override;
  std::shared_ptr<Work> barrier() override;
  std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) override;
};

}  // namespace px::parallel

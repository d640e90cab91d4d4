// NcclProcessGroup: collectives on GPU tensors through NCCL, on a dedicated communication stream ordered
// with the caller's current stream, with deadlines that abort the communicator. Built with PARALLAX_CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "parallel/comm/process_group.h"

namespace px::parallel {

class MpiProcessGroup;
struct NcclCommState;  // nccl_process_group.cpp: the communicator, its stream and its abort state

// Ranks, world ranks and order are the control group's. Tensors: contiguous, on `device`.
//
// Ordering: a collective first waits (on the GPU) for the work queued so far on the caller's current stream
// (current_cuda_stream()), then runs on the group's own stream. Work::wait() and a true is_completed() mean it
// has run on the GPU (polled on the host, so deadlines hold): kernels queued afterwards on any stream see the
// result. Work::wait_on_stream() instead makes the caller's current stream wait for the collective's completion
// event and hands the Work to the group's watchdog thread, which polls it to its deadline (the training step's
// collectives: the host never blocks on them). The tensors are held by the Work and marked as used by the communication stream, so they stay valid
// until the collective is done even if the caller drops them.
//
// Failures: the communicator is non-blocking. A collective not complete by its deadline (issue time + the
// group's timeout), or an asynchronous NCCL error, aborts the communicator (every later collective of the
// group throws; for a collective left to the watchdog, the next call of the group or check_health() throws it)
// and throws CommError naming the group, the collective, its sequence number and, when the
// control group is an MpiProcessGroup, the ranks that did not arrive (each collective is counted there with
// enter_external). A Work must not outlive its group's control group.
class NcclProcessGroup final : public ProcessGroup {
 public:
  // Collective over `control` (every member calls it): control rank 0 creates the ncclUniqueId and
  // broadcasts it over `control`, which must outlive this group. `device` is a CUDA device; throws CommError
  // when the communicator is not ready within options.timeout.
  NcclProcessGroup(std::string name, ProcessGroup& control, Device device, GroupOptions options);
  ~NcclProcessGroup() override;

  std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) override;
  std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) override;
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override;
  std::shared_ptr<Work> broadcast(const Tensor& t, int root) override;
  // A one-element all-reduce: complete once every member has issued it.
  std::shared_ptr<Work> barrier() override;
  // ncclCommSplit over this group plus control.split for the new group's control group (owned by it).
  std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) override;
  // ncclCommSplit over this group with `control` (split by the caller with the same color and key, outliving the
  // new group) as the new group's control group: a DeviceRoutedProcessGroup's host group, so that its CPU and
  // NCCL collectives are counted in one sequence and arrival reports see both.
  std::unique_ptr<ProcessGroup> split_with_control(int color, int key, const std::string& name,
                                                   ProcessGroup& control) override;
  // Throws CommError when the communicator was aborted (by the watchdog of a collective left to wait_on_stream,
  // or an earlier failure).
  void check_health() override;

  Device device() const { return device_; }

 private:
  // The group made by a split: `control` is its control group (owned when owned_control holds it), `state` its
  // communicator.
  NcclProcessGroup(std::string name, std::unique_ptr<ProcessGroup> owned_control, ProcessGroup& control,
                   Device device, GroupOptions options, std::shared_ptr<NcclCommState> state);
  // ncclCommSplit into a group whose control group is `control`.
  std::unique_ptr<ProcessGroup> split_beside(int color, int key, const std::string& name,
                                             std::unique_ptr<ProcessGroup> owned_control, ProcessGroup& control);

  // A defined contiguous tensor on this group's device. t (...)
  void check_device(const char* collective, const Tensor& t) const;
  // Counts the collective (in the control group when it is an MpiProcessGroup) and returns its number.
  int64_t next_sequence(const std::string& description);

  std::unique_ptr<ProcessGroup> owned_control_;  // set for groups made by split()
  ProcessGroup* control_;
  MpiProcessGroup* mpi_control_;  // control_ as an MpiProcessGroup, or nullptr (a LocalProcessGroup, ...)
  Device device_;
  std::shared_ptr<NcclCommState> state_;
  Tensor barrier_buffer_;  // (1) f32 zeros on device_: the barrier's all-reduce operand
  int64_t local_sequence_ = 0;  // collectives issued, when the control group does not count them
};

}  // namespace px::parallel

// MpiProcessGroup: collectives over an MPI communicator with non-blocking MPI calls (MPI_Iallreduce, ...),
// progressed by one communication thread so they overlap computation; deadlines and arrival reports.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "parallel/comm/process_group.h"

namespace px::parallel {

class MpiProgressThread;  // mpi_process_group.cpp

// Host tensors go straight to MPI; GPU tensors are staged through host buffers (copied in before the
// collective, back after it). bf16/f16 reductions use a user-defined MPI_Op that sums in f32.
//
// Timeouts: a Work not complete by its deadline asks every member, over a private duplicate communicator
// served by each rank's communication thread, which collective of this group it has reached, and throws
// CommError: "group 'dp' (world ranks 0,1): all_reduce #17 (f32, 1048576 elements) did not complete in 5 s:
// rank 1 has not arrived (it is at #16); rank 3 did not answer (dead or stalled)".
class MpiProcessGroup final : public ProcessGroup {
 public:
  // `comm` is an MPI_Comm passed as its integer handle would not fit Open MPI (a pointer), so it travels as
  // void*; the group duplicates it (data and control communicators) and frees its duplicates.
  MpiProcessGroup(std::string name, void* comm, GroupOptions options);
  ~MpiProcessGroup() override;

  std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) override;
  std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) override;
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override;
  std::shared_ptr<Work> broadcast(const Tensor& t, int root) override;
  std::shared_ptr<Work> barrier() override;
  std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) override;

  // For a group that drives another transport over the same ranks (NCCL): counts one collective as entered,
  // so that arrival queries report it, and returns its sequence number.
  int64_t enter_external(const std::string& op_description);
  // For collective #seq that missed its deadline: asks every member which collective it has reached (waits a
  // few seconds for answers) -> "rank 1 has not arrived (it is at #16); rank 3 did not answer (dead or
  // stalled)", or "every rank arrived" when none is missing.
  std::string arrival_report(int64_t seq);

  // The duplicated data communicator (an MPI_Comm as void*), e.g. to broadcast an ncclUniqueId.
  void* comm() const;

 private:
  std::unique_ptr<MpiProgressThread> progress_;
};

}  // namespace px::parallel

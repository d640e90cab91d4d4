// DeviceRoutedProcessGroup: one group over two transports, chosen per call by the tensor's device: host tensors
// (control messages, scalars, checkpoints) to a host group (MPI), GPU tensors to a device group (NCCL).
#pragma once

#include <memory>
#include <string>

#include "parallel/comm/process_group.h"

namespace px::parallel {

// Rank, size, world ranks and the default options are the host group's; the device group must have the same
// members in the same order (a CHECK). Host tensors and barrier() go to the host group, every other tensor to
// the device group; before each call the device group's health is checked, so an NCCL failure found by its
// watchdog surfaces at the next collective of either kind. split() splits the host group, then the device group
// beside it (split_with_control: NCCL's ncclCommSplit with the new host group as its control group), so the
// tp and dp groups of a ParallelGrid built over a routed world are routed too. set_timeout() sets both.
//
// Every member must route each collective the same way: the tensors of one collective are on the same kind of
// device on every rank (the trainer checks that every rank computes on the same device kind).
class DeviceRoutedProcessGroup final : public ProcessGroup {
 public:
  // `host` must outlive this group; `device` (the same ranks) is owned, and destroyed before the host group.
  DeviceRoutedProcessGroup(std::string name, ProcessGroup& host, std::unique_ptr<ProcessGroup> device);
  ~DeviceRoutedProcessGroup() override;

  std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) override;
  std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) override;
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override;
  std::shared_ptr<Work> broadcast(const Tensor& t, int root) override;
  std::shared_ptr<Work> barrier() override;  // the host group's
  std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) override;
  void set_timeout(std::chrono::milliseconds timeout) override;
  void check_health() override;

  ProcessGroup& host_group() { return *host_; }
  ProcessGroup& device_group() { return *device_; }

 private:
  // The group made by split(): owns its host group.
  DeviceRoutedProcessGroup(std::string name, std::unique_ptr<ProcessGroup> host, std::unique_ptr<ProcessGroup> device);

  // The group that carries a collective on `t`, after checking the device group's health. t (...)
  ProcessGroup& route(const Tensor& t);
  void check_members() const;

  std::unique_ptr<ProcessGroup> owned_host_;  // set for groups made by split(); declared first: destroyed last
  ProcessGroup* host_;
  std::unique_ptr<ProcessGroup> device_;
};

// The world for GPU training over NCCL: a DeviceRoutedProcessGroup named "world" over `host_world` (MPI, which
// must outlive it) and an NcclProcessGroup on `device` whose ncclUniqueId travels over `host_world`.
// Collective over host_world. CHECK-fails in a build without NCCL (the config check refuses nccl there).
std::unique_ptr<ProcessGroup> make_nccl_routed_world(ProcessGroup& host_world, Device device, GroupOptions options);

// True when this build has the NCCL group (PARALLAX_CUDA with NCCL found).
bool nccl_built();

}  // namespace px::parallel

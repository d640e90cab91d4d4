// DeviceRoutedProcessGroup: routes each collective by its tensor's device to the host or the device group, splits
// both, and builds the NCCL-routed world of GPU training (where the build has NCCL).
#include "parallel/comm/device_routed_process_group.h"

#include "core/util/check.h"

#if PARALLAX_WITH_NCCL
#include "parallel/comm/nccl_process_group.h"
#endif

namespace px::parallel {

DeviceRoutedProcessGroup::DeviceRoutedProcessGroup(std::string name, ProcessGroup& host,
                                                   std::unique_ptr<ProcessGroup> device)
    : ProcessGroup(std::move(name), host.rank(), host.world_ranks(), host.options()),
      host_(&host),
      device_(std::move(device)) {
  check_members();
}

DeviceRoutedProcessGroup::DeviceRoutedProcessGroup(std::string name, std::unique_ptr<ProcessGroup> host,
                                                   std::unique_ptr<ProcessGroup> device)
    : ProcessGroup(std::move(name), host->rank(), host->world_ranks(), host->options()),
      owned_host_(std::move(host)),
      host_(owned_host_.get()),
      device_(std::move(device)) {
  check_members();
}

DeviceRoutedProcessGroup::~DeviceRoutedProcessGroup() { device_.reset(); }

void DeviceRoutedProcessGroup::check_members() const {
  CHECK(device_ != nullptr) << "routed group " << describe() << ": no device group";
  CHECK(device_->rank() == host_->rank() && device_->world_ranks() == host_->world_ranks())
      << "routed group " << describe() << ": the device group " << device_->describe() << " (rank "
      << device_->rank() << ") and the host group " << host_->describe() << " (rank " << host_->rank()
      << ") must have the same members in the same order";
}

ProcessGroup& DeviceRoutedProcessGroup::route(const Tensor& t) {
  device_->check_health();
  return t.defined() && !t.device().is_cpu() ? *device_ : *host_;
}

std::shared_ptr<Work> DeviceRoutedProcessGroup::all_reduce(const Tensor& t, ReduceOp op) {
  return route(t).all_reduce(t, op);
}

std::shared_ptr<Work> DeviceRoutedProcessGroup::all_gather(const Tensor& in, const Tensor& out) {
  return route(in).all_gather(in, out);  // the group CHECKs that out is on in's device
}

std::shared_ptr<Work> DeviceRoutedProcessGroup::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  return route(in).reduce_scatter(in, out, op);
}

std::shared_ptr<Work> DeviceRoutedProcessGroup::broadcast(const Tensor& t, int root) {
  return route(t).broadcast(t, root);
}

std::shared_ptr<Work> DeviceRoutedProcessGroup::barrier() {
  device_->check_health();
  return host_->barrier();
}

std::unique_ptr<ProcessGroup> DeviceRoutedProcessGroup::split(int color, int key, const std::string& name) {
  device_->check_health();
  // Host first, then the device group beside the new host group: the same order on every rank.
  std::unique_ptr<ProcessGroup> host = host_->split(color, key, name);
  std::unique_ptr<ProcessGroup> device = device_->split_with_control(color, key, name, *host);
  auto group = std::unique_ptr<DeviceRoutedProcessGroup>(
      new DeviceRoutedProcessGroup(name, std::move(host), std::move(device)));
  group->ProcessGroup::set_timeout(options().timeout);
  return group;
}

void DeviceRoutedProcessGroup::set_timeout(std::chrono::milliseconds timeout) {
  ProcessGroup::set_timeout(timeout);
  host_->set_timeout(timeout);
  device_->set_timeout(timeout);
}

void DeviceRoutedProcessGroup::check_health() {
  host_->check_health();
  device_->check_health();
}

bool nccl_built() {
#if PARALLAX_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<ProcessGroup> make_nccl_routed_world(ProcessGroup& host_world, Device device, GroupOptions options) {
#if PARALLAX_WITH_NCCL
  auto nccl = std::make_unique<NcclProcessGroup>("world", host_world, device, options);
  auto world = std::make_unique<DeviceRoutedProcessGroup>("world", host_world, std::move(nccl));
  world->set_timeout(options.timeout);
  return world;
#else
  LOG(FATAL) << "make_nccl_routed_world over " << host_world.describe() << " on " << device.str()
             << ": this build has no NCCL (configure with PARALLAX_CUDA and NCCL installed)";
  return nullptr;
#endif
}

}  // namespace px::parallel

// Where and in what precision a process computes: train.device / --device and train.precision resolved against
// the GPUs this machine shows, local rank r taking GPU r; how GPU tensors are reduced across ranks (NCCL or
// MPI, parallel.gpu_collectives); one-line errors when they cannot be honoured.
#pragma once

#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor/device.h"
#include "core/tensor/dtype.h"
#include "parallel/comm/process_group.h"
#include "parallel/comm/world.h"

namespace px {

struct DevicePlan {
  Device device;                 // cpu, or cuda:<local rank> (cuda:<local rank % GPUs> when ranks share GPUs)
  DType dtype = DType::f32;      // of the weights and activations (master_dtype(dtype) for gradients and state)
  bool loss_scaling = false;     // f16: dynamic loss scaling
  std::string summary;           // "device cpu (train.device auto: no usable GPU: ...), precision f32"
  std::vector<std::string> gpus;  // one line per visible GPU: "GPU 0: NVIDIA H200, 140.4 GiB, compute 9.0"
  // On a GPU: the dp and tp groups reduce GPU tensors with NCCL (else staged through host memory over MPI).
  // Used when the world has more than one rank.
  bool nccl = false;
  std::string sharing;  // one line when several ranks of this node share a GPU (gpu_collectives mpi), else empty
};

// device: auto | cpu | cuda; precision: auto | f32 | bf16 | f16 (auto: bf16 on a GPU, f32 on the CPU);
// gpu_collectives: auto | nccl | mpi (parallel.gpu_collectives; auto: nccl where the build has it). `field` names
// the device setting in errors ("train.device", "--device"). cuda without a usable GPU, or more ranks on this node
// than visible GPUs under nccl or auto, is a ConfigError naming the field and both numbers; under mpi, local rank r
// takes GPU r % GPUs and `sharing` says so. nccl in a build without NCCL is a ConfigError naming
// parallel.gpu_collectives.
DevicePlan plan_device(const std::string& device, const std::string& precision, const std::string& gpu_collectives,
                       const parallel::ProcessPlacement& placement, const std::string& field = "train.device");

// plan_device on a given GPU list (`gpus` empty: none usable, `why_none` says why) and NCCL availability, without
// asking the machine: what plan_device decides once it has asked, for tests.
DevicePlan plan_device_on(const std::string& device, const std::string& precision, const std::string& gpu_collectives,
                          const parallel::ProcessPlacement& placement, const std::vector<GpuInfo>& gpus,
                          const std::string& why_none, bool nccl_available, const std::string& field = "train.device");

// The console's GPU lines of every node, for rank 0 to print: "node <host>: GPU 0: ..." from each node's local rank
// 0 (one all-gather over `world`, host tensors; every rank calls it); plan.gpus as they are in a single process.
std::vector<std::string> gpu_lines_per_node(parallel::ProcessGroup& world, const parallel::ProcessPlacement& placement,
                                            const DevicePlan& plan);

}  // namespace px

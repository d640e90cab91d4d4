// train.device and train.precision resolved against this machine: the GPU of each local rank, the
// weights' dtype, and the console lines that say which and why (the GPUs of every node).
#include "launcher/device_plan.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>

#include "core/backend/backend.h"
#include "core/ops/factory.h"
#include "core/util/error.h"
#include "parallel/comm/device_routed_process_group.h"

namespace px {

namespace {

std::string gpu_line(int index, const GpuInfo& gpu) {
  char line[256];
  std::snprintf(line, sizeof line, "GPU %d: %s, %.1f GiB, compute %d.%d", index, gpu.name.c_str(),
                static_cast<double>(gpu.memory_bytes) / (1 << 30), gpu.major, gpu.minor);
  return line;
}

DType precision_dtype(const std::string& precision, bool on_gpu) {
  if (precision == "bf16") return DType::bf16;
  if (precision == "f16") return DType::f16;
  if (precision == "f32") return DType::f32;
  if (precision == "f64") return DType::f64;
  return on_gpu ? DType::bf16 : DType::f32;  // auto
}

}  // namespace

DevicePlan plan_device(const std::string& device, const std::string& precision, const std::string& gpu_collectives,
                       const parallel::ProcessPlacement& placement, const std::string& field) {
  std::string why;
  const bool want_gpu = device == "cuda" || device == "auto";
  const std::vector<GpuInfo> gpus = want_gpu ? visible_gpus(&why) : std::vector<GpuInfo>{};
  return plan_device_on(device, precision, gpu_collectives, placement, gpus, why, parallel::nccl_built(), field);
}

DevicePlan plan_device_on(const std::string& device, const std::string& precision, const std::string& gpu_collectives,
                          const parallel::ProcessPlacement& placement, const std::vector<GpuInfo>& visible,
                          const std::string& why_none, bool nccl_available, const std::string& field) {
  DevicePlan plan;
  std::string chosen_because;
  const bool want_gpu = device == "cuda" || device == "auto";
  const std::vector<GpuInfo> gpus = want_gpu ? visible : std::vector<GpuInfo>{};
  if (device == "cuda" && gpus.empty()) {
    throw ConfigError(field + ": cuda, but this machine has no usable GPU (" + why_none + "); use cpu or auto");
  }
  const bool on_gpu = !gpus.empty();
  const int gpu_count = static_cast<int>(gpus.size());
  if (on_gpu && gpu_collectives == "nccl" && !nccl_available) {
    throw ConfigError("parallel.gpu_collectives: nccl, but this build has no NCCL; use mpi or auto");
  }
  if (on_gpu && placement.local_size > gpu_count) {
    if (gpu_collectives != "mpi") {
      const char* visible_env = std::getenv("CUDA_VISIBLE_DEVICES");
      throw ConfigError(field + ": " + std::to_string(placement.local_size) + " ranks on this node but " +
                        std::to_string(gpu_count) + " visible GPU(s)" +
                        (visible_env != nullptr ? std::string(" (CUDA_VISIBLE_DEVICES=") + visible_env + ")" : "") +
                        "; start at most one rank per GPU (NCCL refuses two ranks on one GPU), set "
                        "parallel.gpu_collectives: mpi to let ranks share GPUs, or use cpu");
    }
    plan.sharing = std::to_string(placement.local_size) + " ranks on this node share " + std::to_string(gpu_count) +
                   " GPU(s): local rank r uses GPU r % " + std::to_string(gpu_count) +
                   " (parallel.gpu_collectives mpi: GPU tensors are reduced through host memory over MPI)";
  }
  if (on_gpu) {
    plan.device = cuda(placement.local_rank % gpu_count);
    plan.nccl = gpu_collectives == "nccl" || (gpu_collectives == "auto" && nccl_available);
    for (size_t i = 0; i < gpus.size(); ++i) plan.gpus.push_back(gpu_line(static_cast<int>(i), gpus[i]));
    chosen_because = device == "auto" ? " (" + field + " auto: a GPU is present)" : "";
  } else {
    plan.device = cpu();
    chosen_because = device == "auto" ? " (" + field + " auto: no usable GPU: " + why_none + ")" : "";
  }
  plan.dtype = precision_dtype(precision, on_gpu);
  plan.loss_scaling = plan.dtype == DType::f16;
  plan.summary = "device " + plan.device.str() + chosen_because + ", precision " + dtype_name(plan.dtype) +
                 (plan.loss_scaling ? " with dynamic loss scaling" : "") +
                 (plan.dtype != master_dtype(plan.dtype) ? " (f32 master weights, gradients and losses)" : "");
  if (on_gpu && placement.size > 1) {
    plan.summary += plan.nccl ? ", GPU collectives over NCCL" : ", GPU collectives staged through MPI";
  }
  return plan;
}

std::vector<std::string> gpu_lines_per_node(parallel::ProcessGroup& world, const parallel::ProcessPlacement& placement,
                                            const DevicePlan& plan) {
  if (world.size() == 1) return plan.gpus;
  constexpr int64_t kBytes = 2048;  // per rank: the host name and its GPUs' lines, cut to fit
  std::string mine;
  if (placement.local_rank == 0 && !plan.gpus.empty()) {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    for (const std::string& gpu : plan.gpus) mine += std::string("node ") + host + ": " + gpu + "\n";
  }
  mine.resize(std::min<size_t>(mine.size(), kBytes));
  const Tensor in = zeros({kBytes}, DType::u8);  // (kBytes)
  std::copy(mine.begin(), mine.end(), in.data<uint8_t>());
  const Tensor out = zeros({world.size() * kBytes}, DType::u8);  // (world * kBytes)
  world.all_gather(in, out)->wait();
  std::vector<std::string> lines;
  const auto* bytes = reinterpret_cast<const char*>(out.data<uint8_t>());
  for (int r = 0; r < world.size(); ++r) {
    const std::string text(bytes + r * kBytes, strnlen(bytes + r * kBytes, kBytes));
    size_t start = 0;
    for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
      lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

}  // namespace px

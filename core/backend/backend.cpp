// The narrow per-device compute interface every op goes through; CPU and CUDA implement it.
// This file keeps the registry that maps a device kind to its backend.
#include "core/backend/backend.h"

#include "core/backend/cpu/cpu_backend.h"
#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {
Backend* g_backends[2] = {nullptr, nullptr};
}

void register_backend(DeviceType type, Backend* backend) { g_backends[static_cast<int>(type)] = backend; }

bool cuda_available() {
#ifdef PARALLAX_WITH_CUDA
  return init_cuda_backend();  // probes once and caches
#else
  static const bool logged = [] {
    LOG(INFO) << "CUDA: built without CUDA (PARALLAX_CUDA=OFF); running on the CPU";
    return true;
  }();
  (void)logged;
  return false;
#endif
}

#ifndef PARALLAX_WITH_CUDA
std::vector<GpuInfo> visible_gpus(std::string* why_none) {
  if (why_none != nullptr) *why_none = "built without CUDA (PARALLAX_CUDA=OFF)";
  return {};
}

void set_current_gpu(int index) { LOG(FATAL) << "set_current_gpu(" << index << "): built without CUDA"; }
#endif

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
  Backend* b = g_backends[static_cast<int>(device.type)];
  CHECK(b != nullptr) << "no backend for device " << device.str() << " (built without CUDA, or no GPU)";
  return *b;
}

}  // namespace px

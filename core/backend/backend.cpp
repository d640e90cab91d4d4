// The narrow per-device compute interface every op goes through; CPU and CUDA implement it.
// This file keeps the registry that maps a device kind to its backend, and the AdamW slot check.
#include "core/backend/backend.h"

#include <cmath>
#include <utility>

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

void check_adamw_slot(const AdamWSlot& s, size_t index, const char* what) {
  CHECK(s.param.defined()) << what << ": slot " << index << ": param is undefined";
  const DType pt = s.param.dtype(), mt = master_dtype(pt);
  CHECK(pt == DType::f32 || pt == DType::f64 || pt == DType::bf16 || pt == DType::f16)
      << what << ": slot " << index << ": param " << s.param.str() << " must be f32, f64, bf16 or f16";
  CHECK_EQ(s.master.defined(), mt != pt) << what << ": slot " << index << ": param " << s.param.str()
                                         << (mt != pt ? " needs an f32 master" : " takes no master (it is its own)");
  const std::pair<const char*, const Tensor*> parts[] = {
      {"param", &s.param}, {"grad", &s.grad}, {"exp_avg", &s.exp_avg}, {"exp_avg_sq", &s.exp_avg_sq},
      {"master", &s.master}};
  for (const auto& [name, t] : parts) {
    if (t == &s.master && !s.master.defined()) continue;
    CHECK(t->defined()) << what << ": slot " << index << ": " << name << " is undefined";
    CHECK(t->shape() == s.param.shape() && t->device() == s.param.device() && t->is_contiguous())
        << what << ": slot " << index << ": " << name << " " << t->str() << " must be contiguous, shaped like and "
        << "on the device of param " << s.param.str();
    if (t != &s.param)
      CHECK(t->dtype() == mt) << what << ": slot " << index << ": " << name << " " << t->str() << " must be "
                              << dtype_name(mt) << " (the master dtype of param " << s.param.str() << ")";
  }
  CHECK(std::isfinite(s.step_size) && std::isfinite(s.decay) && s.bc2_sqrt > 0.0)
      << what << ": slot " << index << ": step_size " << s.step_size << ", bc2_sqrt " << s.bc2_sqrt << ", decay "
      << s.decay << ": finite coefficients and bc2_sqrt > 0 expected";
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
  Backend* b = g_backends[static_cast<int>(device.type)];
  CHECK(b != nullptr) << "no backend for device " << device.str() << " (built without CUDA, or no GPU)";
  return *b;
}

}  // namespace px

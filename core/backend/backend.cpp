// The narrow per-device compute interface every op goes through; CPU and CUDA implement it.
// This file keeps the registry that maps a device kind to its backend.
#include "core/backend/backend.h"

#include "core/backend/cpu/cpu_backend.h"

namespace px {
namespace {
Backend* g_backends[2] = {nullptr, nullptr};
}

void register_backend(DeviceType type, Backend* backend) { g_backends[static_cast<int>(type)] = backend; }

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
  Backend* b = g_backends[static_cast<int>(device.type)];
  CHECK(b != nullptr) << "no backend for device " << device.str() << " (built without CUDA, or no GPU)";
  return *b;
}

}  // namespace px

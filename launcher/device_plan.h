// Where and in what precision a process computes: train.device / --device and train.precision resolved against
// the GPUs this machine shows, local rank r taking GPU r; one-line errors when they cannot be honoured.
#pragma once

#include <string>
#include <vector>

#include "core/tensor/device.h"
#include "core/tensor/dtype.h"
#include "parallel/comm/world.h"

namespace px {

struct DevicePlan {
  Device device;                 // cpu, or cuda:<local rank>
  DType dtype = DType::f32;      // of the weights and activations (master_dtype(dtype) for gradients and state)
  bool loss_scaling = false;     // f16: dynamic loss scaling
  std::string summary;           // "device cpu (train.device auto: no usable GPU: ...), precision f32"
  std::vector<std::string> gpus;  // one line per visible GPU: "GPU 0: NVIDIA H200, 140.4 GiB, compute 9.0"
};

// device: auto | cpu | cuda; precision: auto | f32 | bf16 | f16 (auto: bf16 on a GPU, f32 on the CPU). `field`
// names the setting in errors ("train.device", "--device"). cuda without a usable GPU, or more ranks on this node
// than visible GPUs (under auto too), is a ConfigError naming the field and both numbers.
DevicePlan plan_device(const std::string& device, const std::string& precision,
                       const parallel::ProcessPlacement& placement, const std::string& field = "train.device");

}  // namespace px

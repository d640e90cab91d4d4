// Where a tensor lives: the host, or one CUDA device by index.
#pragma once

#include <string>

namespace px {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

inline Device cpu() { return Device{}; }
inline Device cuda(int index = 0) { return Device{DeviceType::cuda, index}; }

}  // namespace px

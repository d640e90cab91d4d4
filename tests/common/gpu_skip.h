// Why a GPU test cannot run here, in the one line its GTEST_SKIP prints ("no usable GPU (cudaGetDeviceCount: ...)"
// or "built without CUDA"); empty where a GPU is usable.
#pragma once

#include <string>

#include "core/backend/backend.h"

namespace px::test {

inline std::string gpu_skip_reason() {
  std::string why;
  if (!visible_gpus(&why).empty()) return "";
  return why.rfind("built without", 0) == 0 ? why : "no usable GPU (" + why + ")";
}

}  // namespace px::test

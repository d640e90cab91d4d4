// Range checks of index tensors (ids of embeddings, targets of losses, index_select/gather): on the host always;
// on a device a check reads the ids' min and max back (a host sync), which a scope can skip after a host check.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor/tensor.h"

namespace px {

// While one is alive on this thread, ops do not range-check index tensors that live on a device: the caller has
// checked the ids on the host (check_host_indices, e.g. when the batch was built), so a training step does not
// sync the host once per embedding and loss. Host ids are checked as always. Nests like NoGradGuard.
class HostCheckedIndicesGuard {
 public:
  HostCheckedIndicesGuard();
  ~HostCheckedIndicesGuard();
  HostCheckedIndicesGuard(const HostCheckedIndicesGuard&) = delete;
  HostCheckedIndicesGuard& operator=(const HostCheckedIndicesGuard&) = delete;

 private:
  bool previous_;
};

// False inside a HostCheckedIndicesGuard on this thread.
bool device_index_checks_enabled();

// Throws px::Error "<what>: index <id> out of range [0, <bound>)" (the ops' message) for the first id of the host
// i32/i64 tensor `ids` outside [0, bound). ids (...)
void check_host_indices(const Tensor& ids, int64_t bound, const std::string& what);

}  // namespace px

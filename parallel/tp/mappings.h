// Megatron's conjugate tensor-parallel communication ops as autograd functions: what one does forward,
// its conjugate does backward (tensor_parallel/mappings.py).
#pragma once

#include "parallel/comm/process_group.h"

namespace px::parallel {

// Forward identity, backward all-reduce(sum): enters a column-parallel region. x (...)
Tensor copy_to_tp_region(const Tensor& x, ProcessGroup& tp);
// Forward all-reduce(sum), backward identity: leaves a row-parallel region. x (...)
Tensor reduce_from_tp_region(const Tensor& x, ProcessGroup& tp);
// Forward keeps this rank's chunk of the last dim, backward all-gathers it. x (..., n) -> (..., n / tp)
Tensor scatter_to_tp_region(const Tensor& x, ProcessGroup& tp);
// Forward all-gathers the last dim, backward keeps this rank's chunk. x (..., n / tp) -> (..., n)
Tensor gather_from_tp_region(const Tensor& x, ProcessGroup& tp);

}  // namespace px::parallel

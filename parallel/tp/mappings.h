// Megatron's conjugate tensor-parallel communication ops as autograd functions: what one does forward,
// its conjugate does backward (tensor_parallel/mappings.py).
#pragma once

#include "parallel/comm/process_group.h"

namespace px::parallel {

// Each op's backward node holds `tp` by reference: a graph must not outlive the group it was built over. At a
// group of one every op is the identity and builds no node. The all-reduces work in place on a tensor nothing
// else holds (a partial sum handed over, a gradient only the engine holds) and on a copy otherwise.

// Forward identity, backward all-reduce(sum): enters a column-parallel region. x (...)
Tensor copy_to_tp_region(const Tensor& x, ProcessGroup& tp);
// Forward all-reduce(sum), backward identity: leaves a row-parallel region. In place when x is moved in (or a
// temporary) and nothing else holds its storage. x (...)
Tensor reduce_from_tp_region(Tensor x, ProcessGroup& tp);
// Forward keeps this rank's chunk of the last dim, backward all-gathers it. x (..., n) -> (..., n / tp)
Tensor scatter_to_tp_region(const Tensor& x, ProcessGroup& tp);
// Forward all-gathers the last dim, backward keeps this rank's chunk. x (..., n / tp) -> (..., n)
Tensor gather_from_tp_region(const Tensor& x, ProcessGroup& tp);

}  // namespace px::parallel

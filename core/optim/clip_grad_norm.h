// Global L2 gradient-norm clipping with torch.nn.utils.clip_grad_norm_'s semantics, plus the two halves
// (local sum of squares, scaling) so tensor/data parallel code can reduce the sum across ranks.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor/tensor.h"

namespace px::optim {

// Reduces a rank's local sum of squared gradient elements to the global sum (e.g. an all-reduce over
// the tensor-parallel group); empty means single process.
using SumReducer = std::function<double(double)>;

// Sum over the parameters' gradients of every squared element, accumulated in double; parameters
// without a gradient contribute nothing.
double grad_sq_sum(const std::vector<Tensor>& params);
// grad *= coef for every parameter that has a gradient (in place, no graph).
void scale_grads(const std::vector<Tensor>& params, double coef);

// total = sqrt(reduce(grad_sq_sum(params))); when max_norm / (total + 1e-6) < 1 every gradient is
// multiplied by it. Returns total (the norm before clipping). A non-finite total propagates into the
// gradients like torch's default (error_if_nonfinite=False); callers that skip such steps check the
// return value first. Under tensor parallelism the reducer must sum over the TP group and each
// replicated (non-sharded) parameter must be passed on one TP rank only, so that it is counted once;
// data-parallel ranks hold identical reduced gradients and need no reduction.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, const SumReducer& reduce = nullptr);

}  // namespace px::optim

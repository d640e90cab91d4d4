// Global-norm gradient clipping for a model whose parameters are sharded over a tensor-parallel group:
// torch.nn.utils.clip_grad_norm_ of the full (tp = 1) model, computed from the shards.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm/process_group.h"
#include "parallel/tp/shard_spec.h"

namespace px::parallel {

// total = sqrt(sum over the full model's gradient elements of g^2): every tp rank adds the squares of its shards of
// sharded parameters and tp rank 0 alone those of replicated ones (identical on every rank), summed over `tp`.
// Data-parallel ranks hold identical (all-reduced) gradients and need nothing more, unless each holds a disjoint
// part of them (ZeRO's slices): then `parts_over` is the dp group the sum also runs over. named_params pairs a
// parameter name (for specs) with the tensor whose grad() counts: the parameter, or its slice. When
// max_norm / (total + 1e-6) < 1 every such gradient is scaled by it. Returns total (before clipping); collective over
// tp (and parts_over). With loss scaling the gradients hold grad_scale times the gradient: total is the unscaled
// gradient's norm, and the gradients are unscaled and clipped in one pass.
double clip_grad_norm(const std::vector<std::pair<std::string, Tensor>>& named_params,
                      const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp, double max_norm,
                      ProcessGroup* parts_over = nullptr, double grad_scale = 1.0);

}  // namespace px::parallel

// clip_grad_norm over tensor-parallel shards: which parameters each rank counts, one all-reduce of the squared
// sum, and the scaling shared with core/optim/clip_grad_norm.
#include "parallel/grad_clip.h"

#include <cmath>

#include "core/optim/clip_grad_norm.h"

namespace px::parallel {

double clip_grad_norm(const std::vector<std::pair<std::string, Tensor>>& named_params,
                      const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp, double max_norm,
                      ProcessGroup* parts_over, double grad_scale) {
  std::vector<Tensor> counted;  // what this rank contributes to the norm
  std::vector<Tensor> all;
  for (const auto& [name, p] : named_params) {
    all.push_back(p);
    const auto spec = specs.find(name);
    const bool sharded = tp.size() > 1 && spec != specs.end() && spec->second.sharded();
    if (sharded || tp.rank() == 0) counted.push_back(p);
  }
  // sum over (dp parts) x (sharded shards of every tp rank + replicated once)
  double sq = optim::grad_sq_sum(counted);
  if (parts_over != nullptr) sq = all_reduce_value(*parts_over, sq, ReduceOp::sum);
  sq = all_reduce_value(tp, sq, ReduceOp::sum);
  const double total = std::sqrt(sq) / grad_scale;
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    optim::scale_grads(all, coef / grad_scale);
  } else if (grad_scale != 1.0) {
    optim::scale_grads(all, 1.0 / grad_scale);
  }
  return total;
}

}  // namespace px::parallel

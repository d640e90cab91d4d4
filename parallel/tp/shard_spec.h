// ShardSpec: how a tensor-parallel parameter is cut from the full tp=1 tensor, the slicing and gathering
// that follow from it, and the registry of specs a module tree declares (TensorParallelModule).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/module.h"
#include "parallel/comm/process_group.h"

namespace px::parallel {

// The full tensor's dim `dim` is viewed as (groups, tp, chunk) and rank r keeps [:, r, :] for every group:
// groups = 1 is a contiguous slice (ColumnParallelLinear rows, RowParallelLinear columns, vocabulary rows);
// groups = 3 keeps this rank's heads of each of q, k, v in a fused (3d, d) projection. dim < 0: replicated.
struct ShardSpec {
  int64_t dim = -1;
  int64_t groups = 1;
  bool sharded() const { return dim >= 0; }
};

// Rank `rank` of `size`'s shard of `full` (a contiguous copy). full.size(dim) % (groups * size) == 0 is
// CHECKed; replicated specs return a copy of full.
Tensor shard_of(const Tensor& full, const ShardSpec& spec, int rank, int size);
// The full tensor from every tp rank's shard (all_gather over tp, then reordered). Collective over tp.
// shard: this rank's (..., n / size, ...) -> (..., n, ...)
Tensor gather_shards(const Tensor& shard, const ShardSpec& spec, ProcessGroup& tp);

// A module holding sharded parameters says which (by its own parameter names, e.g. "weight").
class TensorParallelModule {
 public:
  virtual ~TensorParallelModule() = default;
  virtual std::vector<std::pair<std::string, ShardSpec>> shard_specs() const = 0;
};

// Every sharded parameter under `root` by hierarchical name (the names of root.named_parameters());
// parameters not listed are replicated across the tp group.
std::map<std::string, ShardSpec> collect_shard_specs(nn::Module& root);

}  // namespace px::parallel

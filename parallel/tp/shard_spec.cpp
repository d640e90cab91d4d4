// ShardSpec slicing (shard_of) and reassembly (gather_shards) of tensor-parallel parameters, and the walk
// that collects every sharded parameter's spec from a module tree by hierarchical name.
#include "parallel/tp/shard_spec.h"

#include <set>

#include "core/autograd/grad_mode.h"
#include "core/ops/factory.h"
#include "core/ops/join.h"
#include "core/ops/view.h"

namespace px::parallel {

namespace {

// Checks that `shape`'s dim spec.dim splits into (groups, size, chunk) and returns chunk.
int64_t chunk_size(const Shape& shape, const ShardSpec& spec, int size, const char* what) {
  CHECK(spec.dim < static_cast<int64_t>(shape.size()))
      << what << ": shard dim " << spec.dim << " of a tensor of shape " << shape_str(shape);
  CHECK(spec.groups >= 1 && size >= 1) << what << ": groups " << spec.groups << ", size " << size;
  const int64_t n = shape[spec.dim];
  CHECK_EQ(n % (spec.groups * size), 0) << what << ": dim " << spec.dim << " of shape " << shape_str(shape)
                                        << " does not split into " << spec.groups << " group(s) x " << size
                                        << " shards";
  return n / (spec.groups * size);
}

}  // namespace

// full dim d seen as (groups, size, chunk); shard = full[..., :, rank, :, ...] as (groups * chunk)
Tensor shard_of(const Tensor& full, const ShardSpec& spec, int rank, int size) {
  CHECK(full.defined()) << "shard_of: undefined tensor";
  NoGradGuard no_grad;
  const Tensor src = full.detach();
  if (!spec.sharded()) return clone(src);
  CHECK(rank >= 0 && rank < size) << "shard_of: rank " << rank << " of " << size;
  const int64_t chunk = chunk_size(full.shape(), spec, size, "shard_of");
  std::vector<Tensor> pieces;
  for (int64_t g = 0; g < spec.groups; ++g)
    pieces.push_back(narrow(src, spec.dim, (g * size + rank) * chunk, chunk));
  return pieces.size() == 1 ? clone(pieces[0]) : cat(pieces, spec.dim);
}

// gathered (size, ..., groups * chunk @ dim, ...) -> (groups, size, chunk) along dim -> full
Tensor gather_shards(const Tensor& shard, const ShardSpec& spec, ProcessGroup& tp) {
  CHECK(shard.defined()) << "gather_shards: undefined tensor";
  NoGradGuard no_grad;
  const Tensor src = shard.detach();
  if (!spec.sharded()) return clone(src);
  const int size = tp.size();
  const int64_t d = spec.dim;
  const int64_t chunk = chunk_size(shard.shape(), spec, 1, "gather_shards");
  // The shard with `d` moved to the front, so all_gather's dim-0 concatenation stacks the ranks.
  std::vector<int64_t> to_front{d};
  for (int64_t i = 0; i < shard.dim(); ++i)
    if (i != d) to_front.push_back(i);
  const Tensor front = contiguous(permute(src, to_front));  // (groups * chunk, rest...)
  Shape gathered_shape = front.shape();
  gathered_shape[0] *= size;
  // (size * groups * chunk, rest...)
  const Tensor gathered = Tensor::empty(gathered_shape, shard.dtype(), shard.device());
  tp.all_gather(front, gathered)->wait();
  // (size, groups, chunk, rest...) -> (groups, size, chunk, rest...) -> (groups * size * chunk, rest...)
  Shape split_shape{size, spec.groups, chunk};
  split_shape.insert(split_shape.end(), front.shape().begin() + 1, front.shape().end());
  const Tensor full_front = reshape(transpose(reshape(gathered, split_shape), 0, 1), gathered_shape);
  // Move dim 0 back to position d.
  std::vector<int64_t> back;
  for (int64_t i = 1; i <= d; ++i) back.push_back(i);
  back.push_back(0);
  for (int64_t i = d + 1; i < shard.dim(); ++i) back.push_back(i);
  return contiguous(permute(full_front, back));
}

std::map<std::string, ShardSpec> collect_shard_specs(nn::Module& root) {
  std::set<std::string> parameter_names;
  for (const auto& [name, param] : root.named_parameters()) parameter_names.insert(name);
  std::map<std::string, ShardSpec> specs;
  for (const auto& [prefix, module] : root.named_modules()) {
    const auto* tp_module = dynamic_cast<const TensorParallelModule*>(module);
    if (tp_module == nullptr) continue;
    std::set<std::string> own_names;
    for (const auto& [name, param] : module->named_parameters()) own_names.insert(name);
    for (const auto& [local_name, spec] : tp_module->shard_specs()) {
      CHECK(own_names.count(local_name) == 1)
          << module->type_name() << " '" << prefix << "' declares a shard spec for '" << local_name
          << "', which is not one of its parameters";
      if (!spec.sharded()) continue;
      const std::string name = prefix.empty() ? local_name : prefix + "." + local_name;
      // A tied tensor appears in named_parameters() once, under its first name; other names are not entries.
      if (parameter_names.count(name) == 0) continue;
      specs[name] = spec;
    }
  }
  return specs;
}

}  // namespace px::parallel

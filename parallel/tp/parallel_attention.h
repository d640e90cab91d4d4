// ParallelMultiheadAttention: nn::MultiheadAttention with its heads split over the tp group: the QKV
// (or Q and KV) projections column-parallel, the output projection row-parallel; same names and init.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/attention.h"
#include "core/nn/dropout.h"
#include "parallel/tp/parallel_linear.h"

namespace px::parallel {

// Parameters as nn::MultiheadAttention's, sharded: self-attention qkv.weight (3d / tp, d) holding this rank's
// heads of q, k and v (ShardSpec dim 0, groups 3), qkv.bias (3d / tp); cross-attention q.weight (d / tp, d),
// kv.weight (2d / tp, d) (groups 2) and their biases; out.weight (d, d / tp), out.bias (d) replicated.
// Initialisation draws exactly what nn::MultiheadAttention draws from init_gen (the Linears' defaults, then
// the xavier (3d, d) in-projection) and keeps the slices, so tp = N starts from tp = 1's weights.
// num_heads % tp != 0 is a px::ConfigError. Attention-probability dropout masks come from `sharded_dropout_gen`,
// which must differ per tp rank (each rank drops its own heads' probabilities).
class ParallelMultiheadAttention : public nn::Module, public TensorParallelModule {
 public:
  ParallelMultiheadAttention(int64_t d_model, int64_t num_heads, double dropout, Generator& init_gen,
                             Generator& sharded_dropout_gen, bool self_attention, ProcessGroup& tp,
                             DType dtype = DType::f32);

  // As nn::MultiheadAttention::forward; x replicated over tp; the cache holds this rank's heads
  // (B, H / tp, S, dh). pos (B or 1, T, d), when given, is added to the queries' and keys' input but not the
  // values' (DETR: q = k = x + pos, v = x). -> (B, T, d) replicated
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor(), bool causal = false,
                 nn::KVCache* cache = nullptr, const Tensor& pos = Tensor()) const;
  // As nn::MultiheadAttention::forward_cross. x (B, T, d), memory (B, S, d) replicated; query_pos (B or 1, T, d)
  // is added to x for the queries, memory_pos (B or 1, S, d) to memory for the keys (not the values): DETR's
  // decoder. -> (B, T, d) replicated
  Tensor forward_cross(const Tensor& x, const Tensor& memory, const Tensor& memory_key_padding_mask = Tensor(),
                       nn::KVCache* cache = nullptr, const Tensor& query_pos = Tensor(),
                       const Tensor& memory_pos = Tensor()) const;
  // Own parameters are all in child Linears, which declare their specs; nothing here.
  std::vector<std::pair<std::string, ShardSpec>> shard_specs() const override { return {}; }

  int64_t d_model() const { return d_model_; }
  int64_t num_heads() const { return num_heads_; }  // full
  int64_t local_heads() const { return local_heads_; }

 private:
  // `projection`'s local output (B, L, n d_local) for n row blocks of which the first n - 1 (queries, keys) see
  // x + pos and the last (values) x alone; projection->forward(x) without pos.
  Tensor project_with_pos(const ColumnParallelLinear& projection, int64_t n, const Tensor& x, const Tensor& pos) const;

  int64_t d_model_, num_heads_, local_heads_;
  ProcessGroup* tp_;
  std::shared_ptr<ColumnParallelLinear> qkv_, q_, kv_;  // (3d -> 3d / tp), (d / tp), (2d / tp)
  std::shared_ptr<RowParallelLinear> out_;  // d / tp -> d
  std::shared_ptr<nn::Dropout> attn_dropout_;
};

}  // namespace px::parallel

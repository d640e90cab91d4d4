// ParallelMultiheadAttention: construction as nn::MultiheadAttention with this rank's slices of the xavier
// in-projection; forward runs nn::attend_self / attend_cross over the local heads.
#include "parallel/tp/parallel_attention.h"

#include <string>

#include "core/ops/ops.h"
#include "core/util/error.h"

namespace px::parallel {

namespace {

// num_heads % tp != 0 cannot be split; checked before anything is drawn.
int64_t local_heads_or_throw(int64_t num_heads, const ProcessGroup& tp) {
  if (num_heads % tp.size() != 0) {
    throw ConfigError("attention num_heads " + std::to_string(num_heads) +
                      " is not divisible by the tensor-parallel size " + std::to_string(tp.size()));
  }
  return num_heads / tp.size();
}

// pos (B or 1, L, d) for x (B, L, d).
void check_positions(const Tensor& pos, const Tensor& x) {
  CHECK(pos.dim() == 3 && (pos.size(0) == x.size(0) || pos.size(0) == 1) && pos.size(1) == x.size(1) &&
        pos.size(2) == x.size(2))
      << "ParallelMultiheadAttention: positions " << pos.str() << " for input " << x.str();
}

}  // namespace

ParallelMultiheadAttention::ParallelMultiheadAttention(int64_t d_model, int64_t num_heads, double dropout,
                                                       Generator& init_gen, Generator& sharded_dropout_gen,
                                                       bool self_attention, ProcessGroup& tp, DType dtype)
    : Module("ParallelMultiheadAttention"),
      d_model_(d_model),
      num_heads_(num_heads),
      local_heads_(local_heads_or_throw(num_heads, tp)),
      tp_(&tp) {
  CHECK(d_model > 0 && num_heads > 0 && d_model % num_heads == 0)
      << "ParallelMultiheadAttention: d_model " << d_model << " must be a positive multiple of num_heads "
      << num_heads;
  if (self_attention) {
    qkv_ = register_module("qkv", std::make_shared<ColumnParallelLinear>(d_model, 3 * d_model, init_gen, tp, true,
                                                                         dtype, /*groups=*/3));
  } else {
    q_ = register_module("q", std::make_shared<ColumnParallelLinear>(d_model, d_model, init_gen, tp, true, dtype,
                                                                     /*groups=*/1));
    kv_ = register_module("kv", std::make_shared<ColumnParallelLinear>(d_model, 2 * d_model, init_gen, tp, true,
                                                                       dtype, /*groups=*/2));
  }
  out_ = register_module("out", std::make_shared<RowParallelLinear>(d_model, d_model, init_gen, tp, true, dtype,
                                                                    /*input_is_parallel=*/true));
  attn_dropout_ = register_module("attn_dropout", std::make_shared<nn::Dropout>(dropout, sharded_dropout_gen));

  // nn::MultiheadAttention::init_like_torch on the full (3d, d) draw, keeping this rank's rows of q, k, v.
  NoGradGuard no_grad;
  const int64_t d = d_model_;
  const Tensor w_in = nn::draw_in_projection(d, init_gen, dtype);  // (3d, d), rows q, k, v
  const int rank = tp_->rank(), size = tp_->size();
  if (qkv_) {
    copy_(qkv_->weight(), shard_of(w_in, ShardSpec{0, 3}, rank, size));
    fill_(qkv_->bias(), 0.0);
  } else {
    copy_(q_->weight(), shard_of(narrow(w_in, 0, 0, d), ShardSpec{0, 1}, rank, size));
    copy_(kv_->weight(), shard_of(narrow(w_in, 0, d, 2 * d), ShardSpec{0, 2}, rank, size));
    fill_(q_->bias(), 0.0);
    fill_(kv_->bias(), 0.0);
  }
  fill_(out_->bias(), 0.0);
}

// [(x + pos) W_1^T, ..., (x + pos) W_{n-1}^T, x W_n^T] + b, W_i this rank's i-th row block.
Tensor ParallelMultiheadAttention::project_with_pos(const ColumnParallelLinear& projection, int64_t n,
                                                    const Tensor& x, const Tensor& pos) const {
  if (!pos.defined()) return projection.forward(x);
  check_positions(pos, x);
  const int64_t d_local = local_heads_ * (d_model_ / num_heads_);
  return cat({projection.forward_features(x + pos, 0, (n - 1) * d_local),
              projection.forward_features(x, (n - 1) * d_local, d_local)},
             2);  // (B, L, n d_local)
}

// y = out(attend_self([(x + pos) W_q, (x + pos) W_k, x W_v])) over the local heads; the row-parallel `out` sums
// the ranks' parts.
Tensor ParallelMultiheadAttention::forward(const Tensor& x, const Tensor& key_padding_mask, bool causal,
                                           nn::KVCache* cache, const Tensor& pos) const {
  CHECK(qkv_ != nullptr) << "ParallelMultiheadAttention::forward: this module was built for cross-attention "
                            "(call forward_cross)";
  nn::check_sequence(x, d_model_, "ParallelMultiheadAttention", "x");
  return out_->forward(nn::attend_self(project_with_pos(*qkv_, 3, x, pos), local_heads_, d_model_ / num_heads_,
                                       key_padding_mask, causal, cache, *attn_dropout_));
}

// y = out(attend_cross((x + query_pos) W_q, [(memory + memory_pos) W_k, memory W_v])) over the local heads.
Tensor ParallelMultiheadAttention::forward_cross(const Tensor& x, const Tensor& memory,
                                                 const Tensor& memory_key_padding_mask, nn::KVCache* cache,
                                                 const Tensor& query_pos, const Tensor& memory_pos) const {
  CHECK(qkv_ == nullptr) << "ParallelMultiheadAttention::forward_cross: this module was built for self-attention "
                            "(call forward)";
  nn::check_sequence(x, d_model_, "ParallelMultiheadAttention", "x");
  const auto project_memory = [&](const Tensor& m) { return project_with_pos(*kv_, 2, m, memory_pos); };
  if (query_pos.defined()) check_positions(query_pos, x);
  const Tensor q = q_->forward(query_pos.defined() ? x + query_pos : x);  // (B, T, d_local)
  return out_->forward(nn::attend_cross(q, memory, project_memory, local_heads_, d_model_ / num_heads_, d_model_,
                                        memory_key_padding_mask, cache, *attn_dropout_));
}

}  // namespace px::parallel

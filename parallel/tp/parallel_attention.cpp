// ParallelMultiheadAttention: construction as nn::MultiheadAttention with this rank's slices of the xavier
// in-projection, the masked scaled dot-product core over local heads, and the local-head key/value cache.
#include "parallel/tp/parallel_attention.h"

#include <cmath>
#include <limits>
#include <string>

#include "core/ops/ops.h"
#include "core/util/error.h"

namespace px::parallel {

namespace {

void check_sequence(const Tensor& t, int64_t d_model, const char* what) {
  CHECK(t.defined() && t.dim() == 3 && t.size(2) == d_model)
      << "ParallelMultiheadAttention(d_model " << d_model << "): " << what << " must be (B, L, d_model), got "
      << (t.defined() ? t.str() : std::string("undefined"));
}

// num_heads % tp != 0 cannot be split; checked before anything is drawn.
int64_t local_heads_or_throw(int64_t num_heads, const ProcessGroup& tp) {
  if (num_heads % tp.size() != 0) {
    throw ConfigError("attention num_heads " + std::to_string(num_heads) +
                      " is not divisible by the tensor-parallel size parallel.tp = " + std::to_string(tp.size()));
  }
  return num_heads / tp.size();
}

// (B, L, n * d_local) -> n tensors (B, local_heads, L, dh), the i-th from columns [i d_local, (i + 1) d_local).
std::vector<Tensor> split_local_heads(const Tensor& packed, int64_t n, int64_t local_heads, int64_t head_dim) {
  const int64_t B = packed.size(0), L = packed.size(1), d_local = local_heads * head_dim;
  CHECK_EQ(packed.size(2), n * d_local) << "ParallelMultiheadAttention: projection " << packed.str();
  std::vector<Tensor> heads;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor part = narrow(packed, 2, i * d_local, d_local);  // (B, L, d_local)
    heads.push_back(transpose(reshape(part, {B, L, local_heads, head_dim}), 1, 2));
  }
  return heads;
}

// out(concat_h(softmax(q_h k_h^T / sqrt(dh) + masks) v_h)) over the local heads, masked entries at -inf before
// the softmax; `out` (row-parallel) sums the ranks' parts. q (B, H / tp, T, dh), k and v (B, H / tp, S, dh);
// key_padding_mask bool (B, S) or undefined; causal with queries at absolute positions q_offset..
// -> (B, T, d), replicated
Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask, bool causal,
              int64_t q_offset, const nn::Dropout& attn_dropout, const RowParallelLinear& out) {
  const int64_t B = q.size(0), h = q.size(1), T = q.size(2), S = k.size(2), head_dim = q.size(3);
  constexpr double kMasked = -std::numeric_limits<double>::infinity();
  Tensor scores = matmul(q, transpose(k, 2, 3)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));  // (B,h,T,S)
  if (key_padding_mask.defined()) {
    CHECK(key_padding_mask.dtype() == DType::boolean && key_padding_mask.shape() == (Shape{B, S}))
        << "ParallelMultiheadAttention: key_padding_mask must be bool (B, S) = (" << B << ", " << S << "), got "
        << key_padding_mask.str();
    scores = masked_fill(scores, reshape(key_padding_mask, {B, 1, 1, S}), kMasked);
  }
  if (causal) scores = masked_fill(scores, nn::causal_mask(T, S, q_offset, q.device()), kMasked);
  const Tensor probs = attn_dropout.forward(softmax(scores));  // (B, H / tp, T, S)
  const Tensor context = transpose(matmul(probs, v), 1, 2);  // (B, T, H / tp, dh)
  return out.forward(reshape(context, {B, T, h * head_dim}));
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
  const double bound = std::sqrt(6.0 / static_cast<double>(d + 3 * d));
  const Tensor w_in = rand({3 * d, d}, init_gen, -bound, bound, dtype);  // (3d, d), rows q, k, v
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

Tensor ParallelMultiheadAttention::forward(const Tensor& x, const Tensor& key_padding_mask, bool causal,
                                           nn::KVCache* cache) const {
  CHECK(qkv_ != nullptr) << "ParallelMultiheadAttention::forward: this module was built for cross-attention "
                            "(call forward_cross)";
  check_sequence(x, d_model_, "x");
  const int64_t head_dim = d_model_ / num_heads_;
  const std::vector<Tensor> qkv = split_local_heads(qkv_->forward(x), 3, local_heads_, head_dim);
  Tensor k = qkv[1], v = qkv[2];
  const int64_t past = cache != nullptr ? cache->length() : 0;
  if (cache != nullptr) {
    if (!cache->empty()) {
      CHECK(cache->k.size(0) == x.size(0) && cache->k.size(1) == local_heads_)
          << "ParallelMultiheadAttention: cache " << cache->k.str() << " does not match input " << x.str()
          << " with " << local_heads_ << " local heads";
      k = cat({cache->k, k}, 2);
      v = cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  return attend(qkv[0], k, v, key_padding_mask, causal, past, *attn_dropout_, *out_);
}

Tensor ParallelMultiheadAttention::forward_cross(const Tensor& x, const Tensor& memory,
                                                 const Tensor& memory_key_padding_mask, nn::KVCache* cache) const {
  CHECK(qkv_ == nullptr) << "ParallelMultiheadAttention::forward_cross: this module was built for self-attention "
                            "(call forward)";
  check_sequence(x, d_model_, "x");
  const int64_t head_dim = d_model_ / num_heads_;
  const Tensor q = split_local_heads(q_->forward(x), 1, local_heads_, head_dim)[0];
  if (cache != nullptr && !cache->empty()) {
    CHECK(cache->k.size(0) == x.size(0) && cache->k.size(1) == local_heads_)
        << "ParallelMultiheadAttention: cached memory " << cache->k.str() << " does not match x " << x.str()
        << " with " << local_heads_ << " local heads";
    return attend(q, cache->k, cache->v, memory_key_padding_mask, false, 0, *attn_dropout_, *out_);
  }
  check_sequence(memory, d_model_, "memory");
  CHECK_EQ(memory.size(0), x.size(0)) << "ParallelMultiheadAttention: memory " << memory.str() << " for x "
                                      << x.str();
  const std::vector<Tensor> kv = split_local_heads(kv_->forward(memory), 2, local_heads_, head_dim);
  if (cache != nullptr) {
    cache->k = kv[0];
    cache->v = kv[1];
  }
  return attend(q, kv[0], kv[1], memory_key_padding_mask, false, 0, *attn_dropout_, *out_);
}

}  // namespace px::parallel

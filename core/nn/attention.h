// MultiheadAttention: scaled dot-product attention over num_heads heads with fused projections, key
// padding and causal masks, attention dropout, and a key/value cache for incremental decoding.
#pragma once

#include <memory>
#include <vector>

#include "core/nn/dropout.h"
#include "core/nn/linear.h"
#include "core/nn/module.h"
#include "core/util/generator.h"

namespace px::nn {

// Bool (T, S): true where key j lies after query i, whose absolute position is q_offset + i (the causal mask of
// queries at positions q_offset.. over keys 0..S-1).
Tensor causal_mask(int64_t T, int64_t S, int64_t q_offset, Device device);

// Keys and values one attention layer has seen so far while decoding incrementally.
// Self-attention appends the new positions' projections at each step; cross-attention fills it once
// with the projected encoder output and reuses it. Undefined tensors mean "nothing cached yet".
struct KVCache {
  Tensor k;  // (B, H, S_so_far, dh)
  Tensor v;  // (B, H, S_so_far, dh)

  bool empty() const { return !k.defined(); }
  int64_t length() const { return empty() ? 0 : k.size(2); }
};

// Parameters (self-attention): qkv.weight (3d, d) with rows q, k, v (torch's in_proj_weight), qkv.bias (3d),
// out.weight (d, d), out.bias (d). Cross-attention has q.weight (d, d), q.bias (d), kv.weight (2d, d) with
// rows k, v, kv.bias (2d) instead of qkv. Every projection is a plain Linear so tensor parallelism can swap
// in ColumnParallelLinear (qkv, q, kv) and RowParallelLinear (out).
//
// Initialisation follows torch.nn.MultiheadAttention: the whole (3d, d) in-projection is drawn
// xavier-uniform, U(-sqrt(6 / (d + 3d)), +sqrt(6 / (d + 3d))) (cross-attention splits it into q's and kv's
// rows), in-projection and output biases are zero, and out.weight keeps Linear's default U(+-1/sqrt(d)).
class MultiheadAttention : public Module {
 public:
  // Every draw comes from init_gen (the Linears' default draws, then the xavier in-projection, which
  // replaces theirs); attention-dropout masks come from dropout_gen, which must outlive the module.
  // d_model must be divisible by num_heads.
  MultiheadAttention(int64_t d_model, int64_t num_heads, double dropout, Generator& init_gen,
                     Generator& dropout_gen, bool self_attention, DType dtype = DType::f32);
  // One generator for both.
  MultiheadAttention(int64_t d_model, int64_t num_heads, double dropout, Generator& gen, bool self_attention,
                     DType dtype = DType::f32)
      : MultiheadAttention(d_model, num_heads, dropout, gen, gen, self_attention, dtype) {}

  // Self-attention: softmax(Q K^T / sqrt(dh) + masks) V with Q, K, V projected from x, heads concatenated
  // and projected by `out`.
  // x (B, T, d); key_padding_mask bool (B, S) with true = padding (masked out) or undefined, where S counts
  // the cached positions too; causal masks key j for query i when j > i + cache length.
  // With a cache, x holds the next T positions: their keys/values are appended to it and they attend to
  // every cached position, so decoding one token at a time costs O(length) per step.
  // -> (B, T, d)
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor(), bool causal = false,
                 KVCache* cache = nullptr) const;
  Tensor operator()(const Tensor& x, const Tensor& key_padding_mask = Tensor(), bool causal = false,
                    KVCache* cache = nullptr) const {
    return forward(x, key_padding_mask, causal, cache);
  }

  // Cross-attention: queries from x, keys and values projected from memory.
  // x (B, T, d); memory (B, S, d); memory_key_padding_mask bool (B, S) or undefined.
  // With a cache, the first call stores the projected memory and later calls reuse it (memory may then be
  // undefined). -> (B, T, d)
  Tensor forward_cross(const Tensor& x, const Tensor& memory, const Tensor& memory_key_padding_mask = Tensor(),
                       KVCache* cache = nullptr) const;

  int64_t d_model() const { return d_model_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return d_model_ / num_heads_; }
  bool is_self_attention() const { return qkv_ != nullptr; }

 private:
  // Draws the (3d, d) xavier-uniform in-projection and zeroes the biases.
  void init_like_torch(Generator& gen, DType dtype);
  // (B, L, n * d) -> n tensors (B, H, L, dh), the i-th from columns [i d, (i + 1) d).
  std::vector<Tensor> split_heads(const Tensor& packed, int64_t n) const;
  // q (B, H, T, dh), k and v (B, H, S, dh); key_padding_mask (B, S) or undefined; causal with queries at
  // absolute positions q_offset.. -> (B, T, d) after the output projection.
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask, bool causal,
                int64_t q_offset) const;

  int64_t d_model_, num_heads_;
  std::shared_ptr<Linear> qkv_;  // d -> 3d (self-attention only)
  std::shared_ptr<Linear> q_;  // d -> d (cross-attention only)
  std::shared_ptr<Linear> kv_;  // d -> 2d (cross-attention only)
  std::shared_ptr<Linear> out_;  // d -> d
  std::shared_ptr<Dropout> attn_dropout_;  // on the attention probabilities
};

}  // namespace px::nn

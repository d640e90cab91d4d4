// MultiheadAttention: scaled dot-product attention over num_heads heads with fused projections, key
// padding and causal masks, attention dropout, and a key/value cache for incremental decoding.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/nn/dropout.h"
#include "core/nn/linear.h"
#include "core/nn/module.h"
#include "core/util/generator.h"

namespace px::nn {

// Keys and values one attention layer has seen so far while decoding incrementally.
// Self-attention appends the new positions' projections at each step; cross-attention fills it once
// with the projected encoder output and reuses it. Undefined tensors mean "nothing cached yet".
// With a capacity, self-attention writes into buffers of that many positions allocated at the first step (k and v
// are then views of their first S_so_far positions), so a step copies only its own positions; without one the
// cache grows by concatenation.
struct KVCache {
  Tensor k;  // (B, H, S_so_far, dh)
  Tensor v;  // (B, H, S_so_far, dh)
  int64_t capacity = 0;  // positions the buffers hold; 0: grow by concatenation
  Tensor k_buffer;       // (B, H, capacity, dh), k's storage when capacity > 0
  Tensor v_buffer;       // (B, H, capacity, dh)

  bool empty() const { return !k.defined(); }
  int64_t length() const { return empty() ? 0 : k.size(2); }
  // Keeps batch rows `rows` (i64 (B'), indices into the current batch), in that order.
  void select_rows(const Tensor& rows);
};

// The multi-head steps MultiheadAttention and parallel::ParallelMultiheadAttention share; `heads` is the number
// of heads this module computes (all of them, or one tp rank's), heads * head_dim = d_local.

// torch.nn.MultiheadAttention's in_proj_weight draw: xavier-uniform over the whole (3d, d) matrix,
// U(-b, b) with b = sqrt(6 / (d + 3d)). -> (3d, d), rows q, k, v
Tensor draw_in_projection(int64_t d_model, Generator& gen, DType dtype);

// Checks t is (B, L, d_model); `module` and `what` name it in the failure.
void check_sequence(const Tensor& t, int64_t d_model, const char* module, const char* what);

// Self-attention of projected inputs: splits qkv (B, T, 3 d_local) into heads, appends k and v to the cache
// (queries then follow the cached positions), and attends with masks and dropout as forward documents.
// -> (B, T, d_local), the heads concatenated, before the output projection
Tensor attend_self(const Tensor& qkv, int64_t heads, int64_t head_dim, const Tensor& key_padding_mask, bool causal,
                   KVCache* cache, const Dropout& attn_dropout);

// Cross-attention of projected queries q (B, T, d_local) over memory (B, S, d_model): keys and values are
// project_memory(memory) (B, S, 2 d_local) split into heads, or the cache's when it holds them (memory may then
// be undefined); a non-empty cache is filled. -> (B, T, d_local), before the output projection
Tensor attend_cross(const Tensor& q, const Tensor& memory, const std::function<Tensor(const Tensor&)>& project_memory,
                    int64_t heads, int64_t head_dim, int64_t d_model, const Tensor& memory_key_padding_mask,
                    KVCache* cache, const Dropout& attn_dropout);

// Parameters (self-attention): qkv.weight (3d, d) with rows q, k, v (torch's in_proj_weight), qkv.bias (3d),
// out.weight (d, d), out.bias (d). Cross-attention has q.weight (d, d), q.bias (d), kv.weight (2d, d) with
// rows k, v, kv.bias (2d) instead of qkv. The single-process layer: models use
// parallel::ParallelMultiheadAttention (the same names, init and steps, at any tp), and its tests compare the
// two.
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

  int64_t d_model_, num_heads_;
  std::shared_ptr<Linear> qkv_;  // d -> 3d (self-attention only)
  std::shared_ptr<Linear> q_;  // d -> d (cross-attention only)
  std::shared_ptr<Linear> kv_;  // d -> 2d (cross-attention only)
  std::shared_ptr<Linear> out_;  // d -> d
  std::shared_ptr<Dropout> attn_dropout_;  // on the attention probabilities
};

}  // namespace px::nn

// Transformer encoder and decoder layers of the translator: attention and feed-forward sublayers with
// residual connections, post-norm as in "Attention Is All You Need" or pre-norm, and incremental decoding.
#pragma once

#include <memory>

#include "core/nn/attention.h"
#include "core/nn/dropout.h"
#include "core/nn/feed_forward.h"
#include "core/nn/layer_norm.h"
#include "core/nn/module.h"
#include "core/util/generator.h"
#include "parallel/tp/parallel_attention.h"
#include "parallel/tp/parallel_feed_forward.h"

namespace px::translator {

// Tensor parallelism for a model: the tp group its attention heads, feed-forward blocks and vocabularies are
// split over, and the dropout stream of the sharded activations (different on every tp rank). Without a group,
// or with a group of one, the plain single-process layers are used.
struct TensorParallel {
  parallel::ProcessGroup* group = nullptr;
  Generator* sharded_dropout_gen = nullptr;  // required when enabled()
  bool enabled() const { return group != nullptr && group->size() > 1; }
};

// A decoder layer's state while decoding one step at a time: its self-attention keys/values so far and
// the projected encoder memory of its cross-attention.
struct DecoderLayerCache {
  nn::KVCache self_attn;
  nn::KVCache cross_attn;
};

// Sublayers: self_attn (MultiheadAttention), ff (FeedForward: fc1, fc2), norm1, norm2 (LayerNorm), dropout1,
// dropout2 on the sublayer outputs. Matches torch.nn.TransformerEncoderLayer(batch_first=True) with
// self_attn.in_proj_* -> self_attn.qkv.*, out_proj -> out, linear1/linear2 -> ff.fc1/ff.fc2.
class TransformerEncoderLayer : public nn::Module {
 public:
  // Initial weights from init_gen; dropout masks from dropout_gen (which must outlive the layer).
  // `dropout` on the sublayer outputs and inside the feed-forward block, `attention_dropout` on the attention
  // probabilities.
  // With tp enabled, self_attn and ff are their tensor-parallel versions (same names, sharded parameters).
  TransformerEncoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, double attention_dropout,
                          nn::Activation activation, bool pre_norm, Generator& init_gen, Generator& dropout_gen,
                          DType dtype = DType::f32, const TensorParallel& tp = {});
  // One generator, and one dropout rate everywhere (torch's layer).
  TransformerEncoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, nn::Activation activation,
                          bool pre_norm, Generator& gen, DType dtype = DType::f32)
      : TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, dropout, activation, pre_norm, gen, gen, dtype) {}

  // post-norm: h = LN1(x + SA(x)), y = LN2(h + FF(h)); pre-norm: h = x + SA(LN1(x)), y = h + FF(LN2(h)).
  // x (B, S, d); key_padding_mask bool (B, S), true = padding, or undefined -> (B, S, d)
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) const;

  bool pre_norm() const { return pre_norm_; }

 private:
  bool pre_norm_;
  std::shared_ptr<nn::MultiheadAttention> self_attn_;  // tp = 1
  std::shared_ptr<parallel::ParallelMultiheadAttention> self_attn_tp_;  // tp > 1
  std::shared_ptr<nn::FeedForward> ff_;  // tp = 1
  std::shared_ptr<parallel::ParallelFeedForward> ff_tp_;  // tp > 1
  std::shared_ptr<nn::LayerNorm> norm1_, norm2_;
  std::shared_ptr<nn::Dropout> dropout1_, dropout2_;
};

// Sublayers: self_attn (causal MultiheadAttention), cross_attn (MultiheadAttention over the encoder memory,
// parameters q.* and kv.*), ff, norm1..3, dropout1..3. Matches torch.nn.TransformerDecoderLayer(batch_first=True)
// with a causal tgt_mask; its multihead_attn.in_proj_weight rows [0, d) are cross_attn.q.weight and rows
// [d, 3d) cross_attn.kv.weight. Targets need no padding mask of their own: with right padding the causal
// mask already keeps real positions from seeing pads.
class TransformerDecoderLayer : public nn::Module {
 public:
  // `dropout` on the sublayer outputs and inside the feed-forward block, `attention_dropout` on the attention
  // probabilities.
  // With tp enabled, self_attn, cross_attn and ff are their tensor-parallel versions.
  TransformerDecoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, double attention_dropout,
                          nn::Activation activation, bool pre_norm, Generator& init_gen, Generator& dropout_gen,
                          DType dtype = DType::f32, const TensorParallel& tp = {});
  // One generator, and one dropout rate everywhere (torch's layer).
  TransformerDecoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, nn::Activation activation,
                          bool pre_norm, Generator& gen, DType dtype = DType::f32)
      : TransformerDecoderLayer(d_model, num_heads, d_ff, dropout, dropout, activation, pre_norm, gen, gen, dtype) {}

  // post-norm: a = LN1(y + SA_causal(y)), c = LN2(a + CA(a, m)), out = LN3(c + FF(c));
  // pre-norm:  a = y + SA_causal(LN1(y)), c = a + CA(LN2(a), m), out = c + FF(LN3(c)).
  // y (B, T, d); memory (B, S, d); memory_key_padding_mask bool (B, S) or undefined -> (B, T, d).
  // With a cache, y holds the positions after those already decoded (usually one) and the cache is updated;
  // memory may be undefined once the cache holds its projections.
  Tensor forward(const Tensor& y, const Tensor& memory, const Tensor& memory_key_padding_mask = Tensor(),
                 DecoderLayerCache* cache = nullptr) const;

  bool pre_norm() const { return pre_norm_; }

 private:
  bool pre_norm_;
  std::shared_ptr<nn::MultiheadAttention> self_attn_, cross_attn_;  // tp = 1
  std::shared_ptr<parallel::ParallelMultiheadAttention> self_attn_tp_, cross_attn_tp_;  // tp > 1
  std::shared_ptr<nn::FeedForward> ff_;  // tp = 1
  std::shared_ptr<parallel::ParallelFeedForward> ff_tp_;  // tp > 1
  std::shared_ptr<nn::LayerNorm> norm1_, norm2_, norm3_;
  std::shared_ptr<nn::Dropout> dropout1_, dropout2_, dropout3_;
};

}  // namespace px::translator

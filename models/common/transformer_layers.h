// Transformer encoder and decoder layers every model builds on (the translator, DETR): the tensor-parallel
// attention and feed-forward sublayers at any tp (a group of one included), post- or pre-norm, positions.
#pragma once

#include <memory>

#include "core/nn/dropout.h"
#include "core/nn/feed_forward.h"
#include "core/nn/layer_norm.h"
#include "core/nn/module.h"
#include "core/util/generator.h"
#include "parallel/tp/parallel_attention.h"
#include "parallel/tp/parallel_feed_forward.h"

namespace px::models {

// Tensor parallelism for a model: the tp group its attention heads, feed-forward blocks and vocabularies are
// split over (none: a group of one), and the dropout stream of the sharded activations, which must differ on
// every tp rank. At a group of one the sharded activations draw from the model's ordinary dropout generator, so
// a one-rank model draws exactly what single-process layers draw.
struct TensorParallel {
  parallel::ProcessGroup* group = nullptr;
  Generator* sharded_dropout_gen = nullptr;  // required when group->size() > 1
};

// tp with its group set: tp.group, or a new one-rank group stored in *owned (which must outlive the layers).
TensorParallel with_group(const TensorParallel& tp, std::unique_ptr<parallel::ProcessGroup>* owned);

// The generator of the sharded activations' dropout: tp's sharded stream at tp > 1, dropout_gen at tp = 1.
Generator& sharded_dropout_generator(const TensorParallel& tp, Generator& dropout_gen);

// A decoder layer's state while decoding one step at a time: its self-attention keys/values so far and
// the projected encoder memory of its cross-attention.
struct DecoderLayerCache {
  nn::KVCache self_attn;
  nn::KVCache cross_attn;
};

// Sublayers: self_attn (ParallelMultiheadAttention), ff (ParallelFeedForward: fc1, fc2), norm1, norm2
// (LayerNorm), dropout1, dropout2 on the sublayer outputs. Matches torch.nn.TransformerEncoderLayer
// (batch_first=True) with self_attn.in_proj_* -> self_attn.qkv.*, out_proj -> out, linear1/linear2 -> ff.fc1/
// ff.fc2, and DETR's TransformerEncoderLayer when positions are given. At tp > 1 the same names hold sharded
// parameters, the slices of the tp = 1 weights drawn from the same generator.
class TransformerEncoderLayer : public nn::Module {
 public:
  // Initial weights from init_gen; dropout masks from dropout_gen (which must outlive the layer).
  // `dropout` on the sublayer outputs and inside the feed-forward block, `attention_dropout` on the attention
  // probabilities.
  TransformerEncoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, double attention_dropout,
                          nn::Activation activation, bool pre_norm, Generator& init_gen, Generator& dropout_gen,
                          DType dtype = DType::f32, const TensorParallel& tp = {});
  // One generator, one dropout rate everywhere (torch's layer), one process.
  TransformerEncoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, nn::Activation activation,
                          bool pre_norm, Generator& gen, DType dtype = DType::f32)
      : TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, dropout, activation, pre_norm, gen, gen, dtype) {}

  // post-norm: h = LN1(x + SA(x)), y = LN2(h + FF(h)); pre-norm: h = x + SA(LN1(x)), y = h + FF(LN2(h)).
  // pos, when given, is added to the attention's queries and keys (not its values) at this layer, as DETR adds
  // its positional encoding at every encoder layer.
  // x (B, S, d); key_padding_mask bool (B, S), true = padding, or undefined; pos (B or 1, S, d) -> (B, S, d)
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor(), const Tensor& pos = Tensor()) const;

  bool pre_norm() const { return pre_norm_; }

 private:
  bool pre_norm_;
  std::unique_ptr<parallel::ProcessGroup> own_group_;  // the group of one when none is given
  std::shared_ptr<parallel::ParallelMultiheadAttention> self_attn_;
  std::shared_ptr<parallel::ParallelFeedForward> ff_;
  std::shared_ptr<nn::LayerNorm> norm1_, norm2_;
  std::shared_ptr<nn::Dropout> dropout1_, dropout2_;
};

// Sublayers: self_attn (causal when asked), cross_attn (over the encoder memory, parameters q.* and kv.*), ff,
// norm1..3, dropout1..3. Matches torch.nn.TransformerDecoderLayer(batch_first=True) with a causal tgt_mask; its
// multihead_attn.in_proj_weight rows [0, d) are cross_attn.q.weight and rows [d, 3d) cross_attn.kv.weight. With
// positions and no causal mask it is DETR's TransformerDecoderLayer. Targets need no padding mask of their own:
// with right padding the causal mask already keeps real positions from seeing pads.
class TransformerDecoderLayer : public nn::Module {
 public:
  // Generators, rates and tp as TransformerEncoderLayer's.
  TransformerDecoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, double attention_dropout,
                          nn::Activation activation, bool pre_norm, Generator& init_gen, Generator& dropout_gen,
                          DType dtype = DType::f32, const TensorParallel& tp = {});
  // One generator, one dropout rate everywhere (torch's layer), one process.
  TransformerDecoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout, nn::Activation activation,
                          bool pre_norm, Generator& gen, DType dtype = DType::f32)
      : TransformerDecoderLayer(d_model, num_heads, d_ff, dropout, dropout, activation, pre_norm, gen, gen, dtype) {}

  // Where the positions go (DETR): query_pos is added to the queries and keys of the self-attention and the
  // queries of the cross-attention, memory_pos to the cross-attention's keys; neither touches a value.
  struct Positions {
    Tensor query;   // (B or 1, T, d) or undefined
    Tensor memory;  // (B or 1, S, d) or undefined
  };

  // post-norm: a = LN1(y + SA(y)), c = LN2(a + CA(a, m)), out = LN3(c + FF(c));
  // pre-norm:  a = y + SA(LN1(y)), c = a + CA(LN2(a), m), out = c + FF(LN3(c)).
  // y (B, T, d); memory (B, S, d); memory_key_padding_mask bool (B, S) or undefined -> (B, T, d).
  // causal masks the self-attention (the translator); DETR's object queries see each other.
  // With a cache, y holds the positions after those already decoded (usually one) and the cache is updated;
  // memory may be undefined once the cache holds its projections.
  Tensor forward(const Tensor& y, const Tensor& memory, const Tensor& memory_key_padding_mask = Tensor(),
                 DecoderLayerCache* cache = nullptr, bool causal = true, const Positions& positions = {}) const;

  bool pre_norm() const { return pre_norm_; }

 private:
  bool pre_norm_;
  std::unique_ptr<parallel::ProcessGroup> own_group_;  // the group of one when none is given
  std::shared_ptr<parallel::ParallelMultiheadAttention> self_attn_, cross_attn_;
  std::shared_ptr<parallel::ParallelFeedForward> ff_;
  std::shared_ptr<nn::LayerNorm> norm1_, norm2_, norm3_;
  std::shared_ptr<nn::Dropout> dropout1_, dropout2_, dropout3_;
};

}  // namespace px::models

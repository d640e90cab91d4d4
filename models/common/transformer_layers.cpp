// TransformerEncoderLayer / TransformerDecoderLayer: sublayer construction in torch's order over the tp group
// (or a group of one), and the residual wiring shared by post-norm and pre-norm.
#include "models/common/transformer_layers.h"

#include "core/ops/ops.h"

namespace px::models {

namespace {

// pre-norm: x + drop(f(norm(x))); post-norm: norm(x + drop(f(x))).
template <typename F>
Tensor residual(const Tensor& x, bool pre_norm, const nn::LayerNorm& norm, const nn::Dropout& drop, F&& sublayer) {
  if (pre_norm) return x + drop.forward(sublayer(norm.forward(x)));
  return norm.forward(x + drop.forward(sublayer(x)));
}

std::shared_ptr<parallel::ParallelMultiheadAttention> make_attention(int64_t d, int64_t heads, double p,
                                                                     Generator& init_gen, Generator& dropout_gen,
                                                                     bool self, DType dtype, const TensorParallel& tp) {
  return std::make_shared<parallel::ParallelMultiheadAttention>(
      d, heads, p, init_gen, sharded_dropout_generator(tp, dropout_gen), self, *tp.group, dtype);
}

std::shared_ptr<parallel::ParallelFeedForward> make_feed_forward(int64_t d, int64_t d_ff, nn::Activation activation,
                                                                 double p, Generator& init_gen, Generator& dropout_gen,
                                                                 DType dtype, const TensorParallel& tp) {
  return std::make_shared<parallel::ParallelFeedForward>(
      d, d_ff, activation, p, init_gen, sharded_dropout_generator(tp, dropout_gen), *tp.group, dtype);
}

std::shared_ptr<nn::LayerNorm> make_norm(int64_t d, DType dtype) {
  return std::make_shared<nn::LayerNorm>(d, 1e-5, true, dtype);
}

}  // namespace

TensorParallel with_group(const TensorParallel& tp, std::unique_ptr<parallel::ProcessGroup>* owned) {
  if (tp.group != nullptr) return tp;
  *owned = std::make_unique<parallel::LocalProcessGroup>("tp");
  TensorParallel single = tp;
  single.group = owned->get();
  return single;
}

Generator& sharded_dropout_generator(const TensorParallel& tp, Generator& dropout_gen) {
  CHECK(tp.group != nullptr) << "TensorParallel: no group (call with_group first)";
  if (tp.group->size() == 1) return dropout_gen;
  CHECK(tp.sharded_dropout_gen != nullptr)
      << "TensorParallel: a sharded dropout generator is required over " << tp.group->describe();
  return *tp.sharded_dropout_gen;
}

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout,
                                                 double attention_dropout, nn::Activation activation, bool pre_norm,
                                                 Generator& init_gen, Generator& dropout_gen, DType dtype,
                                                 const TensorParallel& given_tp)
    : Module("TransformerEncoderLayer"), pre_norm_(pre_norm) {
  const TensorParallel tp = with_group(given_tp, &own_group_);
  self_attn_ = register_module(
      "self_attn", make_attention(d_model, num_heads, attention_dropout, init_gen, dropout_gen, true, dtype, tp));
  ff_ = register_module("ff", make_feed_forward(d_model, d_ff, activation, dropout, init_gen, dropout_gen, dtype, tp));
  norm1_ = register_module("norm1", make_norm(d_model, dtype));
  norm2_ = register_module("norm2", make_norm(d_model, dtype));
  dropout1_ = register_module("dropout1", std::make_shared<nn::Dropout>(dropout, dropout_gen));
  dropout2_ = register_module("dropout2", std::make_shared<nn::Dropout>(dropout, dropout_gen));
}

// h = x (+) SA(x + pos, x + pos, x, key_padding_mask); y = h (+) FF(h), (+) the residual with post- or pre-norm.
Tensor TransformerEncoderLayer::forward(const Tensor& x, const Tensor& key_padding_mask, const Tensor& pos) const {
  const Tensor h = residual(x, pre_norm_, *norm1_, *dropout1_, [&](const Tensor& t) {
    return self_attn_->forward(t, key_padding_mask, /*causal=*/false, /*cache=*/nullptr, pos);
  });
  return residual(h, pre_norm_, *norm2_, *dropout2_, [&](const Tensor& t) { return ff_->forward(t); });
}

TransformerDecoderLayer::TransformerDecoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout,
                                                 double attention_dropout, nn::Activation activation, bool pre_norm,
                                                 Generator& init_gen, Generator& dropout_gen, DType dtype,
                                                 const TensorParallel& given_tp)
    : Module("TransformerDecoderLayer"), pre_norm_(pre_norm) {
  const TensorParallel tp = with_group(given_tp, &own_group_);
  self_attn_ = register_module(
      "self_attn", make_attention(d_model, num_heads, attention_dropout, init_gen, dropout_gen, true, dtype, tp));
  cross_attn_ = register_module(
      "cross_attn", make_attention(d_model, num_heads, attention_dropout, init_gen, dropout_gen, false, dtype, tp));
  ff_ = register_module("ff", make_feed_forward(d_model, d_ff, activation, dropout, init_gen, dropout_gen, dtype, tp));
  norm1_ = register_module("norm1", make_norm(d_model, dtype));
  norm2_ = register_module("norm2", make_norm(d_model, dtype));
  norm3_ = register_module("norm3", make_norm(d_model, dtype));
  dropout1_ = register_module("dropout1", std::make_shared<nn::Dropout>(dropout, dropout_gen));
  dropout2_ = register_module("dropout2", std::make_shared<nn::Dropout>(dropout, dropout_gen));
  dropout3_ = register_module("dropout3", std::make_shared<nn::Dropout>(dropout, dropout_gen));
}

// a = y (+) SA(y + qp, y + qp, y); c = a (+) CA(a + qp, memory + mp, memory); out = c (+) FF(c).
Tensor TransformerDecoderLayer::forward(const Tensor& y, const Tensor& memory, const Tensor& memory_key_padding_mask,
                                        DecoderLayerCache* cache, bool causal, const Positions& positions) const {
  nn::KVCache* self_cache = cache != nullptr ? &cache->self_attn : nullptr;
  nn::KVCache* cross_cache = cache != nullptr ? &cache->cross_attn : nullptr;
  const Tensor a = residual(y, pre_norm_, *norm1_, *dropout1_, [&](const Tensor& t) {
    return self_attn_->forward(t, Tensor(), causal, self_cache, positions.query);
  });
  const Tensor c = residual(a, pre_norm_, *norm2_, *dropout2_, [&](const Tensor& t) {
    return cross_attn_->forward_cross(t, memory, memory_key_padding_mask, cross_cache, positions.query,
                                      positions.memory);
  });
  return residual(c, pre_norm_, *norm3_, *dropout3_, [&](const Tensor& t) { return ff_->forward(t); });
}

}  // namespace px::models

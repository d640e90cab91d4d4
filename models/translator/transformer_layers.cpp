// TransformerEncoderLayer / TransformerDecoderLayer: sublayer construction in torch's order and the
// residual wiring shared by post-norm and pre-norm.
#include "models/translator/transformer_layers.h"

#include "core/ops/ops.h"

namespace px::translator {

namespace {

// pre-norm: x + drop(f(norm(x))); post-norm: norm(x + drop(f(x))).
template <typename F>
Tensor residual(const Tensor& x, bool pre_norm, const nn::LayerNorm& norm, const nn::Dropout& drop, F&& sublayer) {
  if (pre_norm) return x + drop.forward(sublayer(norm.forward(x)));
  return norm.forward(x + drop.forward(sublayer(x)));
}

std::shared_ptr<nn::MultiheadAttention> make_attention(int64_t d, int64_t heads, double p, Generator& init_gen,
                                                      Generator& dropout_gen, bool self, DType dtype) {
  return std::make_shared<nn::MultiheadAttention>(d, heads, p, init_gen, dropout_gen, self, dtype);
}

std::shared_ptr<parallel::ParallelMultiheadAttention> make_parallel_attention(int64_t d, int64_t heads, double p,
                                                                              Generator& init_gen, bool self,
                                                                              DType dtype, const TensorParallel& tp) {
  CHECK(tp.sharded_dropout_gen != nullptr) << "TensorParallel: sharded_dropout_gen is required with tp > 1";
  return std::make_shared<parallel::ParallelMultiheadAttention>(d, heads, p, init_gen, *tp.sharded_dropout_gen, self,
                                                                *tp.group, dtype);
}

std::shared_ptr<parallel::ParallelFeedForward> make_parallel_feed_forward(int64_t d, int64_t d_ff,
                                                                         nn::Activation activation, double p,
                                                                         Generator& init_gen, DType dtype,
                                                                         const TensorParallel& tp) {
  CHECK(tp.sharded_dropout_gen != nullptr) << "TensorParallel: sharded_dropout_gen is required with tp > 1";
  return std::make_shared<parallel::ParallelFeedForward>(d, d_ff, activation, p, init_gen, *tp.sharded_dropout_gen,
                                                         *tp.group, dtype);
}

}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout,
                                                 double attention_dropout, nn::Activation activation, bool pre_norm,
                                                 Generator& init_gen, Generator& dropout_gen, DType dtype,
                                                 const TensorParallel& tp)
    : Module("TransformerEncoderLayer"), pre_norm_(pre_norm) {
  if (tp.enabled()) {
    self_attn_tp_ = register_module(
        "self_attn", make_parallel_attention(d_model, num_heads, attention_dropout, init_gen, true, dtype, tp));
    ff_tp_ = register_module("ff", make_parallel_feed_forward(d_model, d_ff, activation, dropout, init_gen, dtype, tp));
  } else {
    self_attn_ = register_module(
        "self_attn", make_attention(d_model, num_heads, attention_dropout, init_gen, dropout_gen, true, dtype));
    ff_ = register_module(
        "ff", std::make_shared<nn::FeedForward>(d_model, d_ff, activation, dropout, init_gen, dropout_gen, dtype));
  }
  norm1_ = register_module("norm1", std::make_shared<nn::LayerNorm>(d_model, 1e-5, true, dtype));
  norm2_ = register_module("norm2", std::make_shared<nn::LayerNorm>(d_model, 1e-5, true, dtype));
  dropout1_ = register_module("dropout1", std::make_shared<nn::Dropout>(dropout, dropout_gen));
  dropout2_ = register_module("dropout2", std::make_shared<nn::Dropout>(dropout, dropout_gen));
}

// h = x (+) SA(x, key_padding_mask); y = h (+) FF(h), (+) being the residual with post- or pre-norm.
Tensor TransformerEncoderLayer::forward(const Tensor& x, const Tensor& key_padding_mask) const {
  const Tensor h = residual(x, pre_norm_, *norm1_, *dropout1_, [&](const Tensor& t) {
    return self_attn_ ? self_attn_->forward(t, key_padding_mask) : self_attn_tp_->forward(t, key_padding_mask);
  });
  return residual(h, pre_norm_, *norm2_, *dropout2_,
                  [&](const Tensor& t) { return ff_ ? ff_->forward(t) : ff_tp_->forward(t); });
}

TransformerDecoderLayer::TransformerDecoderLayer(int64_t d_model, int64_t num_heads, int64_t d_ff, double dropout,
                                                 double attention_dropout, nn::Activation activation, bool pre_norm,
                                                 Generator& init_gen, Generator& dropout_gen, DType dtype,
                                                 const TensorParallel& tp)
    : Module("TransformerDecoderLayer"), pre_norm_(pre_norm) {
  if (tp.enabled()) {
    self_attn_tp_ = register_module(
        "self_attn", make_parallel_attention(d_model, num_heads, attention_dropout, init_gen, true, dtype, tp));
    cross_attn_tp_ = register_module(
        "cross_attn", make_parallel_attention(d_model, num_heads, attention_dropout, init_gen, false, dtype, tp));
    ff_tp_ = register_module("ff", make_parallel_feed_forward(d_model, d_ff, activation, dropout, init_gen, dtype, tp));
  } else {
    self_attn_ = register_module(
        "self_attn", make_attention(d_model, num_heads, attention_dropout, init_gen, dropout_gen, true, dtype));
    cross_attn_ = register_module(
        "cross_attn", make_attention(d_model, num_heads, attention_dropout, init_gen, dropout_gen, false, dtype));
    ff_ = register_module(
        "ff", std::make_shared<nn::FeedForward>(d_model, d_ff, activation, dropout, init_gen, dropout_gen, dtype));
  }
  norm1_ = register_module("norm1", std::make_shared<nn::LayerNorm>(d_model, 1e-5, true, dtype));
  norm2_ = register_module("norm2", std::make_shared<nn::LayerNorm>(d_model, 1e-5, true, dtype));
  norm3_ = register_module("norm3", std::make_shared<nn::LayerNorm>(d_model, 1e-5, true, dtype));
  dropout1_ = register_module("dropout1", std::make_shared<nn::Dropout>(dropout, dropout_gen));
  dropout2_ = register_module("dropout2", std::make_shared<nn::Dropout>(dropout, dropout_gen));
  dropout3_ = register_module("dropout3", std::make_shared<nn::Dropout>(dropout, dropout_gen));
}

// a = y (+) SA_causal(y); c = a (+) CA(a, memory); out = c (+) FF(c).
Tensor TransformerDecoderLayer::forward(const Tensor& y, const Tensor& memory, const Tensor& memory_key_padding_mask,
                                        DecoderLayerCache* cache) const {
  nn::KVCache* self_cache = cache != nullptr ? &cache->self_attn : nullptr;
  nn::KVCache* cross_cache = cache != nullptr ? &cache->cross_attn : nullptr;
  const Tensor a = residual(y, pre_norm_, *norm1_, *dropout1_, [&](const Tensor& t) {
    return self_attn_ ? self_attn_->forward(t, Tensor(), /*causal=*/true, self_cache)
                      : self_attn_tp_->forward(t, Tensor(), /*causal=*/true, self_cache);
  });
  const Tensor c = residual(a, pre_norm_, *norm2_, *dropout2_, [&](const Tensor& t) {
    return cross_attn_ ? cross_attn_->forward_cross(t, memory, memory_key_padding_mask, cross_cache)
                       : cross_attn_tp_->forward_cross(t, memory, memory_key_padding_mask, cross_cache);
  });
  return residual(c, pre_norm_, *norm3_, *dropout3_,
                  [&](const Tensor& t) { return ff_ ? ff_->forward(t) : ff_tp_->forward(t); });
}

}  // namespace px::translator

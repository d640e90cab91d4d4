// MultiheadAttention: construction with torch's initialisation, head splitting, the masked scaled
// dot-product core shared by self- and cross-attention, and the key/value cache bookkeeping.
#include "core/nn/attention.h"

#include <cmath>
#include <limits>

#include "core/ops/ops.h"

namespace px::nn {

// k_pos > q_pos with q_pos = q_offset + i, k_pos = j.
Tensor causal_mask(int64_t T, int64_t S, int64_t q_offset, Device device) {
  const Tensor q_pos = reshape(narrow(arange(q_offset + T, DType::i64, device), 0, q_offset, T), {T, 1});
  const Tensor k_pos = reshape(arange(S, DType::i64, device), {1, S});
  return gt(k_pos, q_pos);
}

namespace {

void check_sequence(const Tensor& t, int64_t d_model, const char* what) {
  CHECK(t.defined() && t.dim() == 3 && t.size(2) == d_model)
      << "MultiheadAttention(d_model " << d_model << "): " << what << " must be (B, L, d_model), got "
      << (t.defined() ? t.str() : std::string("undefined"));
}

}  // namespace

MultiheadAttention::MultiheadAttention(int64_t d_model, int64_t num_heads, double dropout, Generator& init_gen,
                                       Generator& dropout_gen, bool self_attention, DType dtype)
    : Module("MultiheadAttention"), d_model_(d_model), num_heads_(num_heads) {
  CHECK(d_model > 0 && num_heads > 0 && d_model % num_heads == 0)
      << "MultiheadAttention: d_model " << d_model << " must be a positive multiple of num_heads " << num_heads;
  if (self_attention) {
    qkv_ = register_module("qkv", std::make_shared<Linear>(d_model, 3 * d_model, init_gen, true, dtype));
  } else {
    q_ = register_module("q", std::make_shared<Linear>(d_model, d_model, init_gen, true, dtype));
    kv_ = register_module("kv", std::make_shared<Linear>(d_model, 2 * d_model, init_gen, true, dtype));
  }
  out_ = register_module("out", std::make_shared<Linear>(d_model, d_model, init_gen, true, dtype));
  attn_dropout_ = register_module("attn_dropout", std::make_shared<Dropout>(dropout, dropout_gen));
  init_like_torch(init_gen, dtype);
}

// W_in ~ U(-b, b) with b = sqrt(6 / (fan_in + fan_out)) over the whole (3d, d) matrix; b_in = b_out = 0.
void MultiheadAttention::init_like_torch(Generator& gen, DType dtype) {
  NoGradGuard no_grad;
  const int64_t d = d_model_;
  const double bound = std::sqrt(6.0 / static_cast<double>(d + 3 * d));
  const Tensor w_in = rand({3 * d, d}, gen, -bound, bound, dtype);
  if (qkv_) {
    copy_(qkv_->weight(), w_in);
    fill_(qkv_->bias(), 0.0);
  } else {
    copy_(q_->weight(), narrow(w_in, 0, 0, d));
    copy_(kv_->weight(), narrow(w_in, 0, d, 2 * d));
    fill_(q_->bias(), 0.0);
    fill_(kv_->bias(), 0.0);
  }
  fill_(out_->bias(), 0.0);
}

std::vector<Tensor> MultiheadAttention::split_heads(const Tensor& packed, int64_t n) const {
  const int64_t B = packed.size(0), L = packed.size(1);
  std::vector<Tensor> heads;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor part = narrow(packed, 2, i * d_model_, d_model_);  // (B, L, d)
    heads.push_back(transpose(reshape(part, {B, L, num_heads_, head_dim()}), 1, 2));
  }
  return heads;
}

// out(concat_h(softmax(q_h k_h^T / sqrt(dh) + masks) v_h)), masked entries at -inf before the softmax.
Tensor MultiheadAttention::attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask,
                                  bool causal, int64_t q_offset) const {
  const int64_t B = q.size(0), T = q.size(2), S = k.size(2);
  constexpr double kMasked = -std::numeric_limits<double>::infinity();
  Tensor scores = matmul(q, transpose(k, 2, 3)) * (1.0 / std::sqrt(static_cast<double>(head_dim())));  // (B,H,T,S)
  if (key_padding_mask.defined()) {
    CHECK(key_padding_mask.dtype() == DType::boolean && key_padding_mask.shape() == (Shape{B, S}))
        << "MultiheadAttention: key_padding_mask must be bool (B, S) = (" << B << ", " << S << "), got "
        << key_padding_mask.str();
    scores = masked_fill(scores, reshape(key_padding_mask, {B, 1, 1, S}), kMasked);
  }
  if (causal) scores = masked_fill(scores, causal_mask(T, S, q_offset, q.device()), kMasked);
  const Tensor probs = attn_dropout_->forward(softmax(scores));  // (B, H, T, S)
  const Tensor context = transpose(matmul(probs, v), 1, 2);  // (B, T, H, dh)
  return out_->forward(reshape(context, {B, T, d_model_}));
}

// y = attend(x W_q, [cache; x W_k], [cache; x W_v]) with queries at positions cache length + i.
Tensor MultiheadAttention::forward(const Tensor& x, const Tensor& key_padding_mask, bool causal,
                                   KVCache* cache) const {
  CHECK(is_self_attention()) << "MultiheadAttention::forward: this module was built for cross-attention "
                                "(call forward_cross)";
  check_sequence(x, d_model_, "x");
  const std::vector<Tensor> qkv = split_heads(qkv_->forward(x), 3);
  Tensor k = qkv[1], v = qkv[2];
  const int64_t past = cache != nullptr ? cache->length() : 0;
  if (cache != nullptr) {
    if (!cache->empty()) {
      CHECK(cache->k.size(0) == x.size(0) && cache->k.size(1) == num_heads_)
          << "MultiheadAttention: cache " << cache->k.str() << " does not match input " << x.str();
      k = cat({cache->k, k}, 2);
      v = cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  return attend(qkv[0], k, v, key_padding_mask, causal, past);
}

// y = attend(x W_q, memory W_k, memory W_v), the memory projections taken from the cache when it holds them.
Tensor MultiheadAttention::forward_cross(const Tensor& x, const Tensor& memory, const Tensor& memory_key_padding_mask,
                                         KVCache* cache) const {
  CHECK(!is_self_attention()) << "MultiheadAttention::forward_cross: this module was built for self-attention "
                                 "(call forward)";
  check_sequence(x, d_model_, "x");
  const Tensor q = split_heads(q_->forward(x), 1)[0];
  if (cache != nullptr && !cache->empty()) {
    CHECK_EQ(cache->k.size(0), x.size(0)) << "MultiheadAttention: cached memory batch differs from x " << x.str();
    return attend(q, cache->k, cache->v, memory_key_padding_mask, false, 0);
  }
  check_sequence(memory, d_model_, "memory");
  CHECK_EQ(memory.size(0), x.size(0)) << "MultiheadAttention: memory " << memory.str() << " for x " << x.str();
  const std::vector<Tensor> kv = split_heads(kv_->forward(memory), 2);
  if (cache != nullptr) {
    cache->k = kv[0];
    cache->v = kv[1];
  }
  return attend(q, kv[0], kv[1], memory_key_padding_mask, false, 0);
}

}  // namespace px::nn

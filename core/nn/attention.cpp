// MultiheadAttention: construction with torch's initialisation, and the multi-head steps it shares with the
// tensor-parallel layer: head splitting, the key/value cache bookkeeping, and scaled_dot_product_attention.
#include "core/nn/attention.h"

#include <cmath>

#include "core/ops/ops.h"

namespace px::nn {

namespace {

// (B, L, n * heads * head_dim) -> n tensors (B, heads, L, head_dim), the i-th from the i-th block of columns.
std::vector<Tensor> split_heads(const Tensor& packed, int64_t n, int64_t heads, int64_t head_dim) {
  const int64_t B = packed.size(0), L = packed.size(1), d_local = heads * head_dim;
  CHECK_EQ(packed.size(2), n * d_local) << "attention: projection " << packed.str() << " is not " << n << " x "
                                        << heads << " heads of " << head_dim;
  std::vector<Tensor> split;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor part = narrow(packed, 2, i * d_local, d_local);  // (B, L, d_local)
    split.push_back(transpose(reshape(part, {B, L, heads, head_dim}), 1, 2));
  }
  return split;
}

// scaled_dot_product_attention with the module's dropout, heads concatenated: -> (B, T, heads * dh)
Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask, bool causal,
              const Dropout& attn_dropout) {
  const AttentionDropout dropout{attn_dropout.is_training() ? attn_dropout.p() : 0.0, &attn_dropout.generator()};
  const Tensor context = scaled_dot_product_attention(q, k, v, key_padding_mask, causal, dropout);  // (B,h,T,dh)
  const int64_t B = q.size(0), T = q.size(2);
  return reshape(transpose(context, 1, 2), {B, T, q.size(1) * q.size(3)});
}

void check_cache_matches(const KVCache& cache, const Tensor& x, int64_t heads) {
  CHECK(cache.k.size(0) == x.size(0) && cache.k.size(1) == heads)
      << "attention: cache " << cache.k.str() << " does not match input " << x.str() << " with " << heads
      << " heads";
}

// cache.k = [cache.k; k], cache.v = [cache.v; v] along the positions: k, v (B, H, T, dh). With a capacity the new
// positions are copied into the buffers (allocated at the first step) and k, v become views of the filled part.
void append_to_cache(KVCache& cache, const Tensor& k, const Tensor& v) {
  const int64_t length = cache.length(), T = k.size(2);
  if (cache.capacity == 0) {
    const bool first = cache.empty();
    cache.k = first ? k : cat({cache.k, k}, 2);
    cache.v = first ? v : cat({cache.v, v}, 2);
    return;
  }
  CHECK(!grad_enabled()) << "attention: a cache with a capacity is for decoding under NoGradGuard";
  CHECK_LE(length + T, cache.capacity) << "attention: the cache holds " << cache.capacity << " positions, "
                                       << length << " cached and " << T << " new";
  if (cache.empty()) {
    Shape shape = k.shape();
    shape[2] = cache.capacity;
    cache.k_buffer = Tensor::empty(shape, k.dtype(), k.device());
    cache.v_buffer = Tensor::empty(shape, v.dtype(), v.device());
  }
  copy_(narrow(cache.k_buffer, 2, length, T), k);
  copy_(narrow(cache.v_buffer, 2, length, T), v);
  cache.k = narrow(cache.k_buffer, 2, 0, length + T);
  cache.v = narrow(cache.v_buffer, 2, 0, length + T);
}

}  // namespace

void KVCache::select_rows(const Tensor& rows) {
  if (empty()) return;
  if (!k_buffer.defined()) {
    k = index_select(k, 0, rows);
    v = index_select(v, 0, rows);
    return;
  }
  const int64_t length = this->length();
  k_buffer = index_select(k_buffer, 0, rows);
  v_buffer = index_select(v_buffer, 0, rows);
  k = narrow(k_buffer, 2, 0, length);
  v = narrow(v_buffer, 2, 0, length);
}

// W_in ~ U(-b, b), b = sqrt(6 / (fan_in + fan_out)) over the (3d, d) matrix.
Tensor draw_in_projection(int64_t d_model, Generator& gen, DType dtype) {
  const double bound = std::sqrt(6.0 / static_cast<double>(d_model + 3 * d_model));
  return rand({3 * d_model, d_model}, gen, -bound, bound, dtype);
}

void check_sequence(const Tensor& t, int64_t d_model, const char* module, const char* what) {
  CHECK(t.defined() && t.dim() == 3 && t.size(2) == d_model)
      << module << "(d_model " << d_model << "): " << what << " must be (B, L, d_model), got "
      << (t.defined() ? t.str() : std::string("undefined"));
}

// attend(q, [cache; k], [cache; v]) with the queries following the cached positions.
Tensor attend_self(const Tensor& qkv, int64_t heads, int64_t head_dim, const Tensor& key_padding_mask, bool causal,
                   KVCache* cache, const Dropout& attn_dropout) {
  const std::vector<Tensor> split = split_heads(qkv, 3, heads, head_dim);
  Tensor k = split[1], v = split[2];
  if (cache != nullptr) {
    if (!cache->empty()) check_cache_matches(*cache, qkv, heads);
    append_to_cache(*cache, k, v);
    k = cache->k;
    v = cache->v;
  }
  return attend(split[0], k, v, key_padding_mask, causal, attn_dropout);
}

// attend(q, memory W_k, memory W_v), the memory projections taken from the cache when it holds them.
Tensor attend_cross(const Tensor& q, const Tensor& memory, const std::function<Tensor(const Tensor&)>& project_memory,
                    int64_t heads, int64_t head_dim, int64_t d_model, const Tensor& memory_key_padding_mask,
                    KVCache* cache, const Dropout& attn_dropout) {
  const Tensor q_heads = split_heads(q, 1, heads, head_dim)[0];
  if (cache != nullptr && !cache->empty()) {
    check_cache_matches(*cache, q, heads);
    return attend(q_heads, cache->k, cache->v, memory_key_padding_mask, false, attn_dropout);
  }
  check_sequence(memory, d_model, "attention", "memory");
  CHECK_EQ(memory.size(0), q.size(0)) << "attention: memory " << memory.str() << " for queries " << q.str();
  const std::vector<Tensor> kv = split_heads(project_memory(memory), 2, heads, head_dim);
  if (cache != nullptr) {
    cache->k = kv[0];
    cache->v = kv[1];
  }
  return attend(q_heads, kv[0], kv[1], memory_key_padding_mask, false, attn_dropout);
}

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

// W_in = draw_in_projection; b_in = b_out = 0.
void MultiheadAttention::init_like_torch(Generator& gen, DType dtype) {
  NoGradGuard no_grad;
  const int64_t d = d_model_;
  const Tensor w_in = draw_in_projection(d, gen, dtype);  // (3d, d)
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

// y = out(attend_self(x W_qkv))
Tensor MultiheadAttention::forward(const Tensor& x, const Tensor& key_padding_mask, bool causal,
                                   KVCache* cache) const {
  CHECK(is_self_attention()) << "MultiheadAttention::forward: this module was built for cross-attention "
                                "(call forward_cross)";
  check_sequence(x, d_model_, "MultiheadAttention", "x");
  return out_->forward(
      attend_self(qkv_->forward(x), num_heads_, head_dim(), key_padding_mask, causal, cache, *attn_dropout_));
}

// y = out(attend_cross(x W_q, memory W_kv))
Tensor MultiheadAttention::forward_cross(const Tensor& x, const Tensor& memory, const Tensor& memory_key_padding_mask,
                                         KVCache* cache) const {
  CHECK(!is_self_attention()) << "MultiheadAttention::forward_cross: this module was built for self-attention "
                                 "(call forward)";
  check_sequence(x, d_model_, "MultiheadAttention", "x");
  const auto project_memory = [this](const Tensor& m) { return kv_->forward(m); };
  return out_->forward(attend_cross(q_->forward(x), memory, project_memory, num_heads_, head_dim(), d_model_,
                                    memory_key_padding_mask, cache, *attn_dropout_));
}

}  // namespace px::nn

// Scaled dot-product attention: the forward from the score, mask, softmax and dropout kernels, and the
// backward through them by hand (one autograd node for q, k and v).
#include "core/ops/attention.h"

#include <cmath>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/indexing.h"
#include "core/ops/matmul.h"
#include "core/ops/op_utils.h"
#include "core/ops/view.h"

namespace px {

namespace {

// Bool (T, S): true where key j lies after query i, the queries being the last T of S positions.
Tensor causal_mask(int64_t T, int64_t S, Device device) {
  const Tensor q_pos = reshape(narrow(arange(S, DType::i64, device), 0, S - T, T), {T, 1});
  const Tensor k_pos = reshape(arange(S, DType::i64, device), {1, S});
  return gt(k_pos, q_pos);
}

// Rows of a contiguous tensor (..., C) as (R, C), the layout Backend::softmax{,_backward} take.
Tensor rows_view(const Tensor& t) {
  const int64_t c = t.size(-1);
  return t.as_strided({t.numel() / std::max<int64_t>(c, 1), c}, {c, 1}, t.offset());
}

void check_arguments(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask,
                     bool causal, const AttentionDropout& dropout) {
  constexpr const char* kOp = "scaled_dot_product_attention";
  detail::check_defined(q, kOp, "q");
  detail::check_defined(k, kOp, "k");
  detail::check_defined(v, kOp, "v");
  detail::check_same(q, k, kOp);
  detail::check_same(q, v, kOp);
  detail::check_floating(q, kOp);
  CHECK(q.dim() == 4 && k.dim() == 4 && v.shape() == k.shape() && q.size(0) == k.size(0) &&
        q.size(1) == k.size(1) && q.size(3) == k.size(3))
      << kOp << ": q must be (B, H, T, dh) and k, v (B, H, S, dh), got q " << q.str() << ", k " << k.str()
      << ", v " << v.str();
  const int64_t B = q.size(0), T = q.size(2), S = k.size(2);
  if (key_padding_mask.defined()) {
    CHECK(key_padding_mask.dtype() == DType::boolean && key_padding_mask.shape() == (Shape{B, S}))
        << kOp << ": key_padding_mask must be bool (B, S) = (" << B << ", " << S << "), got "
        << key_padding_mask.str();
  }
  CHECK(!causal || T <= S) << kOp << ": causal attention needs no more queries (" << T << ") than keys (" << S
                           << ")";
  CHECK(dropout.p >= 0.0 && dropout.p < 1.0) << kOp << ": dropout probability " << dropout.p << " outside [0, 1)";
  CHECK(dropout.p == 0.0 || dropout.gen != nullptr) << kOp << ": dropout " << dropout.p << " needs a generator";
}

}  // namespace

// out = Pd v, Pd = dropout(P), P = softmax(q k^T / sqrt(dh) + masks)
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_padding_mask, bool causal, const AttentionDropout& dropout) {
  check_arguments(q, k, v, key_padding_mask, causal, dropout);
  const int64_t B = q.size(0), T = q.size(2), S = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  constexpr double kMasked = -std::numeric_limits<double>::infinity();
  Tensor probs, dropped;  // (B, H, T, S): P and Pd
  uint64_t seed = 0, offset = 0;
  Tensor out;  // (B, H, T, dh)
  {
    NoGradGuard no_grad;
    Tensor scores = matmul(q, transpose(k, 2, 3)) * scale;  // (B, H, T, S)
    if (key_padding_mask.defined()) scores = masked_fill(scores, reshape(key_padding_mask, {B, 1, 1, S}), kMasked);
    if (causal) scores = masked_fill(scores, causal_mask(T, S, q.device()), kMasked);
    scores = detail::contiguous_raw(scores);
    probs = detail::empty_like(scores);
    if (probs.numel() > 0) detail::backend_of(q).softmax(rows_view(scores), rows_view(probs), false);
    dropped = probs;
    if (dropout.p > 0.0) {
      seed = dropout.gen->seed();
      offset = dropout.gen->take(static_cast<uint64_t>(probs.numel()));
      dropped = detail::empty_like(probs);
      detail::backend_of(q).dropout(probs, dropped, dropout.p, seed, offset);
    }
    out = matmul(dropped, v);
  }
  if (autograd::any_requires_grad({&q, &k, &v})) {
    constexpr const char* kNode = "ScaledDotProductAttentionBackward";
    autograd::attach(out, kNode, {q, k, v},
                     [scale, p = dropout.p, seed, offset, sq = autograd::SavedTensor(q), sk = autograd::SavedTensor(k),
                      sv = autograd::SavedTensor(v), sp = autograd::SavedTensor(probs),
                      sd = autograd::SavedTensor(dropped)](const Tensor& g) {
                       NoGradGuard no_grad;
                       const Tensor q = sq.unpack(kNode), k = sk.unpack(kNode), v = sv.unpack(kNode);
                       const Tensor probs = sp.unpack(kNode), dropped = sd.unpack(kNode);
                       const Tensor gv = matmul(transpose(dropped, 2, 3), g);  // (B, H, S, dh)
                       Tensor g_probs = detail::contiguous_raw(matmul(g, transpose(v, 2, 3)));  // (B, H, T, S)
                       if (p > 0.0) {
                         Tensor undropped = detail::empty_like(g_probs);
                         detail::backend_of(g).dropout(g_probs, undropped, p, seed, offset);
                         g_probs = undropped;
                       }
                       Tensor g_scores = detail::empty_like(probs);  // (B, H, T, S)
                       if (g_scores.numel() > 0)
                         detail::backend_of(g).softmax_backward(rows_view(probs), rows_view(g_probs),
                                                                rows_view(g_scores), false);
                       g_scores = g_scores * scale;
                       const Tensor gq = matmul(g_scores, k);  // (B, H, T, dh)
                       const Tensor gk = matmul(transpose(g_scores, 2, 3), q);  // (B, H, S, dh)
                       return std::vector<Tensor>{gq, gk, gv};
                     });
  }
  return out;
}

}  // namespace px

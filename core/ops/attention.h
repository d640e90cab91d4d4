// Scaled dot-product attention as one op: softmax(q k^T / sqrt(dh) + masks), dropout on the probabilities,
// times v; forward and its hand-written backward, so a fused kernel can later replace this one op.
#pragma once

#include "core/tensor/tensor.h"
#include "core/util/generator.h"

namespace px {

// Dropout on the attention probabilities: none when p == 0 (pass p = 0 in eval mode); otherwise each
// probability is kept with probability 1 - p and scaled by 1 / (1 - p), the mask drawn from *gen
// exactly as px::dropout draws it (numel counters reserved per call). gen must be set when p > 0.
struct AttentionDropout {
  double p = 0.0;
  Generator* gen = nullptr;
};

// out = dropout(softmax(q k^T / sqrt(dh) + masks)) v with masked scores at -inf before the softmax.
// q (B, H, T, dh); k, v (B, H, S, dh); key_padding_mask bool (B, S) with true = padding, or undefined.
// causal: queries are the last T of the S positions, so key j is masked for query i when j > i + S - T
// (at T == S, torch's is_causal). Every row must keep at least one key. -> (B, H, T, dh)
// Backward: with P the probabilities, D the kept-and-scaled dropout mask and Pd = P * D,
//   dv = Pd^T g, dPd = g v^T, dS = P * (dPd D - sum_j(dPd D P)), dq = dS k / sqrt(dh), dk = dS^T q / sqrt(dh).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_padding_mask = Tensor(), bool causal = false,
                                    const AttentionDropout& dropout = {});

}  // namespace px

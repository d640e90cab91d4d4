// Cross-entropy over logits with label smoothing and ignore_index (fused log-softmax + NLL).
#pragma once

#include "core/tensor/tensor.h"

namespace px {

enum class Reduction { none, mean, sum };

// logits (N, C), target i64 (N) in [0, C) or == ignore_index. Mean divides by the number of
// targets that are not ignored (like torch.nn.functional.cross_entropy).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, Reduction reduction = Reduction::mean);

}  // namespace px

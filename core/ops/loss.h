// Cross-entropy over logits with label smoothing and ignore_index (fused log-softmax + NLL).
#pragma once

#include "core/tensor/tensor.h"

namespace px {

enum class Reduction { none, mean, sum };

// logits (N, C), target i64 (N) in [0, C) or == ignore_index. Mean divides by the number of
// targets that are not ignored (like torch.nn.functional.cross_entropy).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, Reduction reduction = Reduction::mean);

// Per-row losses reduced as cross_entropy reduces them: none keeps them, sum adds them, mean divides the sum by
// the rows whose target is not ignored (0 such rows: nan, as torch). loss (N); ignored bool (N) -> (N) or 0-d
Tensor reduce_loss(const Tensor& loss, const Tensor& ignored, Reduction reduction);

}  // namespace px

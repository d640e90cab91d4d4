// Softmax and log-softmax over the last dim (f32/f64 accumulation, max-subtracted).
#pragma once

#include "core/tensor/tensor.h"

namespace px {

Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);

}  // namespace px

// Matrix products: matmul with batch broadcasting (1-D operands promoted like torch.matmul)
// and linear (y = x W^T + b).
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// a (..., M, K) @ b (..., K, N) -> (..., M, N); batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in), weight (out, in), bias (out) or undefined -> (..., out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace px

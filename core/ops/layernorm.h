// Layer normalisation over the last dim with optional affine weight and bias.
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// x (..., C), weight (C) or undefined, bias (C) or undefined -> (..., C)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace px

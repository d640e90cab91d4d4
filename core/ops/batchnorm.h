// Batch normalisation over the channels of (N, C, ...) as torch.nn.functional.batch_norm (batch statistics and
// running-statistics updates in training), and DETR's frozen batch norm (a fixed per-channel affine).
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// x (N, C, ...) float; weight, bias (C) x's dtype or undefined; running_mean, running_var (C) float buffers or
// undefined. Training (or no running statistics): normalises with the batch's mean and biased variance over N and
// the trailing dims and, when the buffers are given, updates them in place (no graph) to
// (1 - momentum) running + momentum batch, with the unbiased variance. Eval: normalises with the running statistics.
// Statistics are f32 (f64 for f64 x). Gradients to x, weight and bias.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);

// y = x * scale + shift per channel with scale = weight / sqrt(running_var + eps), shift = bias - running_mean *
// scale, all four (C) buffers that get no gradient; x (N, C, ...). Gradients to x only.
Tensor frozen_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                         const Tensor& running_var, double eps = 1e-5);

}  // namespace px

// Pooling and resampling of (N, C, H, W) images: max_pool2d as torch.nn.functional.max_pool2d, and nearest
// interpolation as F.interpolate(mode="nearest") (DETR resizes its padding mask with it).
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace px {

// x (N, C, H, W) float -> (N, C, OH, OW), OH = (H + 2 padding - kernel) / stride + 1 (floor); padding counts as
// -inf and is at most kernel / 2 (as torch). The gradient goes to each window's first maximum.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);

// x (N, C, H, W) or (N, H, W) of any dtype -> (N, C, out_h, out_w) or (N, out_h, out_w): out[.., i, j] =
// x[.., floor(i * s_h), floor(j * s_w)] with s = in / out computed in f32, the index clamped to in - 1 (torch's
// rule; note torch reads a 3-d input as (N, C, L), this op as (N, H, W)). Differentiable for floats.
Tensor interpolate_nearest(const Tensor& x, int64_t out_h, int64_t out_w);

}  // namespace px

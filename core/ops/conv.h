// 2-d convolution (cross-correlation, groups = 1) with optional bias, as torch.nn.functional.conv2d:
// im2col + the backend GEMM forward, GEMMs + col2im backward; 1x1 stride-1 unpadded kernels skip im2col.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "core/tensor/tensor.h"

namespace px {

struct Conv2dOptions {
  int64_t stride = 1, padding = 0, dilation = 1;  // the same along H and W
  // Per-dim (h, w) values; each, when set, replaces its square value above.
  std::optional<std::array<int64_t, 2>> stride_hw = std::nullopt, padding_hw = std::nullopt, dilation_hw = std::nullopt;
  // The im2col buffer holds a chunk of images of at most this many bytes (at least one image); 0: 256 MiB.
  int64_t max_col_bytes = 0;
};

// x (N, Cin, H, W), weight (Cout, Cin, kh, kw), bias (Cout) or undefined -> (N, Cout, OH, OW) with
// OH = (H + 2 padding - dilation (kh - 1) - 1) / stride + 1 (floor), and OW alike. f32, f64, bf16, f16.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o = {});

}  // namespace px

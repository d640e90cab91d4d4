// Differentiable views that share storage (reshape of a non-viewable layout copies), and contiguous().
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// -1 in `shape` is inferred. A view when the strides allow it, else a copy (like torch.reshape).
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
// Elements [start, start + length) of `dim`.
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// Size-1 dims broadcast to `shape` (stride 0); -1 keeps a size; new leading dims allowed.
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
// x itself when already contiguous, else a contiguous copy.
Tensor contiguous(const Tensor& x);

}  // namespace px

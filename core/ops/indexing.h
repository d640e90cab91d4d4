// Selection by mask and by index: masked_fill, where, index_select, gather (backward scatter-adds).
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// x where !mask, value where mask; mask bool, broadcast to x's shape.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
// cond ? a : b with broadcasting; cond bool.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// x (..., S, ...) along dim by index i64 (L) -> (..., L, ...)
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j] = x[index[i][j]][j] for dim 0 (and so on); index i64 with x's ndim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace px

// Differentiable reductions over dims (keepdim or not): sum, mean, max (ties share the gradient
// like torch.amax); argmax and topk; and sum_to, which undoes broadcasting in backward.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace px {

// Empty `dims` reduces over every dim.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Index of the largest element along dim (i64, not differentiable).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// The k largest elements along the last dim and their positions, in descending order (ties: lower position first;
// NaN above every number, as torch.topk): values (..., k) x's dtype, indices i64 (..., k). Not differentiable;
// 1 <= k <= x.size(-1).
struct TopK {
  Tensor values;   // (..., k)
  Tensor indices;  // (..., k) i64
};
TopK topk(const Tensor& x, int64_t k);
// Sums x down to `shape` (x's shape broadcast from `shape`).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace px

// Differentiable reductions over dims (keepdim or not): sum, mean, max (ties share the gradient
// like torch.amax); argmax; and sum_to, which undoes broadcasting in backward.
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
// Sums x down to `shape` (x's shape broadcast from `shape`).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace px

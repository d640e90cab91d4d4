// Joining and splitting along a dim: cat, stack, split (split returns views).
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace px {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
// Pieces of `size` along dim (the last may be smaller), as views.
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);

}  // namespace px

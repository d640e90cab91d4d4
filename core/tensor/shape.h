// Shapes and strides (in elements), dimension wrapping and broadcasting rules.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace px {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);
// Wraps a possibly negative dim into [0, ndim); CHECK-fails with context otherwise.
int64_t wrap_dim(int64_t dim, int64_t ndim);
// NumPy broadcasting of two shapes; CHECK-fails naming both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace px

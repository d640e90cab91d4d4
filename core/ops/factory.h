// Tensor creation and conversion: constants, random tensors, host vectors, dtype/device copies.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"
#include "core/util/generator.h"

namespace px {

Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = cpu());
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = cpu());  // 0-d
// 0, 1, ..., n-1
Tensor arange(int64_t n, DType dtype = DType::i64, Device device = cpu());
// Standard normal / uniform [lo, hi) draws from the generator's stream.
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32, Device device = cpu());
Tensor rand(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0, DType dtype = DType::f32,
            Device device = cpu());

// A host tensor holding `values` (row-major) converted to dtype.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32);
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::i64);
// Elements in row-major order, converted to double (copies to the host if needed).
std::vector<double> to_vector(const Tensor& t);

// Differentiable copies: a new contiguous tensor of another dtype / device / the same.
Tensor to_dtype(const Tensor& t, DType dtype);
Tensor to_device(const Tensor& t, Device device);
Tensor clone(const Tensor& t);

}  // namespace px

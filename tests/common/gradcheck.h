// Finite-difference gradient checks in f64: analytic grads from backward vs central differences,
// plus input builders (random, non-contiguous, expanded, integer) that use no op under test.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor/tensor.h"

namespace px::test {

using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;  // central-difference step
  double rtol = 1e-5;
  double atol = 1e-7;
  // Inputs neither perturbed nor checked (floating masks, ...). Non-floating inputs are always skipped.
  std::vector<size_t> nondiff;
  uint64_t seed = 0x5eed;  // random weights w of the scalar f = sum(fn(inputs) * w)
  // When > 0, differences are taken for this many storage elements per input, picked at random
  // (for shapes large enough to reach the kernels' vectorised and threaded paths).
  size_t max_checked = 0;
};

// Checks d sum(fn(x) * w) / dx from backward against central differences for every element of
// every differentiable input (f64, any strides). Differences are taken per storage element, so an
// expanded (stride 0) input compares the sum of its aliases' gradients. Differentiable inputs must
// not share storage with each other. The failure names the worst element of the worst input.
::testing::AssertionResult gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs,
                                     const GradcheckOptions& opts = {});

// ---- input builders (host, f64 unless said; deterministic in `seed`) ----

// Uniform [lo, hi), contiguous.
Tensor uniform64(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0);
// Uniform with |x| in [min_abs, max_abs] and a random sign (relu, division, pow away from 0).
Tensor away_from_zero64(const Shape& shape, uint64_t seed, double min_abs = 0.2, double max_abs = 1.5);
// A random permutation of evenly spaced values `gap` apart, centred on 0 (max without ties).
Tensor distinct64(const Shape& shape, uint64_t seed, double gap = 0.1);
// `shape` seen through a layout with the last two dims swapped in memory (needs ndim >= 2).
Tensor transposed64(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0);
// `shape` as a narrow view into a buffer 3 larger along `dim` (starting at index 1).
Tensor narrowed64(const Shape& shape, int64_t dim, uint64_t seed, double lo = -1.0, double hi = 1.0);
// `shape` with stride 0 along `dim` (every index of `dim` aliases the same elements).
Tensor expanded64(const Shape& shape, int64_t dim, uint64_t seed, double lo = -1.0, double hi = 1.0);

// Integer and bool tensors from row-major values.
Tensor int_tensor(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::i64);
Tensor bool_tensor(const std::vector<int>& values, const Shape& shape);

// Elements of any host tensor in row-major order, converted to double (reads strides directly).
std::vector<double> host_values(const Tensor& t);

}  // namespace px::test

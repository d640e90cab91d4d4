// Exact rectangular min-cost assignment (what scipy.optimize.linear_sum_assignment computes), solved on the
// host by shortest augmenting paths with row/column potentials (Jonker-Volgenant, Crouse 2016), O(n^2 m).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace px::detr {

// K = min(rows, cols) pairs (rows[k], cols[k]), rows ascending; every row and column used at most once.
struct Assignment {
  std::vector<int64_t> rows;  // (K,)
  std::vector<int64_t> cols;  // (K,)
};

// Minimises sum_k cost[rows[k], cols[k]] over all assignments of min(rows, cols) pairs. `cost` is row-major
// (rows, cols); f32 input is solved in double. A dimension of 0 gives an empty result. Like scipy, +inf marks
// a forbidden pair and the solve CHECK-fails when every complete assignment uses one ("infeasible"); NaN and
// -inf entries CHECK-fail up front. With ties the result is one optimal assignment, the same on every call.
Assignment linear_sum_assignment(std::span<const double> cost, int64_t rows, int64_t cols);  // (rows, cols)
Assignment linear_sum_assignment(std::span<const float> cost, int64_t rows, int64_t cols);   // (rows, cols)

}  // namespace px::detr

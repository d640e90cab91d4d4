// Exact rectangular min-cost assignment by shortest augmenting paths (see linear_assignment.h). The solver
// works on n <= m; a tall matrix is transposed first and its pairs are put back in row order.
#include "models/detr/linear_assignment.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/util/check.h"

namespace px::detr {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The math. Minimise sum c[i, col(i)] over injections col: rows -> cols (n <= m). LP duality gives row
// potentials u (n,) and column potentials v (m,) with reduced costs r[i, j] = c[i, j] - u[i] - v[j] >= 0 on
// every pair and r = 0 on every assigned pair; an assignment with such potentials is optimal.
// Rows are added one at a time. For a new free row s, Dijkstra over columns finds the shortest alternating
// path s -> j0 ~> row(j0) -> j1 ~> ... -> a free column, where stepping from row i to column j costs r[i, j]
// (>= 0 for every row already assigned; only the first step, from s, may be negative, which Dijkstra from
// a single source allows). Flipping the path assigns s and keeps every earlier row assigned; shifting the
// potentials by the distances keeps r >= 0 and makes r = 0 along the new assignment.
// c is row-major (n, m); returns the column of every row, (n,).
std::vector<int64_t> solve_wide(const std::vector<double>& c, int64_t n, int64_t m) {
  std::vector<double> u(n, 0.0), v(m, 0.0);                   // (n,), (m,) potentials
  std::vector<int64_t> col_of_row(n, -1), row_of_col(m, -1);  // (n,), (m,) the assignment so far, -1: free
  std::vector<double> dist(m);       // (m,) shortest path length found so far from s to each column
  std::vector<int64_t> prev_row(m);  // (m,) row the shortest path to each column comes from
  std::vector<int64_t> unsettled(m);  // (m,) columns whose distance is not final yet, the first n_unsettled
  std::vector<int64_t> settled_rows, settled_cols;  // (<= n,), (<= m,) reached by this search, in order
  for (int64_t s = 0; s < n; ++s) {
    std::fill(dist.begin(), dist.end(), kInf);
    for (int64_t j = 0; j < m; ++j) unsettled[j] = j;
    int64_t n_unsettled = m;
    settled_rows.clear();
    settled_cols.clear();
    int64_t i = s, sink = -1;
    double reach = 0.0;  // distance from s to row i
    while (sink < 0) {
      settled_rows.push_back(i);
      // Relax the edges out of row i and pick the nearest unsettled column (a free one on a tie, which
      // ends the search sooner).
      double best = kInf;
      int64_t best_k = -1;
      const double* ci = c.data() + i * m;
      for (int64_t k = 0; k < n_unsettled; ++k) {
        const int64_t j = unsettled[k];
        const double d = reach + ci[j] - u[i] - v[j];
        if (d < dist[j]) {
          dist[j] = d;
          prev_row[j] = i;
        }
        if (dist[j] < best || (dist[j] == best && row_of_col[j] < 0)) {
          best = dist[j];
          best_k = k;
        }
      }
      CHECK(best < kInf) << "linear_sum_assignment: cost matrix is infeasible (every assignment of "
                         << n << " pairs uses a +inf cost)";
      reach = best;
      const int64_t j = unsettled[best_k];
      unsettled[best_k] = unsettled[--n_unsettled];
      settled_cols.push_back(j);
      if (row_of_col[j] < 0) {
        sink = j;
      } else {
        i = row_of_col[j];
      }
    }
    // Potentials: every settled column j lies at dist[j] <= reach; shifting by reach - dist keeps r >= 0.
    u[s] += reach;
    for (const int64_t r : settled_rows) {
      if (r != s) u[r] += reach - dist[col_of_row[r]];
    }
    for (const int64_t j : settled_cols) v[j] -= reach - dist[j];
    // Flip the path from the sink back to s.
    for (int64_t j = sink;;) {
      const int64_t r = prev_row[j];
      row_of_col[j] = r;
      std::swap(col_of_row[r], j);
      if (r == s) break;
    }
  }
  return col_of_row;
}

template <typename T>
Assignment solve(std::span<const T> cost, int64_t rows, int64_t cols) {
  CHECK(rows >= 0 && cols >= 0) << "linear_sum_assignment: shape (" << rows << ", " << cols << ")";
  CHECK_EQ(static_cast<int64_t>(cost.size()), rows * cols)
      << "linear_sum_assignment: cost has the wrong size for (" << rows << ", " << cols << ")";
  Assignment out;
  if (rows == 0 || cols == 0) return out;
  const bool tall = rows > cols;
  const int64_t n = tall ? cols : rows, m = tall ? rows : cols;
  std::vector<double> c(n * m);  // (n, m): the matrix, transposed when tall
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) {
      const double x = cost[r * cols + k];
      CHECK(!std::isnan(x) && x != -kInf)
          << "linear_sum_assignment: invalid cost " << x << " at (" << r << ", " << k << ")";
      c[tall ? k * m + r : r * m + k] = x;
    }
  }
  const std::vector<int64_t> match = solve_wide(c, n, m);
  out.rows.reserve(n);
  out.cols.reserve(n);
  if (!tall) {
    for (int64_t r = 0; r < rows; ++r) {
      out.rows.push_back(r);
      out.cols.push_back(match[r]);
    }
  } else {
    std::vector<int64_t> col_of_row(rows, -1);  // (rows,)
    for (int64_t k = 0; k < cols; ++k) col_of_row[match[k]] = k;
    for (int64_t r = 0; r < rows; ++r) {
      if (col_of_row[r] < 0) continue;
      out.rows.push_back(r);
      out.cols.push_back(col_of_row[r]);
    }
  }
  return out;
}

}  // namespace

Assignment linear_sum_assignment(std::span<const double> cost, int64_t rows, int64_t cols) {
  return solve(cost, rows, cols);
}

Assignment linear_sum_assignment(std::span<const float> cost, int64_t rows, int64_t cols) {
  return solve(cost, rows, cols);
}

}  // namespace px::detr

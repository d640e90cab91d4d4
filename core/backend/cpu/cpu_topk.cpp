// CPU top-k over the last dim: each row's k largest values and their columns, by a partial sort of the row's
// column indices (OpenMP over rows); bf16/f16 through f32 stand-ins.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/util/check.h"

namespace px {

using cpu_kernels::dispatch_float;
using cpu_kernels::parallel_for;

namespace {

// values[r, :k], indices[r, :k] = the k best of x[r, :] ranked by (NaN first, value descending, column ascending).
template <typename T>
void topk_rows(const T* x, int64_t rows, int64_t cols, int64_t k, T* values, int64_t* indices) {
  parallel_for(rows, cols, [&](int64_t b, int64_t e) {
    std::vector<int64_t> order(static_cast<size_t>(cols));
    for (int64_t r = b; r < e; ++r) {
      const T* row = x + r * cols;
      const auto before = [row](int64_t i, int64_t j) {
        const T a = row[i], c = row[j];
        if (std::isnan(a) != std::isnan(c)) return std::isnan(a);
        if (!std::isnan(a) && a != c) return a > c;
        return i < j;
      };
      std::iota(order.begin(), order.end(), int64_t{0});
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      for (int64_t j = 0; j < k; ++j) {
        values[r * k + j] = row[order[j]];
        indices[r * k + j] = order[j];
      }
    }
  });
}

}  // namespace

// values, indices (R, k) = the k best of each row of x (R, C) in rank order.
void CpuBackend::topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  if (F32Stage::any_half({&x, &values})) {
    F32Stage s;
    topk(s.in(x), k, s.out(values), indices);
    return s.finish();
  }
  CHECK(x.dim() == 2 && x.is_contiguous()) << "topk: x must be contiguous (R, C), got " << x.str();
  const int64_t rows = x.size(0), cols = x.size(1);
  CHECK(k >= 1 && k <= cols) << "topk: k = " << k << " outside [1, " << cols << "] for " << x.str();
  CHECK(values.shape() == (Shape{rows, k}) && values.dtype() == x.dtype() && values.is_contiguous())
      << "topk: values must be contiguous " << dtype_name(x.dtype()) << " (" << rows << ", " << k << "), got "
      << values.str();
  CHECK(indices.shape() == (Shape{rows, k}) && indices.dtype() == DType::i64 && indices.is_contiguous())
      << "topk: indices must be contiguous i64 (" << rows << ", " << k << "), got " << indices.str();
  dispatch_float(x.dtype(), "topk", [&](auto t) {
    using T = decltype(t);
    topk_rows<T>(x.data<T>(), rows, cols, k, values.data<T>(), indices.data<int64_t>());
  });
}

}  // namespace px

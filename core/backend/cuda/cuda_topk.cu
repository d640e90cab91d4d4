// CUDA top-k over the last dim (beam search's candidate selection): k selection passes per row, one block per row,
// each pass a block-wide arg-best of the elements ranking after the previous pass's choice; a one-thread reference.
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {

namespace {

// a (value, column) ranks before b: a is NaN and b is not, or a > b, or they tie (equal or both NaN) and a's
// column is lower. Backend::topk's order; `ia < 0` marks "nothing" (ranks after everything).
template <typename A>
__device__ __forceinline__ bool ranks_before(A a, int64_t ia, A b, int64_t ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  const bool na = isnan(a), nb = isnan(b);
  if (na != nb) return na;
  if (!na && a != b) return a > b;
  return ia < ib;
}

// The best of row[first], row[first + step], ... (cols columns) ranking after (prev, prev_i) into (v, vi); vi = -1
// when none does.
template <typename T>
__device__ __forceinline__ void best_after(const T* row, int64_t first, int64_t step, int64_t cols, Acc<T> prev,
                                           int64_t prev_i, Acc<T>& v, int64_t& vi) {
  v = Acc<T>(0);
  vi = -1;
  for (int64_t c = first; c < cols; c += step) {
    const Acc<T> xc = ld(row + c);
    if (prev_i >= 0 && !ranks_before(prev, prev_i, xc, c)) continue;
    if (ranks_before(xc, c, v, vi)) {
      v = xc;
      vi = c;
    }
  }
}

// values[r, j], indices[r, j] = the best element of row r ranking after (values[r, j-1], indices[r, j-1]).
// One block per row (grid-stride over rows); each thread scans columns tid, tid + blockDim, ... then a shared-memory
// tree reduction picks the block's best.
template <typename T>
__global__ void topk_block_kernel(const T* x, int64_t rows, int64_t cols, int64_t k, T* values, int64_t* indices) {
  using A = Acc<T>;
  __shared__ A best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    A prev = A(0);
    int64_t prev_i = -1;
    for (int64_t j = 0; j < k; ++j) {
      A v;
      int64_t vi;
      best_after(row, threadIdx.x, blockDim.x, cols, prev, prev_i, v, vi);
      best_v[threadIdx.x] = v;
      best_i[threadIdx.x] = vi;
      __syncthreads();
      for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half &&
            ranks_before(best_v[threadIdx.x + half], best_i[threadIdx.x + half], best_v[threadIdx.x],
                         best_i[threadIdx.x])) {
          best_v[threadIdx.x] = best_v[threadIdx.x + half];
          best_i[threadIdx.x] = best_i[threadIdx.x + half];
        }
        __syncthreads();
      }
      prev = best_v[0];
      prev_i = best_i[0];
      if (threadIdx.x == 0) {
        st(values + r * k + j, prev);
        indices[r * k + j] = prev_i;
      }
      __syncthreads();  // best_v[0] is read by every thread before the next pass overwrites it
    }
  }
}

// The same selection with one thread per row.
template <typename T>
__global__ void topk_reference_kernel(const T* x, int64_t rows, int64_t cols, int64_t k, T* values,
                                      int64_t* indices) {
  using A = Acc<T>;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* row = x + r * cols;
    A prev = A(0);
    int64_t prev_i = -1;
    for (int64_t j = 0; j < k; ++j) {
      A v;
      int64_t vi;
      best_after(row, 0, 1, cols, prev, prev_i, v, vi);
      st(values + r * k + j, v);
      indices[r * k + j] = vi;
      prev = v;
      prev_i = vi;
    }
  }
}

}  // namespace

void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices, Impl impl) {
  check_contiguous(x, "topk", "x");
  check_contiguous(values, "topk", "values");
  check_contiguous(indices, "topk", "indices");
  check_float(x, "topk");
  CHECK_EQ(x.dim(), 2) << "topk: x must be (R, C); got " << x.str();
  const int64_t rows = x.size(0), cols = x.size(1);
  CHECK(k >= 1 && k <= cols) << "topk: k = " << k << " outside [1, " << cols << "] for " << x.str();
  CHECK(values.shape() == (Shape{rows, k}) && values.dtype() == x.dtype())
      << "topk: values must be " << dtype_name(x.dtype()) << " (" << rows << ", " << k << "); got " << values.str();
  CHECK(indices.shape() == (Shape{rows, k}) && indices.dtype() == DType::i64)
      << "topk: indices must be i64 (" << rows << ", " << k << "); got " << indices.str();
  if (rows == 0) return;
  dispatch_float(x.dtype(), "topk", [&](auto t) {
    using T = decltype(t);
    const T* px = static_cast<const T*>(x.raw_data());
    T* pv = static_cast<T*>(values.raw_data());
    int64_t* pi = static_cast<int64_t*>(indices.raw_data());
    if (impl == Impl::reference) {
      topk_reference_kernel<T><<<blocks_for(rows), kThreads, 0, stream()>>>(px, rows, cols, k, pv, pi);
    } else {
      const unsigned grid = static_cast<unsigned>(rows < 65536 ? rows : 65536);
      topk_block_kernel<T><<<grid, kThreads, 0, stream()>>>(px, rows, cols, k, pv, pi);
    }
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

// CUDA row softmax / log-softmax forward and backward over the last dim of contiguous (R, C) tensors:
// one warp per row up to C = 1024, one block per row beyond; f32 (f64 for f64) accumulation.
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// y_rc = exp(x_rc - m_r) / s_r (or x_rc - m_r - log s_r), m_r = max_c x_rc, s_r = sum_c exp(x_rc - m_r).
template <typename T, bool Block>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const RowGroup<Block> g;
  for (int64_t r = g.first; r < rows; r += g.step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    A m = neg_inf<A>();
    for (int64_t c = g.lane; c < cols; c += g.width) m = max(m, ld(xr + c));
    m = group_max<Block>(m, scratch);
    A s = 0;
    for (int64_t c = g.lane; c < cols; c += g.width) s += dexp(ld(xr + c) - m);
    s = group_sum<Block>(s, scratch);
    if (log) {
      const A shift = m + dlog(s);
      for (int64_t c = g.lane; c < cols; c += g.width) st(yr + c, ld(xr + c) - shift);
    } else {
      const A inv = A(1) / s;
      for (int64_t c = g.lane; c < cols; c += g.width) st(yr + c, dexp(ld(xr + c) - m) * inv);
    }
  }
}

// softmax: gx = y (gy - sum_c gy y); log_softmax: gx = gy - exp(y) sum_c gy.
template <typename T, bool Block>
__global__ void softmax_backward_kernel(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols, bool log) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const RowGroup<Block> g;
  for (int64_t r = g.first; r < rows; r += g.step) {
    const T* yr = y + r * cols;
    const T* gyr = gy + r * cols;
    T* gxr = gx + r * cols;
    A s = 0;
    for (int64_t c = g.lane; c < cols; c += g.width) s += log ? ld(gyr + c) : ld(gyr + c) * ld(yr + c);
    s = group_sum<Block>(s, scratch);
    for (int64_t c = g.lane; c < cols; c += g.width) {
      const A yv = ld(yr + c), gv = ld(gyr + c);
      st(gxr + c, log ? gv - dexp(yv) * s : yv * (gv - s));
    }
  }
}

// Reference: the forward above with one thread per row.
template <typename T>
__global__ void softmax_reference_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  using A = Acc<T>;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const T* xr = x + r * cols;
  A m = neg_inf<A>();
  for (int64_t c = 0; c < cols; ++c) m = max(m, ld(xr + c));
  A s = 0;
  for (int64_t c = 0; c < cols; ++c) s += dexp(ld(xr + c) - m);
  for (int64_t c = 0; c < cols; ++c)
    st(y + r * cols + c, log ? ld(xr + c) - m - dlog(s) : dexp(ld(xr + c) - m) / s);
}

// Reference: the backward above with one thread per row.
template <typename T>
__global__ void softmax_backward_reference_kernel(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols,
                                                  bool log) {
  using A = Acc<T>;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const int64_t base = r * cols;
  A s = 0;
  for (int64_t c = 0; c < cols; ++c) s += log ? ld(gy + base + c) : ld(gy + base + c) * ld(y + base + c);
  for (int64_t c = 0; c < cols; ++c) {
    const A yv = ld(y + base + c), gv = ld(gy + base + c);
    st(gx + base + c, log ? gv - dexp(yv) * s : yv * (gv - s));
  }
}

// ================================ launchers ================================

// (R, C) view of a contiguous tensor over its last dim.
void rows_cols(const Tensor& t, int64_t* rows, int64_t* cols) {
  *cols = t.dim() == 0 ? 1 : t.size(-1);
  *rows = *cols == 0 ? 0 : t.numel() / *cols;
}

constexpr int64_t kWarpMaxCols = 1024;

}  // namespace

void softmax(const Tensor& x, const Tensor& y, bool log, Impl impl) {
  check_contiguous(x, "softmax", "x");
  check_contiguous(y, "softmax", "y");
  check_same_shape(x, y, "softmax");
  CHECK(x.dtype() == y.dtype()) << "softmax: dtypes differ: " << x.str() << " vs " << y.str();
  int64_t rows, cols;
  rows_cols(x, &rows, &cols);
  if (rows == 0) return;
  dispatch_float(x.dtype(), "softmax", [&](auto t) {
    using T = decltype(t);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    if (impl == Impl::reference)
      softmax_reference_kernel<T><<<blocks_for(rows, 128), 128, 0, stream()>>>(px, py, rows, cols, log);
    else if (cols <= kWarpMaxCols)
      softmax_kernel<T, false><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream()>>>(px, py, rows, cols, log);
    else
      softmax_kernel<T, true><<<blocks_for(rows, 1), 512, 0, stream()>>>(px, py, rows, cols, log);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log, Impl impl) {
  check_contiguous(y, "softmax_backward", "y");
  check_contiguous(gy, "softmax_backward", "gy");
  check_contiguous(gx, "softmax_backward", "gx");
  check_same_shape(y, gy, "softmax_backward");
  check_same_shape(y, gx, "softmax_backward");
  CHECK(y.dtype() == gy.dtype() && y.dtype() == gx.dtype())
      << "softmax_backward: dtypes differ: " << y.str() << ", " << gy.str() << ", " << gx.str();
  int64_t rows, cols;
  rows_cols(y, &rows, &cols);
  if (rows == 0) return;
  dispatch_float(y.dtype(), "softmax_backward", [&](auto t) {
    using T = decltype(t);
    const T* py = y.data<T>();
    const T* pg = gy.data<T>();
    T* pgx = gx.data<T>();
    if (impl == Impl::reference)
      softmax_backward_reference_kernel<T><<<blocks_for(rows, 128), 128, 0, stream()>>>(py, pg, pgx, rows, cols, log);
    else if (cols <= kWarpMaxCols)
      softmax_backward_kernel<T, false><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream()>>>(py, pg, pgx, rows,
                                                                                                   cols, log);
    else
      softmax_backward_kernel<T, true><<<blocks_for(rows, 1), 512, 0, stream()>>>(py, pg, pgx, rows, cols, log);
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

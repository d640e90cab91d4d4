// CUDA layer norm over the last dim of (R, C): forward (a warp or block per row, two-pass statistics)
// and backward (gx per row; gw, gb by a two-stage column reduction), f32 (f64 for f64) accumulation.
#include <algorithm>
#include <initializer_list>

#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

template <typename A> __device__ __forceinline__ A inv_sqrt(A v);
template <> __device__ __forceinline__ float inv_sqrt<float>(float v) { return 1.0f / sqrtf(v); }
template <> __device__ __forceinline__ double inv_sqrt<double>(double v) { return 1.0 / sqrt(v); }

// mean_r = sum_c x / C; rstd_r = 1 / sqrt(sum_c (x - mean)^2 / C + eps); y = (x - mean) rstd w + b.
// One warp per row (Block = false) or one block per row.
template <typename T, bool Block>
__global__ void layernorm_kernel(const T* x, const T* w, const T* b, Acc<T> eps, T* y, void* mean, void* rstd,
                                 DType stat_t, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const RowGroup<Block> group;
  const int lane = group.lane, width = group.width;
  const int64_t first = group.first, step = group.step;
  for (int64_t r = first; r < rows; r += step) {
    const T* xr = x + r * cols;
    A s = 0;
    for (int64_t c = lane; c < cols; c += width) s += ld(xr + c);
    const A mu = group_sum<Block>(s, scratch) / static_cast<A>(cols);
    A v = 0;
    for (int64_t c = lane; c < cols; c += width) {
      const A d = ld(xr + c) - mu;
      v += d * d;
    }
    const A rs = inv_sqrt<A>(group_sum<Block>(v, scratch) / static_cast<A>(cols) + eps);
    for (int64_t c = lane; c < cols; c += width) {
      A o = (ld(xr + c) - mu) * rs;
      if (w != nullptr) o *= ld(w + c);
      if (b != nullptr) o += ld(b + c);
      st(y + r * cols + c, o);
    }
    if (lane == 0 && mean != nullptr) store_dyn(mean, stat_t, r, mu);
    if (lane == 0 && rstd != nullptr) store_dyn(rstd, stat_t, r, rs);
  }
}

// g = gy w, xhat = (x - mean) rstd: gx = rstd (g - mean_c(g) - xhat mean_c(g xhat)); a warp or block per row.
template <typename T, bool Block>
__global__ void layernorm_backward_gx_kernel(const T* x, const T* w, const void* mean, const void* rstd, DType stat_t,
                                             const T* gy, T* gx, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const RowGroup<Block> group;
  const int lane = group.lane, width = group.width;
  const int64_t first = group.first, step = group.step;
  for (int64_t r = first; r < rows; r += step) {
    const A mu = static_cast<A>(load_dyn(mean, stat_t, r)), rs = static_cast<A>(load_dyn(rstd, stat_t, r));
    const int64_t base = r * cols;
    A sg = 0, sgx = 0;
    for (int64_t c = lane; c < cols; c += width) {
      const A g = w != nullptr ? ld(gy + base + c) * ld(w + c) : ld(gy + base + c);
      sg += g;
      sgx += g * (ld(x + base + c) - mu) * rs;
    }
    const A mg = group_sum<Block>(sg, scratch) / static_cast<A>(cols);
    const A mgx = group_sum<Block>(sgx, scratch) / static_cast<A>(cols);
    for (int64_t c = lane; c < cols; c += width) {
      const A g = w != nullptr ? ld(gy + base + c) * ld(w + c) : ld(gy + base + c);
      const A xhat = (ld(x + base + c) - mu) * rs;
      st(gx + base + c, rs * (g - mg - xhat * mgx));
    }
  }
}

// Stage 1 of gw_c = sum_r gy_rc xhat_rc, gb_c = sum_r gy_rc: block (32, 8) sums the rows of one chunk
// (blockIdx.y) for 32 columns into part (2, chunks, C).
template <typename T>
__global__ void layernorm_backward_wb_partial_kernel(const T* x, const void* mean, const void* rstd, DType stat_t,
                                                     const T* gy, Acc<T>* part, int64_t rows, int64_t cols,
                                                     int64_t rows_per_chunk) {
  using A = Acc<T>;
  __shared__ A sw[8][33];
  __shared__ A sb[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  A aw = 0, ab = 0;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
      const A g = ld(gy + r * cols + c);
      const A mu = static_cast<A>(load_dyn(mean, stat_t, r)), rs = static_cast<A>(load_dyn(rstd, stat_t, r));
      aw += g * (ld(x + r * cols + c) - mu) * rs;
      ab += g;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (unsigned k = 1; k < blockDim.y; ++k) {
      aw += sw[k][threadIdx.x];
      ab += sb[k][threadIdx.x];
    }
    part[blockIdx.y * cols + c] = aw;
    part[(gridDim.y + blockIdx.y) * cols + c] = ab;
  }
}

// Stage 2: gw_c = sum_k part[0, k, c], gb_c = sum_k part[1, k, c] (either output may be absent).
template <typename T>
__global__ void layernorm_backward_wb_final_kernel(const Acc<T>* part, int64_t chunks, int64_t cols, T* gw, T* gb) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  Acc<T> aw = 0, ab = 0;
  for (int64_t k = 0; k < chunks; ++k) {
    aw += part[k * cols + c];
    ab += part[(chunks + k) * cols + c];
  }
  if (gw != nullptr) st(gw + c, aw);
  if (gb != nullptr) st(gb + c, ab);
}

// Reference forward: one thread per row.
template <typename T>
__global__ void layernorm_reference_kernel(const T* x, const T* w, const T* b, Acc<T> eps, T* y, void* mean,
                                           void* rstd, DType stat_t, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const T* xr = x + r * cols;
  A s = 0, v = 0;
  for (int64_t c = 0; c < cols; ++c) s += ld(xr + c);
  const A mu = s / static_cast<A>(cols);
  for (int64_t c = 0; c < cols; ++c) v += (ld(xr + c) - mu) * (ld(xr + c) - mu);
  const A rs = inv_sqrt<A>(v / static_cast<A>(cols) + eps);
  for (int64_t c = 0; c < cols; ++c) {
    A o = (ld(xr + c) - mu) * rs;
    if (w != nullptr) o *= ld(w + c);
    if (b != nullptr) o += ld(b + c);
    st(y + r * cols + c, o);
  }
  if (mean != nullptr) store_dyn(mean, stat_t, r, mu);
  if (rstd != nullptr) store_dyn(rstd, stat_t, r, rs);
}

// Reference gx: one thread per row.
template <typename T>
__global__ void layernorm_backward_gx_reference_kernel(const T* x, const T* w, const void* mean, const void* rstd,
                                                       DType stat_t, const T* gy, T* gx, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const A mu = static_cast<A>(load_dyn(mean, stat_t, r)), rs = static_cast<A>(load_dyn(rstd, stat_t, r));
  const int64_t base = r * cols;
  A sg = 0, sgx = 0;
  for (int64_t c = 0; c < cols; ++c) {
    const A g = w != nullptr ? ld(gy + base + c) * ld(w + c) : ld(gy + base + c);
    sg += g;
    sgx += g * (ld(x + base + c) - mu) * rs;
  }
  for (int64_t c = 0; c < cols; ++c) {
    const A g = w != nullptr ? ld(gy + base + c) * ld(w + c) : ld(gy + base + c);
    st(gx + base + c, rs * (g - sg / static_cast<A>(cols) - (ld(x + base + c) - mu) * rs * sgx / static_cast<A>(cols)));
  }
}

// Reference gw, gb: one thread per column over all rows.
template <typename T>
__global__ void layernorm_backward_wb_reference_kernel(const T* x, const void* mean, const void* rstd, DType stat_t,
                                                       const T* gy, T* gw, T* gb, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  A aw = 0, ab = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const A g = ld(gy + r * cols + c);
    aw += g * (ld(x + r * cols + c) - static_cast<A>(load_dyn(mean, stat_t, r))) *
          static_cast<A>(load_dyn(rstd, stat_t, r));
    ab += g;
  }
  if (gw != nullptr) st(gw + c, aw);
  if (gb != nullptr) st(gb + c, ab);
}

// ================================ launchers ================================

constexpr int64_t kWarpMaxCols = 1024;

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <typename T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Checks x (R, C) against the optional (C) vectors and the (R) statistics; returns R and C.
void check_ln_args(const char* what, const Tensor& x, std::initializer_list<const Tensor*> vectors,
                   const Tensor& mean, const Tensor& rstd, int64_t* rows, int64_t* cols) {
  check_contiguous(x, what, "x");
  check_float(x, what);
  *cols = x.dim() == 0 ? 1 : x.size(-1);
  *rows = *cols == 0 ? 0 : x.numel() / *cols;
  for (const Tensor* v : vectors) {
    if (!v->defined()) continue;
    check_contiguous(*v, what, "weight/bias/grad");
    CHECK(v->numel() == *cols && v->dtype() == x.dtype())
        << what << ": per-column tensors must be (" << *cols << ") " << dtype_name(x.dtype()) << "; got " << v->str();
  }
  for (const Tensor* s : {&mean, &rstd}) {
    if (!s->defined()) continue;  // the forward may skip the statistics
    check_contiguous(*s, what, "mean/rstd");
    CHECK(s->numel() == *rows && (s->dtype() == DType::f32 || s->dtype() == DType::f64))
        << what << ": mean/rstd must be (" << *rows << ") f32 or f64; got " << s->str();
  }
  CHECK(!mean.defined() || !rstd.defined() || mean.dtype() == rstd.dtype()) << what << ": mean and rstd dtypes differ";
}

}  // namespace

void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
               const Tensor& rstd, Impl impl) {
  int64_t rows, cols;
  check_ln_args("layernorm", x, {&w, &b}, mean, rstd, &rows, &cols);
  check_contiguous(y, "layernorm", "y");
  check_same_shape(x, y, "layernorm");
  CHECK(y.dtype() == x.dtype()) << "layernorm: y dtype must match x; got " << y.str();
  if (rows == 0) return;
  dispatch_float(x.dtype(), "layernorm", [&](auto t) {
    using T = decltype(t);
    const auto e = static_cast<Acc<T>>(eps);
    const DType s = mean.defined() ? mean.dtype() : (rstd.defined() ? rstd.dtype() : DType::f32);
    void* pm = mean.defined() ? mean.raw_data() : nullptr;
    void* pr = rstd.defined() ? rstd.raw_data() : nullptr;
    if (impl == Impl::reference)
      layernorm_reference_kernel<T><<<blocks_for(rows, 128), 128, 0, stream()>>>(
          x.data<T>(), ptr_or_null<T>(w), ptr_or_null<T>(b), e, y.data<T>(), pm, pr, s, rows, cols);
    else if (cols <= kWarpMaxCols)
      layernorm_kernel<T, false><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream()>>>(
          x.data<T>(), ptr_or_null<T>(w), ptr_or_null<T>(b), e, y.data<T>(), pm, pr, s, rows, cols);
    else
      layernorm_kernel<T, true><<<blocks_for(rows, 1), 512, 0, stream()>>>(
          x.data<T>(), ptr_or_null<T>(w), ptr_or_null<T>(b), e, y.data<T>(), pm, pr, s, rows, cols);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                        const Tensor& gx, const Tensor& gw, const Tensor& gb, Impl impl) {
  int64_t rows, cols;
  check_ln_args("layernorm_backward", x, {&w, &gw, &gb}, mean, rstd, &rows, &cols);
  CHECK(mean.defined() && rstd.defined()) << "layernorm_backward: needs mean and rstd";
  for (const Tensor* g : {&gy, &gx}) {
    if (!g->defined() && g == &gx) continue;  // gx may be skipped (only gw/gb wanted)
    check_contiguous(*g, "layernorm_backward", "gy/gx");
    check_same_shape(x, *g, "layernorm_backward");
    CHECK(g->dtype() == x.dtype()) << "layernorm_backward: gy/gx dtype must match x; got " << g->str();
  }
  if (cols == 0) return;
  const bool want_wb = gw.defined() || gb.defined();
  if (rows == 0) {  // gw, gb are sums over no rows
    if (gw.defined()) fill(gw, 0.0);
    if (gb.defined()) fill(gb, 0.0);
    return;
  }
  dispatch_float(x.dtype(), "layernorm_backward", [&](auto t) {
    using T = decltype(t);
    using A = Acc<T>;
    const DType s = mean.dtype();
    const T* pw = ptr_or_null<T>(w);
    if (impl == Impl::reference) {
      if (gx.defined())
        layernorm_backward_gx_reference_kernel<T><<<blocks_for(rows, 128), 128, 0, stream()>>>(
            x.data<T>(), pw, mean.raw_data(), rstd.raw_data(), s, gy.data<T>(), gx.data<T>(), rows, cols);
      PX_CUDA_LAUNCH_CHECK();
      if (want_wb)
        layernorm_backward_wb_reference_kernel<T><<<blocks_for(cols, 128), 128, 0, stream()>>>(
            x.data<T>(), mean.raw_data(), rstd.raw_data(), s, gy.data<T>(), mut_ptr_or_null<T>(gw),
            mut_ptr_or_null<T>(gb), rows, cols);
      return;
    }
    if (gx.defined() && cols <= kWarpMaxCols)
      layernorm_backward_gx_kernel<T, false><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream()>>>(
          x.data<T>(), pw, mean.raw_data(), rstd.raw_data(), s, gy.data<T>(), gx.data<T>(), rows, cols);
    else if (gx.defined())
      layernorm_backward_gx_kernel<T, true><<<blocks_for(rows, 1), 512, 0, stream()>>>(
          x.data<T>(), pw, mean.raw_data(), rstd.raw_data(), s, gy.data<T>(), gx.data<T>(), rows, cols);
    PX_CUDA_LAUNCH_CHECK();
    if (!want_wb) return;
    // Chunks of >= 32 rows, at most 256 of them, so stage 1 fills the GPU and stage 2 stays short.
    const int64_t chunks = std::min<int64_t>(256, (rows + 31) / 32);
    const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
    const Tensor part = Tensor::empty({2, chunks, cols}, dtype_of<A>::value, x.device());
    const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(chunks));
    layernorm_backward_wb_partial_kernel<T><<<grid, dim3(32, 8), 0, stream()>>>(
        x.data<T>(), mean.raw_data(), rstd.raw_data(), s, gy.data<T>(), part.data<A>(), rows, cols, rows_per_chunk);
    PX_CUDA_LAUNCH_CHECK();
    layernorm_backward_wb_final_kernel<T><<<blocks_for(cols), kThreads, 0, stream()>>>(
        part.data<A>(), chunks, cols, mut_ptr_or_null<T>(gw), mut_ptr_or_null<T>(gb));
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

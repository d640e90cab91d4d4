// CUDA fused cross-entropy: log-softmax + NLL with label smoothing and ignore_index, forward and
// backward, one warp (C <= 1024) or block per row; loss/lse/gloss may be any float dtype (f32 advised).
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// A per-row (N) vector of any float dtype and stride (stride 0 broadcasts one value); p null = absent.
struct PerRow {
  void* p;
  DType t;
  int64_t stride;
};
__device__ __forceinline__ double get(const PerRow& v, int64_t r) { return load_dyn(v.p, v.t, r * v.stride); }
__device__ __forceinline__ void put(const PerRow& v, int64_t r, double x) {
  if (v.p != nullptr) store_dyn(v.p, v.t, r * v.stride, x);
}

// lse_n = log sum_c exp x_nc; loss_n = lse_n - (1 - eps) x_{n,t} - eps/C sum_c x_nc (0 where t == ignore).
template <typename T, bool Block>
__global__ void cross_entropy_kernel(const T* logits, const int64_t* target, int64_t ts, int64_t ignore, Acc<T> eps,
                                     PerRow loss, PerRow lse, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const RowGroup<Block> group;
  const int lane = group.lane, width = group.width;
  const int64_t first = group.first, step = group.step;
  for (int64_t r = first; r < rows; r += step) {
    const T* xr = logits + r * cols;
    A m = neg_inf<A>(), sx = 0;
    for (int64_t c = lane; c < cols; c += width) {
      const A v = ld(xr + c);
      m = max(m, v);
      sx += v;
    }
    m = group_max<Block>(m, scratch);
    sx = group_sum<Block>(sx, scratch);
    A s = 0;
    for (int64_t c = lane; c < cols; c += width) s += dexp(ld(xr + c) - m);
    s = group_sum<Block>(s, scratch);
    if (lane == 0) {
      const A l = m + dlog(s);
      const int64_t t = target[r * ts];
      const A value = t == ignore ? A(0) : l - (A(1) - eps) * ld(xr + t) - eps / static_cast<A>(cols) * sx;
      put(lse, r, l);
      put(loss, r, value);
    }
  }
}

// glogits_nc = gloss_n (exp(x_nc - lse_n) - (1 - eps) [c == t_n] - eps / C), 0 rows where t_n == ignore.
template <typename T, bool Block>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target, int64_t ts, PerRow lse,
                                              PerRow gloss, int64_t ignore, Acc<T> eps, T* glogits, int64_t rows,
                                              int64_t cols) {
  using A = Acc<T>;
  const RowGroup<Block> group;
  const int lane = group.lane, width = group.width;
  const int64_t first = group.first, step = group.step;
  const A smooth = eps / static_cast<A>(cols);
  for (int64_t r = first; r < rows; r += step) {
    const int64_t t = target[r * ts];
    T* gr = glogits + r * cols;
    if (t == ignore) {
      for (int64_t c = lane; c < cols; c += width) st(gr + c, A(0));
      continue;
    }
    const A l = static_cast<A>(get(lse, r)), g = static_cast<A>(get(gloss, r));
    const T* xr = logits + r * cols;
    for (int64_t c = lane; c < cols; c += width) {
      const A q = (c == t ? A(1) - eps : A(0)) + smooth;
      st(gr + c, g * (dexp(ld(xr + c) - l) - q));
    }
  }
}

// Reference forward: one thread per row.
template <typename T>
__global__ void cross_entropy_reference_kernel(const T* logits, const int64_t* target, int64_t ts, int64_t ignore,
                                               Acc<T> eps, PerRow loss, PerRow lse, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const T* xr = logits + r * cols;
  A m = neg_inf<A>(), sx = 0, s = 0;
  for (int64_t c = 0; c < cols; ++c) {
    m = max(m, ld(xr + c));
    sx += ld(xr + c);
  }
  for (int64_t c = 0; c < cols; ++c) s += dexp(ld(xr + c) - m);
  const A l = m + dlog(s);
  const int64_t t = target[r * ts];
  put(lse, r, l);
  put(loss, r, t == ignore ? A(0) : l - (A(1) - eps) * ld(xr + t) - eps / static_cast<A>(cols) * sx);
}

// Reference backward: one thread per row.
template <typename T>
__global__ void cross_entropy_backward_reference_kernel(const T* logits, const int64_t* target, int64_t ts,
                                                        PerRow lse, PerRow gloss, int64_t ignore, Acc<T> eps,
                                                        T* glogits, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const int64_t t = target[r * ts];
  const A l = static_cast<A>(get(lse, r)), g = static_cast<A>(get(gloss, r));
  for (int64_t c = 0; c < cols; ++c) {
    const A q = (c == t ? A(1) - eps : A(0)) + eps / static_cast<A>(cols);
    st(glogits + r * cols + c, t == ignore ? A(0) : g * (dexp(ld(logits + r * cols + c) - l) - q));
  }
}

// ================================ launchers ================================

constexpr int64_t kWarpMaxCols = 1024;

// logits (N, C) contiguous; target i64 (N) any stride.
void check_ce_args(const char* what, const Tensor& logits, const Tensor& target) {
  check_contiguous(logits, what, "logits");
  check_float(logits, what);
  CHECK_EQ(logits.dim(), 2) << what << ": logits must be (N, C); got " << logits.str();
  check_on_cuda(target, what, "target");
  CHECK(target.dtype() == DType::i64 && target.dim() == 1 && target.size(0) == logits.size(0))
      << what << ": target must be i64 (" << logits.size(0) << "); got " << target.str();
}

// A float (N) vector, or with `scalar_ok` one value broadcast to every row; undefined is absent when optional.
PerRow per_row(const Tensor& t, int64_t n, const char* what, const char* name, bool optional, bool scalar_ok) {
  if (!t.defined()) {
    CHECK(optional) << what << ": " << name << " is required";
    return PerRow{nullptr, DType::f32, 0};
  }
  check_on_cuda(t, what, name);
  check_float(t, what);
  if (scalar_ok && t.numel() == 1 && n != 1) return PerRow{t.raw_data(), t.dtype(), 0};
  CHECK(t.dim() == 1 && t.size(0) == n) << what << ": " << name << " must be (" << n << "); got " << t.str();
  return PerRow{t.raw_data(), t.dtype(), t.stride(0)};
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                   const Tensor& lse, Impl impl) {
  check_ce_args("cross_entropy", logits, target);
  const int64_t rows = logits.size(0), cols = logits.size(1);
  const PerRow l = per_row(loss, rows, "cross_entropy", "loss", false, false);
  const PerRow e = per_row(lse, rows, "cross_entropy", "lse", true, false);
  if (rows == 0) return;
  CHECK_GT(cols, 0) << "cross_entropy: no classes in " << logits.str();
  const int64_t ts = target.stride(0);
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto t) {
    using T = decltype(t);
    const auto ep = static_cast<Acc<T>>(eps);
    const T* px = logits.data<T>();
    const int64_t* pt = target.data<int64_t>();
    if (impl == Impl::reference)
      cross_entropy_reference_kernel<T><<<blocks_for(rows, 128), 128, 0, stream()>>>(px, pt, ts, ignore_index, ep, l,
                                                                                     e, rows, cols);
    else if (cols <= kWarpMaxCols)
      cross_entropy_kernel<T, false><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream()>>>(
          px, pt, ts, ignore_index, ep, l, e, rows, cols);
    else
      cross_entropy_kernel<T, true><<<blocks_for(rows, 1), 512, 0, stream()>>>(px, pt, ts, ignore_index, ep, l, e,
                                                                               rows, cols);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                            int64_t ignore_index, double eps, const Tensor& glogits, Impl impl) {
  check_ce_args("cross_entropy_backward", logits, target);
  check_contiguous(glogits, "cross_entropy_backward", "glogits");
  check_same_shape(logits, glogits, "cross_entropy_backward");
  CHECK(glogits.dtype() == logits.dtype()) << "cross_entropy_backward: glogits dtype must match logits; got "
                                           << glogits.str();
  const int64_t rows = logits.size(0), cols = logits.size(1);
  const PerRow e = per_row(lse, rows, "cross_entropy_backward", "lse", false, false);
  const PerRow g = per_row(gloss, rows, "cross_entropy_backward", "gloss", false, true);
  if (rows == 0 || cols == 0) return;
  const int64_t ts = target.stride(0);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto t) {
    using T = decltype(t);
    const auto ep = static_cast<Acc<T>>(eps);
    const T* px = logits.data<T>();
    const int64_t* pt = target.data<int64_t>();
    T* pg = glogits.data<T>();
    if (impl == Impl::reference)
      cross_entropy_backward_reference_kernel<T><<<blocks_for(rows, 128), 128, 0, stream()>>>(
          px, pt, ts, e, g, ignore_index, ep, pg, rows, cols);
    else if (cols <= kWarpMaxCols)
      cross_entropy_backward_kernel<T, false><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream()>>>(
          px, pt, ts, e, g, ignore_index, ep, pg, rows, cols);
    else
      cross_entropy_backward_kernel<T, true><<<blocks_for(rows, 1), 512, 0, stream()>>>(px, pt, ts, e, g,
                                                                                        ignore_index, ep, pg, rows,
                                                                                        cols);
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

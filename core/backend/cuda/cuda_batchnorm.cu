// CUDA batch norm kernels over (N, C, L): per-channel statistics and gradient sums with a block per channel
// (two passes, Acc<T> sums), the per-channel affine and the input gradient as grid-stride elementwise kernels.
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// Element k of channel c's M = N L elements, at ((n C + c) L + l) for k = n L + l.
__device__ __forceinline__ int64_t channel_offset(int64_t k, int64_t c, int64_t ch, int64_t l) {
  return ((k / l) * ch + c) * l + k % l;
}

// mean_c = sum x / M, var_c = sum (x - mean_c)^2 / M; block c takes channel c.
template <typename T>
__global__ void bn_stats_kernel(const T* x, Acc<T>* mean, Acc<T>* var, int64_t n, int64_t ch, int64_t l) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const int64_t c = blockIdx.x, m = n * l;
  A s = 0;
  for (int64_t k = threadIdx.x; k < m; k += blockDim.x) s += ld(x + channel_offset(k, c, ch, l));
  const A mu = block_sum(s, scratch) / static_cast<A>(m);
  A v = 0;
  for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
    const A d = ld(x + channel_offset(k, c, ch, l)) - mu;
    v += d * d;
  }
  v = block_sum(v, scratch);
  if (threadIdx.x == 0) {
    mean[c] = mu;
    var[c] = v / static_cast<A>(m);
  }
}

// y = x scale_c + shift_c (shift may be null), one thread per element.
template <typename T>
__global__ void channel_affine_kernel(const T* x, const Acc<T>* scale, const Acc<T>* shift, T* y, int64_t total,
                                      int64_t ch, int64_t l) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (e / l) % ch;
    st(y + e, ld(x + e) * scale[c] + (shift != nullptr ? shift[c] : Acc<T>(0)));
  }
}

// sums[c] = sum gy, sums[C + c] = sum gy xhat (xhat = (x - mean) invstd); gb, gw (either may be null) get them.
// Block c takes channel c.
template <typename T>
__global__ void bn_backward_reduce_kernel(const T* x, const T* gy, const Acc<T>* mean, const Acc<T>* invstd,
                                          Acc<T>* sums, T* gw, T* gb, int64_t n, int64_t ch, int64_t l) {
  using A = Acc<T>;
  __shared__ A scratch[32];
  const int64_t c = blockIdx.x, m = n * l;
  const A mu = mean[c], is = invstd[c];
  A sg = 0, sgx = 0;
  for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
    const int64_t o = channel_offset(k, c, ch, l);
    const A g = ld(gy + o);
    sg += g;
    sgx += g * (ld(x + o) - mu) * is;
  }
  sg = block_sum(sg, scratch);
  sgx = block_sum(sgx, scratch);
  if (threadIdx.x == 0) {
    sums[c] = sg;
    sums[ch + c] = sgx;
    if (gb != nullptr) st(gb + c, sg);
    if (gw != nullptr) st(gw + c, sgx);
  }
}

// gx = w invstd (gy - (sum_gy + xhat sum_gy_xhat) / M) with batch statistics, else w invstd gy; w may be null.
template <typename T>
__global__ void bn_backward_gx_kernel(const T* x, const T* gy, const T* w, const Acc<T>* mean, const Acc<T>* invstd,
                                      const Acc<T>* sums, bool batch_stats, T* gx, int64_t total, int64_t ch,
                                      int64_t l) {
  using A = Acc<T>;
  const A m = static_cast<A>(total / ch);
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (e / l) % ch;
    const A k = (w != nullptr ? ld(w + c) : A(1)) * invstd[c];
    const A g = ld(gy + e);
    if (!batch_stats) {
      st(gx + e, k * g);
    } else {
      const A xhat = (ld(x + e) - mean[c]) * invstd[c];
      st(gx + e, k * (g - (sums[c] + xhat * sums[ch + c]) / m));
    }
  }
}

// Reference statistics: one thread per channel.
template <typename T>
__global__ void bn_stats_reference_kernel(const T* x, Acc<T>* mean, Acc<T>* var, int64_t n, int64_t ch, int64_t l) {
  using A = Acc<T>;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= ch) return;
  A s = 0, v = 0;
  for (int64_t k = 0; k < n * l; ++k) s += ld(x + channel_offset(k, c, ch, l));
  const A mu = s / static_cast<A>(n * l);
  for (int64_t k = 0; k < n * l; ++k) {
    const A d = ld(x + channel_offset(k, c, ch, l)) - mu;
    v += d * d;
  }
  mean[c] = mu;
  var[c] = v / static_cast<A>(n * l);
}

// Reference affine: one thread per row (n, c).
template <typename T>
__global__ void channel_affine_reference_kernel(const T* x, const Acc<T>* scale, const Acc<T>* shift, T* y,
                                                int64_t rows, int64_t ch, int64_t l) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  for (int64_t i = 0; i < l; ++i)
    st(y + r * l + i, ld(x + r * l + i) * scale[r % ch] + (shift != nullptr ? shift[r % ch] : Acc<T>(0)));
}

// Reference backward: one thread per channel, its sums then its gx.
template <typename T>
__global__ void bn_backward_reference_kernel(const T* x, const T* gy, const T* w, const Acc<T>* mean,
                                             const Acc<T>* invstd, bool batch_stats, T* gx, T* gw, T* gb, int64_t n,
                                             int64_t ch, int64_t l) {
  using A = Acc<T>;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= ch) return;
  const A mu = mean[c], is = invstd[c], k = (w != nullptr ? ld(w + c) : A(1)) * is, m = static_cast<A>(n * l);
  A sg = 0, sgx = 0;
  for (int64_t j = 0; j < n * l; ++j) {
    const int64_t o = channel_offset(j, c, ch, l);
    sg += ld(gy + o);
    sgx += ld(gy + o) * (ld(x + o) - mu) * is;
  }
  if (gb != nullptr) st(gb + c, sg);
  if (gw != nullptr) st(gw + c, sgx);
  if (gx == nullptr) return;
  for (int64_t j = 0; j < n * l; ++j) {
    const int64_t o = channel_offset(j, c, ch, l);
    st(gx + o, batch_stats ? k * (ld(gy + o) - (sg + (ld(x + o) - mu) * is * sgx) / m) : k * ld(gy + o));
  }
}

template <typename P>
P* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<P>() : nullptr;
}

constexpr int kChannelThreads = 512;

}  // namespace

// ================================ launchers ================================

void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var, Impl impl) {
  check_on_cuda(x, "gpu::batchnorm_stats", "x");
  check_channel_args(x, {}, {}, {&mean, &var}, "gpu::batchnorm_stats");
  CHECK(mean.defined() && var.defined()) << "gpu::batchnorm_stats: needs mean and var";
  const int64_t n = x.size(0), ch = x.size(1), l = x.size(2);
  if (ch == 0) return;
  dispatch_float(x.dtype(), "batchnorm_stats", [&](auto t) {
    using T = decltype(t);
    using A = Acc<T>;
    if (impl == Impl::reference)
      bn_stats_reference_kernel<T><<<blocks_for(ch, 128), 128, 0, stream()>>>(x.data<T>(), mean.data<A>(),
                                                                              var.data<A>(), n, ch, l);
    else
      bn_stats_kernel<T><<<static_cast<unsigned>(ch), kChannelThreads, 0, stream()>>>(x.data<T>(), mean.data<A>(),
                                                                                      var.data<A>(), n, ch, l);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y, Impl impl) {
  check_on_cuda(x, "gpu::channel_affine", "x");
  check_channel_args(x, {&y}, {}, {&scale, &shift}, "gpu::channel_affine");
  CHECK(scale.defined() && y.defined()) << "gpu::channel_affine: needs scale and y";
  const int64_t ch = x.size(1), l = x.size(2), total = x.numel();
  if (total == 0) return;
  dispatch_float(x.dtype(), "channel_affine", [&](auto t) {
    using T = decltype(t);
    using A = Acc<T>;
    if (impl == Impl::reference)
      channel_affine_reference_kernel<T><<<blocks_for(total / l, 128), 128, 0, stream()>>>(
          x.data<T>(), scale.data<A>(), ptr_or_null<A>(shift), y.data<T>(), total / l, ch, l);
    else
      channel_affine_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(
          x.data<T>(), scale.data<A>(), ptr_or_null<A>(shift), y.data<T>(), total, ch, l);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb, Impl impl) {
  check_on_cuda(x, "gpu::batchnorm_backward", "x");
  check_channel_args(x, {&gy, &gx}, {&w, &gw, &gb}, {&mean, &invstd}, "gpu::batchnorm_backward");
  CHECK(gy.defined() && mean.defined() && invstd.defined()) << "gpu::batchnorm_backward: needs gy, mean and invstd";
  const int64_t n = x.size(0), ch = x.size(1), l = x.size(2), total = x.numel();
  if (ch == 0) return;
  dispatch_float(x.dtype(), "batchnorm_backward", [&](auto t) {
    using T = decltype(t);
    using A = Acc<T>;
    if (impl == Impl::reference) {
      bn_backward_reference_kernel<T><<<blocks_for(ch, 128), 128, 0, stream()>>>(
          x.data<T>(), gy.data<T>(), ptr_or_null<T>(w), mean.data<A>(), invstd.data<A>(), batch_stats,
          ptr_or_null<T>(gx), ptr_or_null<T>(gw), ptr_or_null<T>(gb), n, ch, l);
      return;
    }
    const Tensor sums = Tensor::empty({2, ch}, dtype_of<A>::value, x.device());
    bn_backward_reduce_kernel<T><<<static_cast<unsigned>(ch), kChannelThreads, 0, stream()>>>(
        x.data<T>(), gy.data<T>(), mean.data<A>(), invstd.data<A>(), sums.data<A>(), ptr_or_null<T>(gw),
        ptr_or_null<T>(gb), n, ch, l);
    PX_CUDA_LAUNCH_CHECK();
    if (gx.defined() && total > 0)
      bn_backward_gx_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(
          x.data<T>(), gy.data<T>(), ptr_or_null<T>(w), mean.data<A>(), invstd.data<A>(), sums.data<A>(),
          batch_stats, gx.data<T>(), total, ch, l);
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

// CUDA max pooling over (B, C, H, W) images: one thread per output scanning its window in row-major order
// (torch's tie and NaN rules), indices i64 into the image plane; the backward is a scatter-add in the op.
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ConvGeometry with its output size, as kernels take it.
struct Pool {
  int64_t h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};

// ================================ kernels ================================

// y = max over the window's taps inside the image, a tap winning when greater or NaN; idx = h W + w of the
// winner, the first tap inside the image while every value is -inf. One thread per output (b, c, oy, ox).
template <typename T>
__global__ void max_pool_kernel(const T* x, T* y, int64_t* idx, Pool g, int64_t n) {
  using A = Acc<T>;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = e % g.ow, oy = (e / g.ow) % g.oh, plane = e / (g.oh * g.ow);
    const T* src = x + plane * g.h * g.w;
    int64_t h0 = oy * g.sh - g.ph, w0 = ox * g.sw - g.pw;
    const int64_t h1 = min(h0 + (g.kh - 1) * g.dh + 1, g.h), w1 = min(w0 + (g.kw - 1) * g.dw + 1, g.w);
    while (h0 < 0) h0 += g.dh;
    while (w0 < 0) w0 += g.dw;
    int64_t best = h0 * g.w + w0;
    A m = neg_inf<A>();
    for (int64_t h = h0; h < h1; h += g.dh)
      for (int64_t w = w0; w < w1; w += g.dw) {
        const A v = ld(src + h * g.w + w);
        if (v > m || v != v) {
          m = v;
          best = h * g.w + w;
        }
      }
    st(y + e, m);
    idx[e] = best;
  }
}

// Reference: one thread per image plane, every tap of every window in tap order.
template <typename T>
__global__ void max_pool_reference_kernel(const T* x, T* y, int64_t* idx, Pool g, int64_t planes) {
  using A = Acc<T>;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= planes) return;
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      A m = neg_inf<A>();
      int64_t best = -1;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t h = oy * g.sh - g.ph + i * g.dh, w = ox * g.sw - g.pw + j * g.dw;
          if (h < 0 || h >= g.h || w < 0 || w >= g.w) continue;
          const A v = ld(x + (p * g.h + h) * g.w + w);
          if (best < 0) best = h * g.w + w;
          if (v > m || v != v) {
            m = v;
            best = h * g.w + w;
          }
        }
      const int64_t o = (p * g.oh + oy) * g.ow + ox;
      st(y + o, m);
      idx[o] = best;
    }
}

}  // namespace

// ================================ launchers ================================

void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g, Impl impl) {
  check_on_cuda(x, "gpu::max_pool2d", "x");
  check_max_pool_args(x, y, indices, g, "gpu::max_pool2d");
  check_float(x, "gpu::max_pool2d");
  if (y.numel() == 0) return;
  const Pool p{g.height, g.width,    g.kernel_h,   g.kernel_w,   g.stride_h, g.stride_w,
               g.pad_h,  g.pad_w,    g.dilation_h, g.dilation_w, g.out_h(),  g.out_w()};
  dispatch_float(x.dtype(), "max_pool2d", [&](auto t) {
    using T = decltype(t);
    if (impl == Impl::reference) {
      const int64_t planes = x.size(0) * g.channels;
      max_pool_reference_kernel<T><<<static_cast<unsigned>((planes + 127) / 128), 128, 0, stream()>>>(
          x.data<T>(), y.data<T>(), indices.data<int64_t>(), p, planes);
    } else {
      max_pool_kernel<T><<<blocks_for(y.numel()), kThreads, 0, stream()>>>(x.data<T>(), y.data<T>(),
                                                                          indices.data<int64_t>(), p, y.numel());
    }
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

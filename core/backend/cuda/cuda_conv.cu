// CUDA im2col / col2im around convolution's GEMMs, col (C kh kw, B, OH OW): im2col a thread per (image, channel,
// output position) writing its kh kw taps; col2im a thread per image element gathering the taps that read it.
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ConvGeometry with its output size and the batch, as kernels take it (by value, no host member functions).
struct Window {
  int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, batch;
};

// ================================ kernels ================================

// col[(c, i, j), b, (y, x)] = img[b, c, y sh - ph + i dh, x sw - pw + j dw] (0 outside): one thread per
// (b, c, y, x) writes its kh kw taps; consecutive threads write consecutive columns.
template <typename T>
__global__ void im2col_kernel(const T* img, T* col, Window g, int64_t n) {
  const int64_t l = g.oh * g.ow, taps = g.kh * g.kw;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = e % g.ow, y = (e / g.ow) % g.oh, plane = e / l;  // plane = b C + c
    const int64_t b = plane / g.c, c = plane % g.c;
    const T* src = img + plane * g.h * g.w;
    T* dst = col + (c * taps * g.batch + b) * l + y * g.ow + x;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t hi = y * g.sh - g.ph + i * g.dh;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t wi = x * g.sw - g.pw + j * g.dw;
        const bool inside = hi >= 0 && hi < g.h && wi >= 0 && wi < g.w;
        dst[(i * g.kw + j) * g.batch * l] = inside ? src[hi * g.w + wi] : T{};
      }
    }
  }
}

// img[b, c, h, w] = sum over taps (i, j), in order, of col[(c, i, j), b, (y, x)] for the (y, x) with
// y sh - ph + i dh = h and x sw - pw + j dw = w: one thread per image element, Acc<T> sums.
template <typename T>
__global__ void col2im_kernel(const T* col, T* img, Window g, int64_t n) {
  const int64_t l = g.oh * g.ow, taps = g.kh * g.kw;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t w = e % g.w, h = (e / g.w) % g.h, plane = e / (g.h * g.w);
    const int64_t b = plane / g.c, c = plane % g.c;
    const T* src = col + (c * taps * g.batch + b) * l;
    Acc<T> s = 0;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ys = h + g.ph - i * g.dh;  // y sh
      if (ys < 0 || ys % g.sh != 0 || ys / g.sh >= g.oh) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t xs = w + g.pw - j * g.dw;  // x sw
        if (xs < 0 || xs % g.sw != 0 || xs / g.sw >= g.ow) continue;
        s += ld(src + (i * g.kw + j) * g.batch * l + (ys / g.sh) * g.ow + xs / g.sw);
      }
    }
    st(img + e, s);
  }
}

// Reference im2col: one thread per col element, its image position from the definition.
template <typename T>
__global__ void im2col_reference_kernel(const T* img, T* col, Window g, int64_t n) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n) return;
  const int64_t l = g.oh * g.ow, taps = g.kh * g.kw;
  const int64_t x = e % g.ow, y = (e / g.ow) % g.oh, b = (e / l) % g.batch, ct = e / (l * g.batch);
  const int64_t tap = ct % taps, c = ct / taps;
  const int64_t hi = y * g.sh - g.ph + (tap / g.kw) * g.dh, wi = x * g.sw - g.pw + (tap % g.kw) * g.dw;
  const bool inside = hi >= 0 && hi < g.h && wi >= 0 && wi < g.w;
  col[e] = inside ? img[((b * g.c + c) * g.h + hi) * g.w + wi] : T{};
}

// Reference col2im: one thread per image element scans every col element of its (image, channel) for those read
// from it.
template <typename T>
__global__ void col2im_reference_kernel(const T* col, T* img, Window g, int64_t n) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n) return;
  const int64_t w = e % g.w, h = (e / g.w) % g.h, b = (e / (g.h * g.w)) % g.batch, c = e / (g.h * g.w * g.batch);
  const int64_t l = g.oh * g.ow;
  Acc<T> s = 0;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j)
      for (int64_t y = 0; y < g.oh; ++y)
        for (int64_t x = 0; x < g.ow; ++x)
          if (y * g.sh - g.ph + i * g.dh == h && x * g.sw - g.pw + j * g.dw == w)
            s += ld(col + (((c * g.kh + i) * g.kw + j) * g.batch + b) * l + y * g.ow + x);
  st(img + ((b * g.c + c) * g.h + h) * g.w + w, s);
}

// ================================ launchers ================================

Window window_of(const ConvGeometry& g, int64_t batch) {
  return {g.channels, g.height,     g.width,      g.kernel_h,   g.kernel_w, g.stride_h, g.stride_w,
          g.pad_h,    g.pad_w,      g.dilation_h, g.dilation_w, g.out_h(),  g.out_w(),  batch};
}

void check_args(const Tensor& img, const Tensor& col, const ConvGeometry& g, const char* what) {
  check_on_cuda(img, what, "image");
  check_on_cuda(col, what, "col");
  check_im2col_args(img, col, g, what);
  check_float(img, what);
}

}  // namespace

void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g, Impl impl) {
  check_args(x, col, g, "gpu::im2col");
  if (x.numel() == 0) return;
  const Window w = window_of(g, x.size(0));
  dispatch_float(x.dtype(), "im2col", [&](auto t) {
    using T = decltype(t);
    if (impl == Impl::reference) {
      const int64_t n = col.numel();
      im2col_reference_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream()>>>(
          x.data<T>(), col.data<T>(), w, n);
    } else {
      const int64_t n = x.size(0) * g.channels * w.oh * w.ow;
      im2col_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x.data<T>(), col.data<T>(), w, n);
    }
  });
  PX_CUDA_LAUNCH_CHECK();
}

void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g, Impl impl) {
  check_args(x, col, g, "gpu::col2im");
  const int64_t n = x.numel();
  if (n == 0) return;
  const Window w = window_of(g, x.size(0));
  dispatch_float(x.dtype(), "col2im", [&](auto t) {
    using T = decltype(t);
    if (impl == Impl::reference)
      col2im_reference_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream()>>>(
          col.data<T>(), x.data<T>(), w, n);
    else
      col2im_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(col.data<T>(), x.data<T>(), w, n);
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

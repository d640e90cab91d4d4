// CPU im2col and col2im, the data movement around convolution's GEMMs: one col row (or one image plane) per
// item of an OpenMP loop, unit-stride runs copied or added whole, the padding's zeros written as runs.
#include <algorithm>
#include <cstdint>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/f32_stage.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::parallel_for;

// The outputs o in [*lo, *hi) of n whose input index o * stride + start lies in [0, size).
void valid_range(int64_t n, int64_t stride, int64_t start, int64_t size, int64_t* lo, int64_t* hi) {
  *lo = start >= 0 ? 0 : (-start + stride - 1) / stride;
  const int64_t last = size - 1 - start;  // o * stride <= last
  *hi = last < 0 ? 0 : std::min(n, last / stride + 1);
  *lo = std::min(*lo, *hi);
}

// col[(c, i, j), b, (oh, ow)] = x[b, c, oh sh - ph + i dh, ow sw - pw + j dw] or 0 outside; one col row (one tap of
// one image) per item. T is the element's storage (a 16-bit float moves as its bits: its zero is all-zero bits too).
template <typename T>
void im2col_typed(const T* x, T* col, int64_t batch, const ConvGeometry& g) {
  const int64_t oh = g.out_h(), ow = g.out_w(), l = oh * ow, taps = g.kernel_h * g.kernel_w;
  const int64_t plane = g.height * g.width;
  parallel_for(g.col_rows() * batch, l, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {  // r = ((c taps + tap) batch + b)
      const int64_t b = r % batch, ct = r / batch, tap = ct % taps, i = tap / g.kernel_w, j = tap % g.kernel_w;
      const T* src = x + (b * g.channels + ct / taps) * plane;
      T* dst = col + r * l;
      int64_t h0, h1, w0, w1;
      valid_range(oh, g.stride_h, i * g.dilation_h - g.pad_h, g.height, &h0, &h1);
      valid_range(ow, g.stride_w, j * g.dilation_w - g.pad_w, g.width, &w0, &w1);
      std::fill(dst, dst + h0 * ow, T(0));
      for (int64_t y = h0; y < h1; ++y) {
        T* d = dst + y * ow;
        std::fill(d, d + w0, T(0));
        if (w1 > w0) {
          const T* s = src + (y * g.stride_h - g.pad_h + i * g.dilation_h) * g.width +
                       (w0 * g.stride_w - g.pad_w + j * g.dilation_w);
          if (g.stride_w == 1) {
            std::copy(s, s + (w1 - w0), d + w0);
          } else {
            for (int64_t k = 0; k < w1 - w0; ++k) d[w0 + k] = s[k * g.stride_w];
          }
        }
        std::fill(d + w1, d + ow, T(0));
      }
      std::fill(dst + h1 * ow, dst + l, T(0));
    }
  });
}

// x[b, c] = sum over taps (i, j), in order, of the col row ((c, i, j), b) added at the positions im2col read it
// from; one image plane per item, so no two threads write one element.
template <typename T>
void col2im_typed(const T* col, T* x, int64_t batch, const ConvGeometry& g) {
  const int64_t oh = g.out_h(), ow = g.out_w(), l = oh * ow, taps = g.kernel_h * g.kernel_w;
  const int64_t plane = g.height * g.width;
  parallel_for(batch * g.channels, taps * l, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {  // p = b C + c
      const int64_t b = p / g.channels, c = p % g.channels;
      T* dst = x + p * plane;
      std::fill(dst, dst + plane, T(0));
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int64_t i = tap / g.kernel_w, j = tap % g.kernel_w;
        const T* src = col + ((c * taps + tap) * batch + b) * l;
        int64_t h0, h1, w0, w1;
        valid_range(oh, g.stride_h, i * g.dilation_h - g.pad_h, g.height, &h0, &h1);
        valid_range(ow, g.stride_w, j * g.dilation_w - g.pad_w, g.width, &w0, &w1);
        if (w1 <= w0) continue;
        for (int64_t y = h0; y < h1; ++y) {
          T* d = dst + (y * g.stride_h - g.pad_h + i * g.dilation_h) * g.width +
                 (w0 * g.stride_w - g.pad_w + j * g.dilation_w);
          const T* s = src + y * ow + w0;
          const int64_t n = w1 - w0;
          if (g.stride_w == 1) {
#pragma omp simd
            for (int64_t k = 0; k < n; ++k) d[k] += s[k];
          } else {
            for (int64_t k = 0; k < n; ++k) d[k * g.stride_w] += s[k];
          }
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) {
  check_im2col_args(x, col, g, "CpuBackend::im2col");
  const int64_t batch = x.size(0);
  switch (x.dtype()) {
    case DType::f32: return im2col_typed(x.data<float>(), col.data<float>(), batch, g);
    case DType::f64: return im2col_typed(x.data<double>(), col.data<double>(), batch, g);
    case DType::bf16:
    case DType::f16:
      return im2col_typed(static_cast<const uint16_t*>(x.raw_data()), static_cast<uint16_t*>(col.raw_data()), batch,
                          g);
    default: LOG(FATAL) << "im2col: dtype " << dtype_name(x.dtype()) << " is not a float";
  }
}

void CpuBackend::col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) {
  check_im2col_args(x, col, g, "CpuBackend::col2im");
  if (F32Stage::any_half({&col, &x})) {  // sums in f32, one rounding
    F32Stage s;
    col2im(s.in(col), s.out(x), g);
    return s.finish();
  }
  dispatch_float(x.dtype(), "col2im",
                 [&](auto t) { col2im_typed(col.data<decltype(t)>(), x.data<decltype(t)>(), x.size(0), g); });
}

}  // namespace px

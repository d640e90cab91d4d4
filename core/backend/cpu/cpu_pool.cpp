// CPU max pooling over (B, C, H, W) images: one image plane per item of an OpenMP loop, each output scanning its
// window in row-major order (torch's tie and NaN rules); the backward is a scatter-add in the op.
#include <limits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/f32_stage.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::parallel_for;

// y = max over the window (a later value wins when greater or NaN), idx = h W + w of the winner, starting from
// the window's first position inside the image with -inf.
template <typename T>
void max_pool_typed(const T* x, T* y, int64_t* idx, int64_t planes, const ConvGeometry& g) {
  const int64_t oh = g.out_h(), ow = g.out_w(), in_plane = g.height * g.width;
  parallel_for(planes, oh * ow * g.kernel_h * g.kernel_w, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      const T* src = x + p * in_plane;
      for (int64_t oy = 0; oy < oh; ++oy) {
        int64_t h0 = oy * g.stride_h - g.pad_h;
        const int64_t h1 = std::min(h0 + (g.kernel_h - 1) * g.dilation_h + 1, g.height);
        while (h0 < 0) h0 += g.dilation_h;
        for (int64_t ox = 0; ox < ow; ++ox) {
          int64_t w0 = ox * g.stride_w - g.pad_w;
          const int64_t w1 = std::min(w0 + (g.kernel_w - 1) * g.dilation_w + 1, g.width);
          while (w0 < 0) w0 += g.dilation_w;
          int64_t best = h0 * g.width + w0;
          T m = -std::numeric_limits<T>::infinity();
          for (int64_t h = h0; h < h1; h += g.dilation_h)
            for (int64_t w = w0; w < w1; w += g.dilation_w) {
              const T v = src[h * g.width + w];
              if (v > m || v != v) {
                m = v;
                best = h * g.width + w;
              }
            }
          const int64_t o = (p * oh + oy) * ow + ox;
          y[o] = m;
          idx[o] = best;
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) {
  check_max_pool_args(x, y, indices, g, "CpuBackend::max_pool2d");
  if (F32Stage::any_half({&x, &y})) {  // exact: every output is an input value
    F32Stage s;
    max_pool2d(s.in(x), s.out(y), indices, g);
    return s.finish();
  }
  dispatch_float(x.dtype(), "max_pool2d", [&](auto t) {
    using T = decltype(t);
    max_pool_typed(x.data<T>(), y.data<T>(), indices.data<int64_t>(), x.size(0) * g.channels, g);
  });
}

}  // namespace px

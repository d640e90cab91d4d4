// Plain reference kernels of the window family: im2col / col2im, straight from the definition,
// one col element at a time through row-major positions, sums in double.
#include <vector>

#include "core/backend/cpu/reference_kernels.h"

namespace px::ref {
namespace {

// Calls f(col position, image position or -1 when the tap falls in the padding) for every col element of
// `batch` images, in row-major col order.
template <typename F>
void for_each_tap(int64_t batch, const ConvGeometry& g, F&& f) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  int64_t p = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i)
        for (int64_t j = 0; j < g.kernel_w; ++j)
          for (int64_t y = 0; y < oh; ++y)
            for (int64_t x = 0; x < ow; ++x, ++p) {
              const int64_t h = y * g.stride_h - g.pad_h + i * g.dilation_h;
              const int64_t w = x * g.stride_w - g.pad_w + j * g.dilation_w;
              const bool inside = h >= 0 && h < g.height && w >= 0 && w < g.width;
              f(p, inside ? ((b * g.channels + c) * g.height + h) * g.width + w : -1);
            }
}

}  // namespace

// col[b, (c, i, j), (y, x)] = x[b, c, y sh - ph + i dh, x sw - pw + j dw], 0 outside the image
void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) {
  check_im2col_args(x, col, g, "ref::im2col");
  for_each_tap(x.size(0), g, [&](int64_t p, int64_t src) { store(col, p, src < 0 ? 0.0 : load(x, src)); });
}

// x[b, c, h, w] = sum of every col element im2col reads from (b, c, h, w)
void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) {
  check_im2col_args(x, col, g, "ref::col2im");
  std::vector<double> acc(x.numel(), 0.0);
  for_each_tap(x.size(0), g, [&](int64_t p, int64_t dst) {
    if (dst >= 0) acc[dst] += load(col, p);
  });
  for (int64_t i = 0; i < x.numel(); ++i) store(x, i, acc[i]);
}

}  // namespace px::ref

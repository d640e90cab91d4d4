// Plain reference kernels of the window family: im2col / col2im and max pooling, straight from the definition,
// one col element (or window tap) at a time through row-major positions, sums in double.
#include <cmath>
#include <limits>
#include <vector>

#include "core/backend/cpu/reference_kernels.h"

namespace px::ref {
namespace {

// Calls f(col position, image position or -1 when the tap falls in the padding) for every col element of
// `batch` images, in row-major col order ((c, i, j), b, (y, x)).
template <typename F>
void for_each_tap(int64_t batch, const ConvGeometry& g, F&& f) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  int64_t p = 0;
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t i = 0; i < g.kernel_h; ++i)
      for (int64_t j = 0; j < g.kernel_w; ++j)
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t y = 0; y < oh; ++y)
            for (int64_t x = 0; x < ow; ++x, ++p) {
              const int64_t h = y * g.stride_h - g.pad_h + i * g.dilation_h;
              const int64_t w = x * g.stride_w - g.pad_w + j * g.dilation_w;
              const bool inside = h >= 0 && h < g.height && w >= 0 && w < g.width;
              f(p, inside ? ((b * g.channels + c) * g.height + h) * g.width + w : -1);
            }
}

}  // namespace

// col[(c, i, j), b, (y, x)] = x[b, c, y sh - ph + i dh, x sw - pw + j dw], 0 outside the image
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

// y = max over the taps inside the image, in tap order: a tap wins when it is greater or NaN; the first tap
// inside the image holds the index while every value is -inf.
void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) {
  check_max_pool_args(x, y, indices, g, "ref::max_pool2d");
  const int64_t taps = g.kernel_h * g.kernel_w, outputs = y.numel(), batch = x.size(0), l = g.out_area();
  std::vector<double> best(outputs, -std::numeric_limits<double>::infinity());
  std::vector<int64_t> arg(outputs, -1);
  for_each_tap(batch, g, [&](int64_t p, int64_t src) {
    // col position p = ((c taps + tap) B + b) OH OW + pos; output position o = (b C + c) OH OW + pos
    const int64_t rest = p / l, b = rest % batch, c = rest / batch / taps;
    const int64_t o = (b * g.channels + c) * l + p % l;
    if (src < 0) return;
    const double v = load(x, src);
    if (arg[o] < 0) arg[o] = src % (g.height * g.width);
    if (v > best[o] || std::isnan(v)) {
      best[o] = v;
      arg[o] = src % (g.height * g.width);
    }
  });
  for (int64_t o = 0; o < outputs; ++o) {
    store(y, o, best[o]);
    store(indices, o, static_cast<double>(arg[o]));
  }
}

}  // namespace px::ref

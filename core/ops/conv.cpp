// 2-d convolution through Backend::im2col / col2im and Backend::gemm, a chunk of images at a time so the
// col buffer stays within a budget; the backward recomputes col rather than keeping it.
#include "core/ops/conv.h"

#include <algorithm>

#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace px {

using autograd::SavedTensor;
using detail::backend_of;

namespace {

// Conv2dOptions::max_col_bytes's default: the col buffer of a chunk of images stays under it (one image's col
// when that is larger: ResNet-50's stem at 800x1333 is 157 MB per image in f32).
constexpr int64_t kColBudgetBytes = int64_t{256} << 20;

struct ConvPlan {
  ConvGeometry g;
  int64_t n = 0, cout = 0;
  int64_t k = 0, l = 0;     // col rows (Cin kh kw) and columns (OH OW)
  bool pointwise = false;   // 1x1, stride 1, unpadded: an image (Cin, H W) is its own col
  int64_t chunk = 1;        // images per col buffer
};

ConvPlan plan_of(const Tensor& x, const Tensor& weight, const Conv2dOptions& o) {
  const auto hw = [](const std::optional<std::array<int64_t, 2>>& pair, int64_t square) {
    return pair ? *pair : std::array<int64_t, 2>{square, square};
  };
  const auto [sh, sw] = hw(o.stride_hw, o.stride);
  const auto [ph, pw] = hw(o.padding_hw, o.padding);
  const auto [dh, dw] = hw(o.dilation_hw, o.dilation);
  ConvPlan p;
  p.g = {x.size(1), x.size(2), x.size(3), weight.size(2), weight.size(3), sh, sw, ph, pw, dh, dw};
  check_conv_geometry(p.g, "conv2d");
  p.n = x.size(0);
  p.cout = weight.size(0);
  p.k = p.g.col_rows();
  p.l = p.g.col_cols();
  p.pointwise = p.g.kernel_h == 1 && p.g.kernel_w == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
  const int64_t image_bytes = p.k * p.l * static_cast<int64_t>(dtype_size(x.dtype()));
  const int64_t budget = o.max_col_bytes > 0 ? o.max_col_bytes : kColBudgetBytes;
  p.chunk = std::clamp<int64_t>(budget / std::max<int64_t>(image_bytes, 1), 1, std::max<int64_t>(p.n, 1));
  return p;
}

// Images [n0, n0 + nb) of a contiguous (N, ...) tensor t as (nb, rows, cols).
Tensor images(const Tensor& t, int64_t n0, int64_t nb, int64_t rows, int64_t cols) {
  return t.as_strided({nb, rows, cols}, {rows * cols, cols, 1}, t.offset() + n0 * rows * cols);
}
// Images [n0, n0 + nb) of a contiguous (N, C, H, W) tensor t.
Tensor image_chunk(const Tensor& t, int64_t n0, int64_t nb, const ConvGeometry& g) {
  const Shape shape{nb, g.channels, g.height, g.width};
  return t.as_strided(shape, contiguous_strides(shape), t.offset() + n0 * g.channels * g.height * g.width);
}
// The col of x's images [n0, n0 + nb): x itself when pointwise, else im2col into the front of `buffer`.
Tensor col_of(const ConvPlan& p, const Tensor& x, int64_t n0, int64_t nb, const Tensor& buffer) {
  if (p.pointwise) return images(x, n0, nb, p.k, p.l);
  const Tensor col = images(buffer, 0, nb, p.k, p.l);
  backend_of(x).im2col(image_chunk(x, n0, nb, p.g), col, p.g);
  return col;
}
Tensor col_buffer(const ConvPlan& p, const Tensor& like) {
  return p.pointwise ? Tensor() : Tensor::empty({p.chunk, p.k, p.l}, like.dtype(), like.device());
}

// y[n] (Cout, L) = w (Cout, K) @ col(x[n]) (K, L) + b; x contiguous, w contiguous (Cout, K), y (N, Cout, L).
void conv_forward(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  Backend& be = backend_of(x);
  const Tensor buffer = col_buffer(p, x);
  for (int64_t n0 = 0; n0 < p.n; n0 += p.chunk) {
    const int64_t nb = std::min(p.chunk, p.n - n0);
    const Tensor col = col_of(p, x, n0, nb, buffer);
    const Tensor yb = images(y, n0, nb, p.cout, p.l);
    double beta = 0.0;
    if (bias.defined()) {  // y = b, then y += w @ col
      be.copy(bias.as_strided({nb, p.cout, p.l}, {0, bias.stride(0), 0}, bias.offset()), yb);
      beta = 1.0;
    }
    be.gemm(w.as_strided({nb, p.cout, p.k}, {0, p.k, 1}, w.offset()), col, yb, 1.0, beta);
  }
}

// gw (Cout, K) = sum_n gy[n] @ col(x[n])^T; gx[n] = col2im(w^T @ gy[n]) (pointwise: w^T @ gy[n] itself).
// x is needed for gw only, w for gx only; gy contiguous (N, Cout, L).
void conv_backward(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                   const Tensor& gw) {
  Backend& be = backend_of(gy);
  if (gw.defined() && p.n == 0) be.fill(gw, 0.0);
  const Tensor buffer = col_buffer(p, gy);
  for (int64_t n0 = 0; n0 < p.n; n0 += p.chunk) {
    const int64_t nb = std::min(p.chunk, p.n - n0);
    const Tensor gyb = images(gy, n0, nb, p.cout, p.l);
    if (gw.defined()) {
      const Tensor col = col_of(p, x, n0, nb, buffer);
      const Tensor gw3 = gw.as_strided({1, p.cout, p.k}, {0, p.k, 1}, gw.offset());
      for (int64_t i = 0; i < nb; ++i)
        be.gemm(gyb.as_strided({1, p.cout, p.l}, {0, p.l, 1}, gyb.offset() + i * p.cout * p.l),
                col.as_strided({1, p.l, p.k}, {0, 1, p.l}, col.offset() + i * p.k * p.l), gw3, 1.0,
                n0 + i == 0 ? 0.0 : 1.0);
    }
    if (gx.defined()) {
      const Tensor w_t = w.as_strided({nb, p.k, p.cout}, {0, 1, p.k}, w.offset());
      if (p.pointwise) {
        be.gemm(w_t, gyb, images(gx, n0, nb, p.k, p.l), 1.0, 0.0);
      } else {
        const Tensor gcol = images(buffer, 0, nb, p.k, p.l);  // col is spent: its buffer takes the gradient
        be.gemm(w_t, gyb, gcol, 1.0, 0.0);
        be.col2im(gcol, image_chunk(gx, n0, nb, p.g), p.g);
      }
    }
  }
}

}  // namespace

// y[n, o] = b[o] + sum_{c, i, j} w[o, c, i, j] x[n, c, oh s - p + i d, ow s - p + j d] (0 outside), i.e.
// y[n] = W col(x[n]); dL/dW = sum_n g[n] col(x[n])^T, dL/dx[n] = col2im(W^T g[n]), dL/db = sum_{n, oh, ow} g
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  detail::check_defined(x, "conv2d", "x");
  detail::check_defined(weight, "conv2d", "weight");
  detail::check_same(x, weight, "conv2d");
  detail::check_floating(x, "conv2d");
  CHECK(x.dim() == 4 && weight.dim() == 4) << "conv2d: x " << x.str() << " must be (N, Cin, H, W) and weight "
                                           << weight.str() << " (Cout, Cin, kh, kw)";
  CHECK_EQ(weight.size(1), x.size(1)) << "conv2d: weight " << weight.str() << " takes " << weight.size(1)
                                      << " input channels, x " << x.str() << " has " << x.size(1)
                                      << " (groups = 1 only)";
  if (bias.defined()) {
    detail::check_same(x, bias, "conv2d");
    CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0)) << "conv2d: bias " << bias.str() << " for weight "
                                                             << weight.str();
  }
  const ConvPlan p = plan_of(x, weight, o);
  const Tensor xc = detail::contiguous_raw(x);
  const Tensor wc = detail::contiguous_raw(weight);
  Tensor y = Tensor::empty({p.n, p.cout, p.g.out_h(), p.g.out_w()}, x.dtype(), x.device());
  conv_forward(p, xc, wc, bias, y);
  const bool need_x = autograd::any_requires_grad({&x}), need_w = autograd::any_requires_grad({&weight}),
             need_b = autograd::any_requires_grad({&bias});
  if (need_x || need_w || need_b) {
    autograd::attach(
        y, "Conv2dBackward", {x, weight, bias},
        [p, need_x, need_w, need_b, sx = SavedTensor(need_w ? xc : Tensor()), sw = SavedTensor(need_x ? wc : Tensor()),
         x_shape = x.shape(), w_shape = weight.shape()](const Tensor& g) {
          const Tensor gc = detail::contiguous_raw(g);
          Tensor gx = need_x ? Tensor::empty(x_shape, g.dtype(), g.device()) : Tensor();
          Tensor gw = need_w ? Tensor::empty(w_shape, g.dtype(), g.device()) : Tensor();
          conv_backward(p, sx.unpack("Conv2dBackward"), sw.unpack("Conv2dBackward"), gc, gx, gw);
          Tensor gb;
          if (need_b) gb = sum(images(gc, 0, p.n, p.cout, p.l), {0, 2});
          return std::vector<Tensor>{gx, gw, gb};
        });
  }
  return y;
}

}  // namespace px

// 2-d convolution through Backend::im2col / col2im and Backend::gemm, a chunk of images side by side per GEMM so the
// col buffer stays within a budget; the backward recomputes col rather than keeping it.
#include "core/ops/conv.h"

#include <algorithm>

#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace px {

using autograd::SavedTensor;
using detail::backend_of;

namespace {

// Conv2dOptions::max_col_bytes's default per device: the col buffer of a chunk of images stays under it (or holds
// one image when that is larger: ResNet-50's stem at 800x1333 is 157 MB per image in f32). On the CPU a chunk
// that stays in cache is fastest (bench/conv_vs_torch.py: 38 MB chunks were 2x slower than 4 MB ones); on a GPU
// large chunks make large GEMMs.
constexpr int64_t kCpuColBytes = int64_t{4} << 20;
constexpr int64_t kGpuColBytes = int64_t{256} << 20;

struct ConvPlan {
  ConvGeometry g;
  int64_t n = 0, cout = 0;
  int64_t k = 0, l = 0;     // col rows (Cin kh kw) and output positions per image (OH OW)
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
  p.l = p.g.out_area();
  p.pointwise = p.g.kernel_h == 1 && p.g.kernel_w == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
  const int64_t image_bytes = p.k * p.l * static_cast<int64_t>(dtype_size(x.dtype()));
  const int64_t budget = o.max_col_bytes > 0 ? o.max_col_bytes : x.device().is_cpu() ? kCpuColBytes : kGpuColBytes;
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
// The front of a contiguous buffer as a (1, rows, cols) GEMM operand.
Tensor matrix(const Tensor& buffer, int64_t rows, int64_t cols) {
  return buffer.as_strided({1, rows, cols}, {0, cols, 1}, buffer.offset());
}
// A (1, rows, cols) matrix m of nb images side by side ((rows, nb, l), cols = nb l) seen as (nb, rows, l).
Tensor per_image(const Tensor& m, int64_t nb, int64_t rows, int64_t l) {
  return m.as_strided({nb, rows, l}, {l, nb * l, 1}, m.offset());
}
// im2col of x's images [n0, n0 + nb) into the front of `buffer`, as the (1, K, nb L) GEMM operand.
Tensor col_of(const ConvPlan& p, const Tensor& x, int64_t n0, int64_t nb, const Tensor& buffer) {
  const Tensor col = buffer.as_strided({p.k, nb, p.l}, {nb * p.l, p.l, 1}, buffer.offset());
  backend_of(x).im2col(image_chunk(x, n0, nb, p.g), col, p.g);
  return matrix(col, p.k, nb * p.l);
}
// g[n0, n0 + nb) (nb, R, L) as a (1, R, nb L) matrix: the tensor itself for one image, else a permuted copy into the
// front of `buffer`.
Tensor side_by_side(const Tensor& g, const Tensor& buffer, int64_t nb, int64_t rows, int64_t l) {
  if (nb == 1) return matrix(g, rows, l);
  const Tensor m = matrix(buffer, rows, nb * l);
  backend_of(g).copy(g, per_image(m, nb, rows, l));
  return m;
}

// y[n] (Cout, L) = w (Cout, K) @ col(x[n]) (K, L) + b: one GEMM over a chunk's images side by side (then permuted
// into y), or, pointwise, a GEMM per image on x itself. x, w (Cout, K), y (N, Cout, L) contiguous.
void conv_forward(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  Backend& be = backend_of(x);
  Tensor col, out;  // buffers: (K, chunk, L) and (Cout, chunk, L)
  if (!p.pointwise) col = Tensor::empty({p.k * p.chunk * p.l}, x.dtype(), x.device());
  if (!p.pointwise && p.chunk > 1) out = Tensor::empty({p.cout * p.chunk * p.l}, x.dtype(), x.device());
  for (int64_t n0 = 0; n0 < p.n; n0 += p.chunk) {
    const int64_t nb = std::min(p.chunk, p.n - n0);
    const Tensor yb = images(y, n0, nb, p.cout, p.l);
    Tensor a, b, c;  // c = a @ b: (nb, Cout, K) @ (nb, K, L) pointwise, else (1, Cout, K) @ (1, K, nb L)
    if (p.pointwise) {
      a = w.as_strided({nb, p.cout, p.k}, {0, p.k, 1}, w.offset());
      b = images(x, n0, nb, p.k, p.l);
      c = yb;
    } else {
      a = matrix(w, p.cout, p.k);
      b = col_of(p, x, n0, nb, col);
      c = nb == 1 ? matrix(yb, p.cout, p.l) : matrix(out, p.cout, nb * p.l);
    }
    double beta = 0.0;
    if (bias.defined()) {  // c = b, then c += a @ b
      be.copy(bias.as_strided(c.shape(), {0, bias.stride(0), 0}, bias.offset()), c);
      beta = 1.0;
    }
    be.gemm(a, b, c, 1.0, beta);
    if (!p.pointwise && nb > 1) be.copy(per_image(c, nb, p.cout, p.l), yb);
  }
}

// gw (Cout, K) = sum_n gy[n] @ col(x[n])^T; gx[n] = col2im(w^T @ gy[n]) (pointwise: w^T @ gy[n] itself), a chunk's
// images side by side in one GEMM each. x is needed for gw only, w for gx only; gy contiguous (N, Cout, L).
void conv_backward(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                   const Tensor& gw) {
  Backend& be = backend_of(gy);
  if (gw.defined() && p.n == 0) be.fill(gw, 0.0);
  const Tensor gw_m = gw.defined() ? matrix(gw, p.cout, p.k) : Tensor();
  Tensor col, gyt;  // buffers: (K, chunk, L) and (Cout, chunk, L)
  if (!p.pointwise) col = Tensor::empty({p.k * p.chunk * p.l}, gy.dtype(), gy.device());
  if (!p.pointwise && p.chunk > 1) gyt = Tensor::empty({p.cout * p.chunk * p.l}, gy.dtype(), gy.device());
  for (int64_t n0 = 0; n0 < p.n; n0 += p.chunk) {
    const int64_t nb = std::min(p.chunk, p.n - n0);
    const Tensor gyb = images(gy, n0, nb, p.cout, p.l);
    if (p.pointwise) {
      for (int64_t n = n0; gw.defined() && n < n0 + nb; ++n) {  // gw += gy[n] x[n]^T
        const Tensor x_t = x.as_strided({1, p.l, p.k}, {0, 1, p.l}, x.offset() + n * p.k * p.l);
        be.gemm(images(gy, n, 1, p.cout, p.l), x_t, gw_m, 1.0, n == 0 ? 0.0 : 1.0);
      }
      if (gx.defined())  // gx[n] = w^T gy[n]
        be.gemm(w.as_strided({nb, p.k, p.cout}, {0, 1, p.k}, w.offset()), gyb, images(gx, n0, nb, p.k, p.l), 1.0, 0.0);
      continue;
    }
    const Tensor gm = side_by_side(gyb, gyt, nb, p.cout, p.l);  // (1, Cout, nb L)
    if (gw.defined()) {
      const Tensor cm = col_of(p, x, n0, nb, col);
      be.gemm(gm, cm.as_strided({1, nb * p.l, p.k}, {0, 1, nb * p.l}, cm.offset()), gw_m, 1.0, n0 == 0 ? 0.0 : 1.0);
    }
    if (gx.defined()) {
      const Tensor gcol = matrix(col, p.k, nb * p.l);  // col is spent: its buffer takes the gradient
      be.gemm(w.as_strided({1, p.k, p.cout}, {0, 1, p.k}, w.offset()), gm, gcol, 1.0, 0.0);
      be.col2im(col.as_strided({p.k, nb, p.l}, {nb * p.l, p.l, 1}, col.offset()), image_chunk(gx, n0, nb, p.g), p.g);
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

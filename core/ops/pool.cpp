// max_pool2d through Backend::max_pool2d with a scatter-add backward, and nearest interpolation as two
// index_selects with host-computed source indices (index_adds backward).
#include "core/ops/pool.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/factory.h"
#include "core/ops/op_utils.h"

namespace px {

using detail::backend_of;

namespace {

// The i64 tensor of `values` on `device`; a device copy is queued from pinned memory, without a host wait.
Tensor index_tensor(const std::vector<int64_t>& values, Device device) {
  const int64_t n = static_cast<int64_t>(values.size());
  Tensor host = device.is_cpu() ? Tensor::empty({n}, DType::i64) : Tensor::empty_pinned({n}, DType::i64);
  std::copy(values.begin(), values.end(), host.data<int64_t>());
  if (device.is_cpu()) return host;
  Tensor out = Tensor::empty({n}, DType::i64, device);
  backend_for(device).copy(host, out);
  return out;
}

// torch's nearest source index for each of `out` positions over `in`: min(floor(o * (in / out)), in - 1) in f32.
std::vector<int64_t> nearest_sources(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<int64_t> src(out);
  for (int64_t o = 0; o < out; ++o)
    src[o] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
  return src;
}

}  // namespace

// y[n, c, oy, ox] = max_{i, j} x[n, c, oy s - p + i, ox s - p + j] (-inf outside), a = its position;
// dL/dx[n, c] = zeros.scatter_add(a[n, c], g[n, c]) over the image plane
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  detail::check_defined(x, "max_pool2d", "x");
  detail::check_floating(x, "max_pool2d");
  CHECK_EQ(x.dim(), 4) << "max_pool2d: x " << x.str() << " must be (N, C, H, W)";
  CHECK(kernel > 0 && stride > 0 && padding >= 0 && padding <= kernel / 2)
      << "max_pool2d: kernel " << kernel << ", stride " << stride << " and padding " << padding
      << " (at most kernel / 2) do not make windows";
  const ConvGeometry g{x.size(1), x.size(2), x.size(3), kernel, kernel, stride, stride, padding, padding, 1, 1};
  check_conv_geometry(g, "max_pool2d");
  const Tensor xc = detail::contiguous_raw(x);
  const int64_t n = x.size(0), planes = n * g.channels, in_plane = g.height * g.width;
  const int64_t out_plane = g.out_h() * g.out_w();
  Tensor y = Tensor::empty({n, g.channels, g.out_h(), g.out_w()}, x.dtype(), x.device());
  Tensor argmax = Tensor::empty(y.shape(), DType::i64, x.device());
  if (n > 0) backend_of(x).max_pool2d(xc, y, argmax, g);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "MaxPool2dBackward", {x},
                     [argmax, planes, in_plane, out_plane, x_shape = x.shape()](const Tensor& g) {
                       Tensor gx = zeros(x_shape, g.dtype(), g.device());
                       if (planes > 0) {
                         const Tensor gc = detail::contiguous_raw(g);
                         backend_of(g).scatter_add(gx.as_strided({planes, in_plane}, {in_plane, 1}, 0), 1,
                                                   argmax.as_strided({planes, out_plane}, {out_plane, 1}, 0),
                                                   gc.as_strided({planes, out_plane}, {out_plane, 1}, gc.offset()));
                       }
                       return std::vector<Tensor>{gx};
                     });
  }
  return y;
}

// y[.., i, j] = x[.., rows[i], cols[j]]; dL/dx = zeros.index_add(H, rows, zeros.index_add(W, cols, g))
Tensor interpolate_nearest(const Tensor& x, int64_t out_h, int64_t out_w) {
  detail::check_defined(x, "interpolate_nearest", "x");
  CHECK(x.dim() == 3 || x.dim() == 4) << "interpolate_nearest: x " << x.str() << " must be (N, C, H, W) or (N, H, W)";
  CHECK(out_h > 0 && out_w > 0) << "interpolate_nearest: output size " << out_h << "x" << out_w;
  const int64_t dh = x.dim() - 2, dw = x.dim() - 1;
  CHECK(x.size(dh) > 0 && x.size(dw) > 0) << "interpolate_nearest: empty image " << x.str();
  const Tensor rows = index_tensor(nearest_sources(x.size(dh), out_h), x.device());
  const Tensor cols = index_tensor(nearest_sources(x.size(dw), out_w), x.device());
  Shape mid_shape = x.shape(), out_shape = x.shape();
  mid_shape[dh] = out_shape[dh] = out_h;
  out_shape[dw] = out_w;
  Backend& be = backend_of(x);
  Tensor mid = Tensor::empty(mid_shape, x.dtype(), x.device()), y = Tensor::empty(out_shape, x.dtype(), x.device());
  if (x.numel() > 0) {
    be.index_select(detail::contiguous_raw(x), dh, rows, mid);
    be.index_select(mid, dw, cols, y);
  }
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "InterpolateNearestBackward", {x},
                     [rows, cols, dh, dw, mid_shape, x_shape = x.shape()](const Tensor& g) {
                       Tensor gmid = zeros(mid_shape, g.dtype(), g.device());
                       Tensor gx = zeros(x_shape, g.dtype(), g.device());
                       if (g.numel() > 0) {
                         backend_of(g).index_add(gmid, dw, cols, detail::contiguous_raw(g));
                         backend_of(g).index_add(gx, dh, rows, gmid);
                       }
                       return std::vector<Tensor>{gx};
                     });
  }
  return y;
}

}  // namespace px

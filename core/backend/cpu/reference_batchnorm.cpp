// Plain reference kernels of batch norm over (N, C, L): statistics, the per-channel affine and the backward,
// one channel at a time through row-major positions, sums in double.
#include <cmath>
#include <vector>

#include "core/backend/cpu/reference_kernels.h"

namespace px::ref {
namespace {

// Calls f(position) for every element of channel c of x (N, C, L).
template <typename F>
void for_channel(const Tensor& x, int64_t c, F&& f) {
  const int64_t ch = x.size(1), l = x.size(2);
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t i = 0; i < l; ++i) f((n * ch + c) * l + i);
}

}  // namespace

// mean_c = sum x / M, var_c = sum (x - mean_c)^2 / M
void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  check_channel_args(x, {}, {}, {&mean, &var}, "ref::batchnorm_stats");
  const double m = static_cast<double>(x.size(0) * x.size(2));
  for (int64_t c = 0; c < x.size(1); ++c) {
    double s = 0, v = 0;
    for_channel(x, c, [&](int64_t p) { s += load(x, p); });
    const double mu = s / m;
    for_channel(x, c, [&](int64_t p) { v += (load(x, p) - mu) * (load(x, p) - mu); });
    store(mean, c, mu);
    store(var, c, v / m);
  }
}

// y = x scale_c + shift_c
void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) {
  check_channel_args(x, {&y}, {}, {&scale, &shift}, "ref::channel_affine");
  for (int64_t c = 0; c < x.size(1); ++c) {
    const double a = load(scale, c), b = shift.defined() ? load(shift, c) : 0.0;
    for_channel(x, c, [&](int64_t p) { store(y, p, load(x, p) * a + b); });
  }
}

// gb = sum gy, gw = sum gy xhat; gx = w invstd (gy - (gb + xhat gw) / M) with batch statistics, else w invstd gy
void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  check_channel_args(x, {&gy, &gx}, {&w, &gw, &gb}, {&mean, &invstd}, "ref::batchnorm_backward");
  const double m = static_cast<double>(x.size(0) * x.size(2));
  for (int64_t c = 0; c < x.size(1); ++c) {
    const double mu = load(mean, c), is = load(invstd, c), k = (w.defined() ? load(w, c) : 1.0) * is;
    double sg = 0, sgx = 0;
    for_channel(x, c, [&](int64_t p) {
      sg += load(gy, p);
      sgx += load(gy, p) * (load(x, p) - mu) * is;
    });
    if (gb.defined()) store(gb, c, sg);
    if (gw.defined()) store(gw, c, sgx);
    if (!gx.defined()) continue;
    for_channel(x, c, [&](int64_t p) {
      const double xhat = (load(x, p) - mu) * is;
      store(gx, p, batch_stats ? k * (load(gy, p) - (sg + xhat * sgx) / m) : k * load(gy, p));
    });
  }
}

}  // namespace px::ref

// CPU batch norm kernels over (N, C, L): per-channel statistics and gradient sums from per-row partials in double
// (rows (n, c) in parallel, so any shape spreads over the threads), the per-channel affine y = x scale + shift.
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/f32_stage.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::parallel_for;

// The (N, C, L) sizes of x.
struct Rows {
  int64_t n, c, l;
  explicit Rows(const Tensor& x) : n(x.size(0)), c(x.size(1)), l(x.size(2)) {}
  int64_t count() const { return n * c; }
};

// Per channel, the sum over rows (n, c) of row_sum(row, c), each row's sum computed in parallel.
template <typename F>
std::vector<double> channel_sums(const Rows& r, F&& row_sum) {
  std::vector<double> per_row(r.count());
  parallel_for(r.count(), r.l, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) per_row[row] = row_sum(row, row % r.c);
  });
  std::vector<double> sums(r.c, 0.0);
  for (int64_t row = 0; row < r.count(); ++row) sums[row % r.c] += per_row[row];
  return sums;
}

// mean_c = sum x / M; var_c = sum (x - mean_c)^2 / M (two passes).
template <typename T>
void stats_typed(const Tensor& x, const Tensor& mean, const Tensor& var) {
  const Rows r(x);
  const T* xs = x.data<T>();
  const double m = static_cast<double>(r.n * r.l);
  const std::vector<double> s = channel_sums(r, [&](int64_t row, int64_t) {
    const T* p = xs + row * r.l;
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < r.l; ++i) acc += p[i];
    return acc;
  });
  std::vector<T> mu(r.c);
  for (int64_t c = 0; c < r.c; ++c) mu[c] = static_cast<T>(s[c] / m);
  const std::vector<double> v = channel_sums(r, [&](int64_t row, int64_t c) {
    const T* p = xs + row * r.l;
    const T mc = mu[c];
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < r.l; ++i) {
      const double d = p[i] - mc;
      acc += d * d;
    }
    return acc;
  });
  for (int64_t c = 0; c < r.c; ++c) {
    mean.data<T>()[c] = mu[c];
    var.data<T>()[c] = static_cast<T>(v[c] / m);
  }
}

// y = x scale_c + shift_c, one row (n, c) at a time.
template <typename T>
void affine_typed(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) {
  const Rows r(x);
  const T* xs = x.data<T>();
  const T* sc = scale.data<T>();
  const T* sh = shift.defined() ? shift.data<T>() : nullptr;
  T* ys = y.data<T>();
  parallel_for(r.count(), r.l, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const T a = sc[row % r.c], b = sh ? sh[row % r.c] : T(0);
      const T* p = xs + row * r.l;
      T* q = ys + row * r.l;
#pragma omp simd
      for (int64_t i = 0; i < r.l; ++i) q[i] = p[i] * a + b;
    }
  });
}

// gb_c = sum gy, gw_c = invstd_c sum gy (x - mean_c); gx = w invstd (gy - (gb + xhat gw) / M) or w invstd gy.
template <typename T>
void backward_typed(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                    bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const Rows r(x);
  const T* xs = x.data<T>();
  const T* gys = gy.data<T>();
  const T* mu = mean.data<T>();
  const T* is = invstd.data<T>();
  const bool sums_needed = gw.defined() || gb.defined() || (gx.defined() && batch_stats);
  std::vector<double> sum_gy(r.c, 0.0), sum_gy_xhat(r.c, 0.0);
  if (sums_needed) {
    sum_gy = channel_sums(r, [&](int64_t row, int64_t) {
      const T* g = gys + row * r.l;
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < r.l; ++i) acc += g[i];
      return acc;
    });
    sum_gy_xhat = channel_sums(r, [&](int64_t row, int64_t c) {
      const T* g = gys + row * r.l;
      const T* p = xs + row * r.l;
      const T mc = mu[c];
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < r.l; ++i) acc += static_cast<double>(g[i]) * (p[i] - mc);
      return acc;
    });
    for (int64_t c = 0; c < r.c; ++c) sum_gy_xhat[c] *= is[c];
  }
  for (int64_t c = 0; c < r.c; ++c) {
    if (gb.defined()) gb.data<T>()[c] = static_cast<T>(sum_gy[c]);
    if (gw.defined()) gw.data<T>()[c] = static_cast<T>(sum_gy_xhat[c]);
  }
  if (!gx.defined()) return;
  const T* ws = w.defined() ? w.data<T>() : nullptr;
  const double m = static_cast<double>(r.n * r.l);
  T* gxs = gx.data<T>();
  parallel_for(r.count(), r.l, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t c = row % r.c;
      const T k = (ws ? ws[c] : T(1)) * is[c];
      const T* g = gys + row * r.l;
      T* out = gxs + row * r.l;
      if (!batch_stats) {
#pragma omp simd
        for (int64_t i = 0; i < r.l; ++i) out[i] = k * g[i];
        continue;
      }
      const T* p = xs + row * r.l;
      const T mc = mu[c], ic = is[c], mean_gy = static_cast<T>(sum_gy[c] / m);
      const T mean_gy_xhat = static_cast<T>(sum_gy_xhat[c] / m);
#pragma omp simd
      for (int64_t i = 0; i < r.l; ++i) out[i] = k * (g[i] - mean_gy - (p[i] - mc) * ic * mean_gy_xhat);
    }
  });
}

}  // namespace

void CpuBackend::batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  if (F32Stage::any_half({&x})) {
    F32Stage s;
    return batchnorm_stats(s.in(x), mean, var);
  }
  check_channel_args(x, {}, {}, {&mean, &var}, "CpuBackend::batchnorm_stats");
  CHECK(mean.defined() && var.defined()) << "batchnorm_stats: needs mean and var";
  dispatch_float(x.dtype(), "batchnorm_stats", [&](auto t) { stats_typed<decltype(t)>(x, mean, var); });
}

void CpuBackend::channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) {
  if (F32Stage::any_half({&x, &y})) {
    F32Stage s;
    channel_affine(s.in(x), scale, shift, s.out(y));
    return s.finish();
  }
  check_channel_args(x, {&y}, {}, {&scale, &shift}, "CpuBackend::channel_affine");
  CHECK(scale.defined() && y.defined()) << "channel_affine: needs scale and y";
  dispatch_float(x.dtype(), "channel_affine", [&](auto t) { affine_typed<decltype(t)>(x, scale, shift, y); });
}

void CpuBackend::batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean,
                                    const Tensor& invstd, bool batch_stats, const Tensor& gx, const Tensor& gw,
                                    const Tensor& gb) {
  if (F32Stage::any_half({&x, &gy, &w, &gx, &gw, &gb})) {
    F32Stage s;
    batchnorm_backward(s.in(x), s.in(gy), s.in(w), mean, invstd, batch_stats, s.out(gx), s.out(gw), s.out(gb));
    return s.finish();
  }
  check_channel_args(x, {&gy, &gx}, {&w, &gw, &gb}, {&mean, &invstd}, "CpuBackend::batchnorm_backward");
  CHECK(gy.defined() && mean.defined() && invstd.defined()) << "batchnorm_backward: needs gy, mean and invstd";
  dispatch_float(x.dtype(), "batchnorm_backward", [&](auto t) {
    backward_typed<decltype(t)>(x, gy, w, mean, invstd, batch_stats, gx, gw, gb);
  });
}

}  // namespace px

// CPU layer normalisation over the last dim: forward keeps per-row mean and rstd, backward
// gives gx per row and gw/gb as column sums of per-thread partials (written, not accumulated).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/backend/cpu/cpu_loops.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::last_dim;
using cpu_kernels::load_f;
using cpu_kernels::parallel_for;
using cpu_kernels::planned_threads;
using cpu_kernels::rows_of;
using cpu_kernels::store_f;

// mean = sum x / C, var = sum (x - mean)^2 / C, y = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps).
template <typename T>
void layernorm_typed(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                     const Tensor& mean, const Tensor& rstd) {
  const int64_t c = last_dim(x), r = rows_of(x);
  const T* xs = x.data<T>();
  T* ys = y.data<T>();
  const T* ws = w.defined() ? w.data<T>() : nullptr;
  const T* bs = b.defined() ? b.data<T>() : nullptr;
  parallel_for(r, 4 * c, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const T* xr = xs + row * c;
      T* yr = ys + row * c;
      // row statistics in T (f32 accumulation for f32, split over SIMD lanes), two passes
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < c; ++i) s += xr[i];
      const T mt = c > 0 ? s / static_cast<T>(c) : T(0);
      T v = 0;
#pragma omp simd reduction(+ : v)
      for (int64_t i = 0; i < c; ++i) {
        const T d = xr[i] - mt;
        v += d * d;
      }
      const T rt = T(1) / std::sqrt((c > 0 ? v / static_cast<T>(c) : T(0)) + static_cast<T>(eps));
      if (mean.defined()) store_f(mean, row, mt);
      if (rstd.defined()) store_f(rstd, row, rt);
      if (ws && bs) {
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mt) * rt * ws[i] + bs[i];
      } else if (ws) {
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mt) * rt * ws[i];
      } else if (bs) {
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mt) * rt + bs[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mt) * rt;
      }
    }
  });
}

// xhat = (x - mean) rstd, g = gy w: gx = rstd (g - mean_c g - xhat mean_c(g xhat));
// gw = sum_rows gy xhat, gb = sum_rows gy.
template <typename T>
void layernorm_backward_typed(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                              const Tensor& gy, const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const int64_t c = last_dim(x), r = rows_of(x);
  const T* xs = x.data<T>();
  const T* gys = gy.data<T>();
  T* gxs = gx.defined() ? gx.data<T>() : nullptr;
  const T* ws = w.defined() ? w.data<T>() : nullptr;
  const bool want_params = gw.defined() || gb.defined();
  const int nt = planned_threads(r, 6 * c);
  // per-thread partial column sums: [thread][0 = gw, 1 = gb][c]
  std::vector<double> partial(want_params ? static_cast<size_t>(nt) * 2 * c : 0, 0.0);
  const int64_t chunk = (r + nt - 1) / std::max(nt, 1);
  parallel_for(nt, chunk * 6 * c, [&](int64_t tb, int64_t te) {
    std::vector<T> g(c);
    for (int64_t th = tb; th < te; ++th) {
      double* pgw = want_params ? partial.data() + th * 2 * c : nullptr;
      double* pgb = want_params ? pgw + c : nullptr;
      const int64_t lo = th * chunk, hi = std::min(r, lo + chunk);
      for (int64_t row = lo; row < hi; ++row) {
        const T* xr = xs + row * c;
        const T* gr = gys + row * c;
        const T mu = static_cast<T>(load_f(mean, row)), rs = static_cast<T>(load_f(rstd, row));
        if (want_params) {
#pragma omp simd
          for (int64_t i = 0; i < c; ++i) {
            pgw[i] += static_cast<double>(gr[i]) * ((xr[i] - mu) * rs);
            pgb[i] += gr[i];
          }
        }
        if (!gxs) continue;
        T sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t i = 0; i < c; ++i) {
          const T gi = ws ? gr[i] * ws[i] : gr[i];
          g[i] = gi;
          sg += gi;
          sgx += gi * ((xr[i] - mu) * rs);
        }
        const T mg = sg / static_cast<T>(c), mgx = sgx / static_cast<T>(c);
        T* out = gxs + row * c;
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) out[i] = rs * (g[i] - mg - (xr[i] - mu) * rs * mgx);
      }
    }
  });
  if (!want_params) return;
  T* gws = gw.defined() ? gw.data<T>() : nullptr;
  T* gbs = gb.defined() ? gb.data<T>() : nullptr;
  for (int64_t i = 0; i < c; ++i) {
    double sw = 0, sb = 0;
    for (int th = 0; th < nt; ++th) {
      sw += partial[th * 2 * c + i];
      sb += partial[th * 2 * c + c + i];
    }
    if (gws) gws[i] = static_cast<T>(sw);
    if (gbs) gbs[i] = static_cast<T>(sb);
  }
}

void check_param(const char* op, const char* name, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  CHECK(p.numel() == last_dim(x) && p.dtype() == x.dtype() && p.is_contiguous())
      << op << ": " << name << " must be contiguous (" << last_dim(x) << ") " << dtype_name(x.dtype()) << ", got "
      << p.str();
}

void check_stat(const char* op, const char* name, const Tensor& s, const Tensor& x) {
  if (!s.defined()) return;
  CHECK(s.numel() == rows_of(x) && (s.dtype() == DType::f32 || s.dtype() == DType::f64) && s.is_contiguous())
      << op << ": " << name << " must be contiguous f32/f64 with " << rows_of(x) << " elements, got " << s.str();
}

}  // namespace

void CpuBackend::layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                           const Tensor& mean, const Tensor& rstd) {
  if (F32Stage::any_half({&x, &w, &b, &y, &mean, &rstd})) {  // statistics in f32
    F32Stage s;
    layernorm(s.in(x), s.in(w), s.in(b), eps, s.out(y), s.out(mean), s.out(rstd));
    return s.finish();
  }
  CHECK(x.shape() == y.shape() && x.dtype() == y.dtype() && x.is_contiguous() && y.is_contiguous())
      << "layernorm: x " << x.str() << " and y " << y.str() << " must match and be contiguous";
  check_param("layernorm", "w", w, x);
  check_param("layernorm", "b", b, x);
  check_stat("layernorm", "mean", mean, x);
  check_stat("layernorm", "rstd", rstd, x);
  // statistics are indexed by row with stride 1; a flattened (R) view of them is what store_f needs
  const Tensor m = mean.defined() ? mean.as_strided({mean.numel()}, {1}, mean.offset()) : mean;
  const Tensor rs = rstd.defined() ? rstd.as_strided({rstd.numel()}, {1}, rstd.offset()) : rstd;
  dispatch_float(x.dtype(), "layernorm", [&](auto t) { layernorm_typed<decltype(t)>(x, w, b, eps, y, m, rs); });
}

void CpuBackend::layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                                    const Tensor& gy, const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  if (F32Stage::any_half({&x, &w, &mean, &rstd, &gy, &gx, &gw, &gb})) {
    F32Stage s;
    layernorm_backward(s.in(x), s.in(w), s.in(mean), s.in(rstd), s.in(gy), s.out(gx), s.out(gw), s.out(gb));
    return s.finish();
  }
  CHECK(x.shape() == gy.shape() && x.dtype() == gy.dtype() && x.is_contiguous() && gy.is_contiguous())
      << "layernorm_backward: x " << x.str() << " and gy " << gy.str() << " must match and be contiguous";
  CHECK(!gx.defined() || (gx.shape() == x.shape() && gx.dtype() == x.dtype() && gx.is_contiguous()))
      << "layernorm_backward: gx " << gx.str() << " must match x " << x.str();
  CHECK(mean.defined() && rstd.defined()) << "layernorm_backward: needs mean and rstd";
  check_param("layernorm_backward", "w", w, x);
  check_param("layernorm_backward", "gw", gw, x);
  check_param("layernorm_backward", "gb", gb, x);
  check_stat("layernorm_backward", "mean", mean, x);
  check_stat("layernorm_backward", "rstd", rstd, x);
  const Tensor m = mean.as_strided({mean.numel()}, {1}, mean.offset());
  const Tensor rs = rstd.as_strided({rstd.numel()}, {1}, rstd.offset());
  dispatch_float(x.dtype(), "layernorm_backward",
                 [&](auto t) { layernorm_backward_typed<decltype(t)>(x, w, m, rs, gy, gx, gw, gb); });
}

}  // namespace px

// CPU row kernels over the last dim: softmax / log_softmax forward and backward, and the fused
// log-softmax + NLL cross-entropy with label smoothing (forward and backward). Row sums in double, f32 exp vectorised.
#include <cmath>
#include <limits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/backend/cpu/cpu_loops.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::last_dim;
using cpu_kernels::load_f;
using cpu_kernels::parallel_for;
using cpu_kernels::rows_of;
using cpu_kernels::store_f;
using cpu_kernels::vexp;

// max_c x_c (NaN propagates)
template <typename T>
inline T row_max(const T* x, int64_t c) {
  return cpu_kernels::vmax(x, c, -std::numeric_limits<T>::infinity());
}

// A finite shift for exp: rows that are all -inf (fully masked) keep exp(-inf - 0) = 0.
template <typename T>
inline T safe_shift(T m) {
  return std::isinf(m) ? T(0) : m;
}

// y = exp(x - m) / sum exp(x - m), or y = x - m - log sum exp(x - m) for log.  x, y (R, C).
template <typename T>
void softmax_typed(const Tensor& x, const Tensor& y, bool log) {
  const int64_t c = last_dim(x), r = rows_of(x);
  const T* xs = x.data<T>();
  T* ys = y.data<T>();
  parallel_for(r, 4 * c, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const T* xr = xs + row * c;
      T* yr = ys + row * c;
      const T m = safe_shift(row_max(xr, c));
      double s = 0;
      if (log) {
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < c; ++i) s += vexp(xr[i] - m);
        const T lse = m + static_cast<T>(std::log(s));
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) yr[i] = xr[i] - lse;
      } else {
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < c; ++i) {
          const T ev = vexp(xr[i] - m);
          yr[i] = ev;
          s += ev;
        }
        const T inv = static_cast<T>(1.0 / s);
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) yr[i] *= inv;
      }
    }
  });
}

// softmax: gx = y * (gy - sum(gy * y)); log_softmax: gx = gy - exp(y) * sum(gy).  (R, C) each.
template <typename T>
void softmax_backward_typed(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  const int64_t c = last_dim(y), r = rows_of(y);
  const T* ys = y.data<T>();
  const T* gys = gy.data<T>();
  T* gxs = gx.data<T>();
  parallel_for(r, log ? 4 * c : 2 * c, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const T* yr = ys + row * c;
      const T* gr = gys + row * c;
      T* out = gxs + row * c;
      double s = 0;
      if (log) {
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < c; ++i) s += gr[i];
        const T st = static_cast<T>(s);
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) out[i] = gr[i] - vexp(yr[i]) * st;
      } else {
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < c; ++i) s += static_cast<double>(gr[i]) * yr[i];
        const T st = static_cast<T>(s);
#pragma omp simd
        for (int64_t i = 0; i < c; ++i) out[i] = yr[i] * (gr[i] - st);
      }
    }
  });
}

// lse_n = log sum_c exp x_{n,c}; loss_n = lse_n - (1 - eps) x_{n,t} - eps/C sum_c x_{n,c}.  logits (N, C).
template <typename T>
void cross_entropy_typed(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps,
                         const Tensor& loss, const Tensor& lse) {
  const int64_t c = logits.size(1), n = logits.size(0);
  const T* xs = logits.data<T>();
  const int64_t* ts = target.data<int64_t>();
  const int64_t tstride = target.stride(0);
  parallel_for(n, 4 * c, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const T* xr = xs + row * c;
      const T m = safe_shift(row_max(xr, c));
      double s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
      for (int64_t i = 0; i < c; ++i) {
        s += vexp(xr[i] - m);
        sx += xr[i];
      }
      const double l = static_cast<double>(m) + std::log(s);
      if (lse.defined()) store_f(lse, row, l);
      const int64_t t = ts[row * tstride];
      if (t == ignore_index) {
        store_f(loss, row, 0.0);
        continue;
      }
      CHECK(t >= 0 && t < c) << "cross_entropy: target " << t << " of row " << row << " outside [0, " << c << ")";
      store_f(loss, row, l - (1.0 - eps) * xr[t] - eps / static_cast<double>(c) * sx);
    }
  });
}

// glogits_{n,c} = gloss_n (exp(x_{n,c} - lse_n) - eps/C - (1 - eps) [c == t_n]); 0 rows where ignored.
template <typename T>
void cross_entropy_backward_typed(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                  const Tensor& gloss, int64_t ignore_index, double eps, const Tensor& glogits) {
  const int64_t c = logits.size(1), n = logits.size(0);
  const T* xs = logits.data<T>();
  T* gs = glogits.data<T>();
  const int64_t* ts = target.data<int64_t>();
  const int64_t tstride = target.stride(0);
  parallel_for(n, 4 * c, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const T* xr = xs + row * c;
      T* gr = gs + row * c;
      const int64_t t = ts[row * tstride];
      if (t == ignore_index) {
        std::fill(gr, gr + c, T(0));
        continue;
      }
      CHECK(t >= 0 && t < c) << "cross_entropy_backward: target " << t << " of row " << row << " outside [0, "
                             << c << ")";
      const T g = static_cast<T>(load_f(gloss, row));
      const T l = static_cast<T>(load_f(lse, row));
      const T smooth = static_cast<T>(eps / static_cast<double>(c));
#pragma omp simd
      for (int64_t i = 0; i < c; ++i) gr[i] = g * (vexp(xr[i] - l) - smooth);
      gr[t] -= g * static_cast<T>(1.0 - eps);
    }
  });
}

void check_rows(const char* op, const Tensor& a, const Tensor& b) {
  CHECK(a.shape() == b.shape() && a.dtype() == b.dtype()) << op << ": " << a.str() << " vs " << b.str();
  CHECK(a.is_contiguous() && b.is_contiguous()) << op << ": tensors must be contiguous";
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& y, bool log) {
  if (F32Stage::any_half({&x, &y})) {
    F32Stage s;
    softmax(s.in(x), s.out(y), log);
    return s.finish();
  }
  check_rows("softmax", x, y);
  dispatch_float(x.dtype(), "softmax", [&](auto t) { softmax_typed<decltype(t)>(x, y, log); });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  if (F32Stage::any_half({&y, &gy, &gx})) {
    F32Stage s;
    softmax_backward(s.in(y), s.in(gy), s.out(gx), log);
    return s.finish();
  }
  check_rows("softmax_backward", y, gy);
  check_rows("softmax_backward", y, gx);
  dispatch_float(y.dtype(), "softmax_backward", [&](auto t) { softmax_backward_typed<decltype(t)>(y, gy, gx, log); });
}

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps,
                               const Tensor& loss, const Tensor& lse) {
  if (F32Stage::any_half({&logits, &loss, &lse})) {
    F32Stage s;
    cross_entropy(s.in(logits), target, ignore_index, eps, s.out(loss), s.out(lse));
    return s.finish();
  }
  CHECK(logits.dim() == 2 && logits.is_contiguous()) << "cross_entropy: logits must be contiguous (N, C), got "
                                                     << logits.str();
  const int64_t n = logits.size(0);
  CHECK(target.dtype() == DType::i64 && target.dim() == 1 && target.size(0) == n)
      << "cross_entropy: target must be i64 (" << n << "), got " << target.str();
  CHECK(loss.dim() == 1 && loss.size(0) == n) << "cross_entropy: loss must be (" << n << "), got " << loss.str();
  CHECK(!lse.defined() || (lse.dim() == 1 && lse.size(0) == n))
      << "cross_entropy: lse must be (" << n << "), got " << lse.str();
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto t) {
    cross_entropy_typed<decltype(t)>(logits, target, ignore_index, eps, loss, lse);
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                        const Tensor& gloss, int64_t ignore_index, double eps,
                                        const Tensor& glogits) {
  if (F32Stage::any_half({&logits, &lse, &gloss, &glogits})) {
    F32Stage s;
    cross_entropy_backward(s.in(logits), target, s.in(lse), s.in(gloss), ignore_index, eps, s.out(glogits));
    return s.finish();
  }
  check_rows("cross_entropy_backward", logits, glogits);
  CHECK(logits.dim() == 2) << "cross_entropy_backward: logits must be (N, C), got " << logits.str();
  const int64_t n = logits.size(0);
  CHECK(target.dtype() == DType::i64 && target.dim() == 1 && target.size(0) == n)
      << "cross_entropy_backward: target must be i64 (" << n << "), got " << target.str();
  CHECK(lse.dim() == 1 && lse.size(0) == n) << "cross_entropy_backward: lse must be (" << n << "), got " << lse.str();
  CHECK((gloss.dim() == 1 && gloss.size(0) == n) || gloss.numel() == 1)
      << "cross_entropy_backward: gloss must be (" << n << "), got " << gloss.str();
  const Tensor g = gloss.dim() == 1 && gloss.size(0) == n ? gloss : gloss.as_strided({n}, {0}, gloss.offset());
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto t) {
    cross_entropy_backward_typed<decltype(t)>(logits, target, lse, g, ignore_index, eps, glogits);
  });
}

}  // namespace px

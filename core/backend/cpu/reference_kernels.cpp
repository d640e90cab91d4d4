// Plain reference kernels for tests: gemm, reduce, topk, softmax, layernorm and cross-entropy with
// their backward passes, written as direct loops over element accessors with double accumulation; AdamW.
#include "core/backend/cpu/reference_kernels.h"

#include <cmath>
#include <limits>
#include <vector>

namespace px::ref {
namespace {

// Element offset of row-major position `linear` in t.
int64_t offset_of(const Tensor& t, int64_t linear) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (linear % t.size(d)) * t.stride(d);
    linear /= t.size(d);
  }
  return off;
}

int64_t cols(const Tensor& t) { return t.dim() == 0 ? 1 : t.size(-1); }
int64_t rows(const Tensor& t) { return cols(t) == 0 ? 0 : t.numel() / cols(t); }

}  // namespace

double load(const Tensor& t, int64_t linear) {
  CHECK(t.device().is_cpu()) << "ref::load needs a host tensor, got " << t.str();
  const int64_t off = offset_of(t, linear);
  return dispatch_dtype(t.dtype(), [&](auto v) {
    using T = decltype(v);
    return to_double(static_cast<const T*>(t.raw_data())[off]);
  });
}

void store(const Tensor& t, int64_t linear, double v) {
  const int64_t off = offset_of(t, linear);
  dispatch_dtype(t.dtype(), [&](auto z) {
    using T = decltype(z);
    static_cast<T*>(t.raw_data())[off] = from_double<T>(v);
  });
}

// c[b, m, n] = alpha * sum_k a[b, m, k] b[b, k, n] + beta * c[b, m, n]  (beta == 0 ignores c)
void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  const int64_t nd = c.dim();
  const int64_t batch = nd == 3 ? c.size(0) : 1, m = c.size(nd - 2), n = c.size(nd - 1), k = a.size(nd - 1);
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += load(a, (bi * m + i) * k + p) * load(b, (bi * k + p) * n + j);
        const int64_t ci = (bi * m + i) * n + j;
        store(c, ci, alpha * s + (beta == 0.0 ? 0.0 : beta * load(c, ci)));
      }
}

// out[k] = sum / max / min / argmax over the reduced positions of x that map to out position k
void reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  const int64_t nd = x.dim(), on = out.numel();
  std::vector<double> acc(on, op == ReduceOp::sum ? 0.0
                              : op == ReduceOp::min ? std::numeric_limits<double>::infinity()
                                                    : -std::numeric_limits<double>::infinity());
  std::vector<int64_t> arg(on, -1);
  std::vector<int64_t> coord(nd);
  for (int64_t p = 0; p < x.numel(); ++p) {
    int64_t rem = p;
    for (int64_t d = nd - 1; d >= 0; --d) {
      coord[d] = rem % x.size(d);
      rem /= x.size(d);
    }
    int64_t o = 0, r = 0;  // out position; position along the reduced dim (argmax)
    for (int64_t d = 0; d < nd; ++d) {
      const bool reduced = out.size(d) == 1 && x.size(d) != 1;
      o = o * out.size(d) + (reduced ? 0 : coord[d]);
      if (reduced) r = coord[d];
    }
    const double v = load(x, p);
    switch (op) {
      case ReduceOp::sum: acc[o] += v; break;
      case ReduceOp::max: acc[o] = (std::isnan(v) || v > acc[o]) ? v : acc[o]; break;
      case ReduceOp::min: acc[o] = (std::isnan(v) || v < acc[o]) ? v : acc[o]; break;
      case ReduceOp::argmax:
        if (arg[o] < 0 || (!std::isnan(acc[o]) && (v > acc[o] || std::isnan(v)))) {
          acc[o] = v;
          arg[o] = r;
        }
        break;
    }
  }
  for (int64_t o = 0; o < on; ++o) store(out, o, op == ReduceOp::argmax ? static_cast<double>(arg[o]) : acc[o]);
}

// values[r, j], indices[r, j] = the j-th best of row r: pass j takes the best element ranking after pass j - 1's,
// where a ranks before b when a is NaN and b is not, or a > b, or they are equal (or both NaN) and a's column is lower.
void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  const int64_t c = cols(x);
  const auto before = [](double a, int64_t ia, double b, int64_t ib) {
    if (std::isnan(a) != std::isnan(b)) return std::isnan(a);
    if (!std::isnan(a) && a != b) return a > b;
    return ia < ib;
  };
  for (int64_t r = 0; r < rows(x); ++r) {
    double prev = 0;
    int64_t prev_i = -1;
    for (int64_t j = 0; j < k; ++j) {
      double best = 0;
      int64_t best_i = -1;
      for (int64_t i = 0; i < c; ++i) {
        const double v = load(x, r * c + i);
        if (prev_i >= 0 && !before(prev, prev_i, v, i)) continue;
        if (best_i < 0 || before(v, i, best, best_i)) {
          best = v;
          best_i = i;
        }
      }
      store(values, r * k + j, best);
      store(indices, r * k + j, static_cast<double>(best_i));
      prev = best;
      prev_i = best_i;
    }
  }
}

// y = exp(x - lse) or x - lse, lse = log sum_c exp x_c
void softmax(const Tensor& x, const Tensor& y, bool log) {
  const int64_t c = cols(x);
  for (int64_t r = 0; r < rows(x); ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < c; ++i) m = std::max(m, load(x, r * c + i));
    double s = 0;
    for (int64_t i = 0; i < c; ++i) s += std::exp(load(x, r * c + i) - m);
    const double lse = m + std::log(s);
    for (int64_t i = 0; i < c; ++i) {
      const double lv = load(x, r * c + i) - lse;
      store(y, r * c + i, log ? lv : std::exp(lv));
    }
  }
}

// softmax: gx = y (gy - sum gy y); log_softmax: gx = gy - exp(y) sum gy
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  const int64_t c = cols(y);
  for (int64_t r = 0; r < rows(y); ++r) {
    double s = 0;
    for (int64_t i = 0; i < c; ++i) s += load(gy, r * c + i) * (log ? 1.0 : load(y, r * c + i));
    for (int64_t i = 0; i < c; ++i) {
      const double yv = load(y, r * c + i), g = load(gy, r * c + i);
      store(gx, r * c + i, log ? g - std::exp(yv) * s : yv * (g - s));
    }
  }
}

// y = (x - mean) rstd w + b with biased variance
void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
               const Tensor& rstd) {
  const int64_t c = cols(x);
  for (int64_t r = 0; r < rows(x); ++r) {
    double s = 0, v = 0;
    for (int64_t i = 0; i < c; ++i) s += load(x, r * c + i);
    const double mu = s / c;
    for (int64_t i = 0; i < c; ++i) v += (load(x, r * c + i) - mu) * (load(x, r * c + i) - mu);
    const double rs = 1.0 / std::sqrt(v / c + eps);
    if (mean.defined()) store(mean, r, mu);
    if (rstd.defined()) store(rstd, r, rs);
    for (int64_t i = 0; i < c; ++i) {
      double o = (load(x, r * c + i) - mu) * rs;
      if (w.defined()) o *= load(w, i);
      if (b.defined()) o += load(b, i);
      store(y, r * c + i, o);
    }
  }
}

// gx = rstd (g - mean g - xhat mean(g xhat)), g = gy w; gw = sum gy xhat; gb = sum gy
void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                        const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const int64_t c = cols(x);
  std::vector<double> sw(c, 0.0), sb(c, 0.0);
  for (int64_t r = 0; r < rows(x); ++r) {
    const double mu = load(mean, r), rs = load(rstd, r);
    double mg = 0, mgx = 0;
    for (int64_t i = 0; i < c; ++i) {
      const double xh = (load(x, r * c + i) - mu) * rs, g = load(gy, r * c + i) * (w.defined() ? load(w, i) : 1.0);
      mg += g / c;
      mgx += g * xh / c;
      sw[i] += load(gy, r * c + i) * xh;
      sb[i] += load(gy, r * c + i);
    }
    if (!gx.defined()) continue;
    for (int64_t i = 0; i < c; ++i) {
      const double xh = (load(x, r * c + i) - mu) * rs, g = load(gy, r * c + i) * (w.defined() ? load(w, i) : 1.0);
      store(gx, r * c + i, rs * (g - mg - xh * mgx));
    }
  }
  for (int64_t i = 0; i < c; ++i) {
    if (gw.defined()) store(gw, i, sw[i]);
    if (gb.defined()) store(gb, i, sb[i]);
  }
}

// loss_n = lse_n - (1 - eps) x_{n,t} - eps/C sum_c x_{n,c}; 0 where t == ignore_index
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                   const Tensor& lse) {
  const int64_t n = logits.size(0), c = logits.size(1);
  for (int64_t r = 0; r < n; ++r) {
    double m = -std::numeric_limits<double>::infinity(), s = 0, sx = 0;
    for (int64_t i = 0; i < c; ++i) m = std::max(m, load(logits, r * c + i));
    for (int64_t i = 0; i < c; ++i) {
      s += std::exp(load(logits, r * c + i) - m);
      sx += load(logits, r * c + i);
    }
    const double l = m + std::log(s);
    if (lse.defined()) store(lse, r, l);
    const int64_t t = static_cast<int64_t>(load(target, r));
    store(loss, r, t == ignore_index ? 0.0 : l - (1 - eps) * load(logits, r * c + t) - eps / c * sx);
  }
}

// glogits = gloss (softmax - (1 - eps) onehot(t) - eps/C); 0 rows where ignored
void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                            int64_t ignore_index, double eps, const Tensor& glogits) {
  const int64_t n = logits.size(0), c = logits.size(1);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t t = static_cast<int64_t>(load(target, r));
    const double g = load(gloss, gloss.numel() == 1 ? 0 : r), l = load(lse, r);
    for (int64_t i = 0; i < c; ++i) {
      const double q = (1 - eps) * (i == t ? 1.0 : 0.0) + eps / c;
      store(glogits, r * c + i, t == ignore_index ? 0.0 : g * (std::exp(load(logits, r * c + i) - l) - q));
    }
  }
}

namespace {

// One slot's AdamW in T (the target's dtype) with P the parameter's storage type.
template <typename T, typename P>
void adamw_slot(const AdamWSlot& s, double beta1, double beta2, double eps) {
  T* p = s.master.defined() ? s.master.data<T>() : s.param.data<T>();
  const T* g = s.grad.data<T>();
  T* m = s.exp_avg.data<T>();
  T* v = s.exp_avg_sq.data<T>();
  const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
  const T one_b1 = static_cast<T>(1.0 - beta1), one_b2 = static_cast<T>(1.0 - beta2);
  const T decay = static_cast<T>(s.decay), step_size = static_cast<T>(s.step_size);
  const T bc2_sqrt = static_cast<T>(s.bc2_sqrt), e = static_cast<T>(eps);
  for (int64_t i = 0; i < s.param.numel(); ++i) {
    m[i] = m[i] * b1 + one_b1 * g[i];
    v[i] = v[i] * b2 + one_b2 * (g[i] * g[i]);
    const T denom = std::sqrt(v[i]) / bc2_sqrt + e;
    p[i] = p[i] * decay - step_size * (m[i] / denom);
    if (s.master.defined()) s.param.data<P>()[i] = from_double<P>(static_cast<double>(p[i]));
  }
}

}  // namespace

// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p = p decay - step_size m / (sqrt(v) / bc2_sqrt + eps); the
// parameter = round(master) for bf16/f16.
void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) {
  for (size_t k = 0; k < slots.size(); ++k) {
    const AdamWSlot& s = slots[k];
    check_adamw_slot(s, k, "ref::adamw");
    if (s.param.numel() == 0) continue;
    switch (s.param.dtype()) {
      case DType::f32: adamw_slot<float, float>(s, beta1, beta2, eps); break;
      case DType::f64: adamw_slot<double, double>(s, beta1, beta2, eps); break;
      case DType::bf16: adamw_slot<float, bf16>(s, beta1, beta2, eps); break;
      case DType::f16: adamw_slot<float, f16>(s, beta1, beta2, eps); break;
      default: LOG(FATAL) << "ref::adamw: unreachable dtype " << s.param.str();
    }
  }
}

}  // namespace px::ref

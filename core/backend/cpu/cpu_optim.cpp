// The CPU multi-tensor AdamW step (Backend::adamw): one OpenMP-threaded loop per slot in the target's dtype, in
// torch's order; a bf16/f16 parameter is written as its updated f32 master rounded to nearest even.
#include <cmath>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/util/check.h"

namespace px {
namespace {

// The coefficients of one slot in the target's dtype T.
template <typename T>
struct AdamWCoefs {
  T decay, b1, b2, one_b1, one_b2, step_size, bc2_sqrt, eps;
  AdamWCoefs(const AdamWSlot& s, double beta1, double beta2, double eps_)
      : decay(static_cast<T>(s.decay)),
        b1(static_cast<T>(beta1)),
        b2(static_cast<T>(beta2)),
        one_b1(static_cast<T>(1.0 - beta1)),
        one_b2(static_cast<T>(1.0 - beta2)),
        step_size(static_cast<T>(s.step_size)),
        bc2_sqrt(static_cast<T>(s.bc2_sqrt)),
        eps(static_cast<T>(eps_)) {}
};

inline void round_into(bf16* out, float v) { *out = to_bf16(v); }
inline void round_into(f16* out, float v) { *out = to_f16(v); }

// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p = p decay - step_size m / (sqrt(v) / bc2_sqrt + eps);
// rounded = round(p) when P is a 16-bit type (P = T: p is the parameter itself). p, g, m, v, rounded (n).
template <typename T, typename P>
void adamw_loop(T* p, const T* g, T* m, T* v, P* rounded, int64_t n, const AdamWCoefs<T>& c) {
  const T decay = c.decay, b1 = c.b1, b2 = c.b2, one_b1 = c.one_b1, one_b2 = c.one_b2;
  const T step_size = c.step_size, bc2_sqrt = c.bc2_sqrt, eps = c.eps;
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = m[i] * b1 + one_b1 * gi;
    const T vi = v[i] * b2 + one_b2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;
    const T pi = p[i] * decay - step_size * (mi / denom);
    p[i] = pi;
    if constexpr (!std::is_same_v<P, T>) round_into(rounded + i, pi);
  }
}

}  // namespace

void CpuBackend::adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) {
  for (size_t k = 0; k < slots.size(); ++k) {
    const AdamWSlot& s = slots[k];
    check_adamw_slot(s, k, "CpuBackend::adamw");
    CHECK(s.param.device().is_cpu()) << "CpuBackend::adamw: slot " << k << ": param " << s.param.str()
                                     << " is not on the CPU";
    const int64_t n = s.param.numel();
    if (n == 0) continue;
    switch (s.param.dtype()) {
      case DType::f32:
        adamw_loop<float, float>(s.param.data<float>(), s.grad.data<float>(), s.exp_avg.data<float>(),
                                 s.exp_avg_sq.data<float>(), nullptr, n, AdamWCoefs<float>(s, beta1, beta2, eps));
        break;
      case DType::f64:
        adamw_loop<double, double>(s.param.data<double>(), s.grad.data<double>(), s.exp_avg.data<double>(),
                                   s.exp_avg_sq.data<double>(), nullptr, n, AdamWCoefs<double>(s, beta1, beta2, eps));
        break;
      case DType::bf16:
        adamw_loop<float, bf16>(s.master.data<float>(), s.grad.data<float>(), s.exp_avg.data<float>(),
                                s.exp_avg_sq.data<float>(), s.param.data<bf16>(), n,
                                AdamWCoefs<float>(s, beta1, beta2, eps));
        break;
      case DType::f16:
        adamw_loop<float, f16>(s.master.data<float>(), s.grad.data<float>(), s.exp_avg.data<float>(),
                               s.exp_avg_sq.data<float>(), s.param.data<f16>(), n,
                               AdamWCoefs<float>(s, beta1, beta2, eps));
        break;
      default: LOG(FATAL) << "CpuBackend::adamw: unreachable dtype " << s.param.str();
    }
  }
}

}  // namespace px

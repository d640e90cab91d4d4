// AdamW: state "exp_avg" (m) and "exp_avg_sq" (v) as zero-initialised Tensors (and an f32 master of a bf16/f16
// parameter); a fused host loop for CPU f32/f64 tensors and a device-generic path from ops, in torch's order.
#include "core/optim/adamw.h"

#include <cmath>

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/util/error.h"

namespace px::optim {

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Optimizer("AdamW", std::move(groups)), options_(options) {
  for (double b : {options.beta1, options.beta2})
    if (!(b >= 0.0 && b < 1.0)) throw ConfigError("AdamW: betas must be in [0, 1), got " + std::to_string(b));
  if (!(options.eps >= 0.0)) throw ConfigError("AdamW: eps must be >= 0, got " + std::to_string(options.eps));
}

namespace {

struct Coefs {
  double decay;  // 1 - lr * wd
  double beta1, beta2;
  double step_size;  // lr / (1 - b1^t)
  double bc2_sqrt;  // sqrt(1 - b2^t)
  double eps;
};

template <typename T>
void adamw_loop(T* p, const T* g, T* m, T* v, int64_t n, const Coefs& c) {
  const T decay = static_cast<T>(c.decay), b1 = static_cast<T>(c.beta1), b2 = static_cast<T>(c.beta2);
  const T one_b1 = static_cast<T>(1.0 - c.beta1), one_b2 = static_cast<T>(1.0 - c.beta2);
  const T step_size = static_cast<T>(c.step_size), bc2_sqrt = static_cast<T>(c.bc2_sqrt);
  const T eps = static_cast<T>(c.eps);
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = m[i] * b1 + one_b1 * gi;
    const T vi = v[i] * b2 + one_b2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = p[i] * decay - step_size * (mi / denom);
  }
}

}  // namespace

void AdamW::update(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) {
  // A bf16/f16 parameter is updated through its f32 master (created from it at the first update) and rounded.
  const bool has_master = master_dtype(param.dtype()) != param.dtype();
  Tensor target = param;
  if (has_master) {
    auto it = state.tensors.find(kMasterKey);
    if (it == state.tensors.end()) it = state.tensors.emplace(kMasterKey, to_dtype(param, DType::f32)).first;
    target = it->second;
  }
  auto m_it = state.tensors.find("exp_avg");
  if (m_it == state.tensors.end()) m_it = state.tensors.emplace("exp_avg", zeros_like(target)).first;
  auto v_it = state.tensors.find("exp_avg_sq");
  if (v_it == state.tensors.end()) v_it = state.tensors.emplace("exp_avg_sq", zeros_like(target)).first;
  const Tensor &m = m_it->second, &v = v_it->second;
  const int64_t t = ++state.step;
  Coefs c;
  c.decay = 1.0 - group.lr * group.weight_decay;
  c.beta1 = options_.beta1;
  c.beta2 = options_.beta2;
  c.step_size = group.lr / (1.0 - std::pow(options_.beta1, static_cast<double>(t)));
  c.bc2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(t)));
  c.eps = options_.eps;
  if (use_host_loop(target)) {
    if (target.dtype() == DType::f32) {
      adamw_loop<float>(target.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), target.numel(),
                        c);
    } else {
      adamw_loop<double>(target.data<double>(), grad.data<double>(), m.data<double>(), v.data<double>(),
                         target.numel(), c);
    }
  } else {  // device-generic path
    if (group.weight_decay != 0.0) mul_(target, c.decay);
    mul_(m, c.beta1);
    add_(m, grad, 1.0 - c.beta1);
    mul_(v, c.beta2);
    add_(v, mul(grad, grad), 1.0 - c.beta2);
    const Tensor denom = add(mul(sqrt(v), 1.0 / c.bc2_sqrt), c.eps);
    add_(target, div(m, denom), -c.step_size);
  }
  if (has_master) copy_(param, target);
}

}  // namespace px::optim

// Gradient-norm clipping: a host loop in double for CPU f32/f64 gradients, pointwise ops and sums (read once per
// device) for the rest, then one scale of every gradient by the clamped coefficient.
#include "core/optim/clip_grad_norm.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "core/util/error.h"

namespace px::optim {

namespace {

template <typename T>
double sq_sum(const T* x, int64_t n) {
  double s = 0.0;
#pragma omp parallel for reduction(+ : s) if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

}  // namespace

double grad_sq_sum(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  double total = 0.0;
  // The other gradients' sums of squares, added up (in f64) where they live and read once per device: one host
  // sync per step on a GPU, not one per tensor.
  std::vector<Tensor> on_device;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.device().is_cpu() && g.is_contiguous() && g.dtype() == DType::f32) {
      total += sq_sum(g.data<float>(), g.numel());
    } else if (g.device().is_cpu() && g.is_contiguous() && g.dtype() == DType::f64) {
      total += sq_sum(g.data<double>(), g.numel());
    } else {
      // f32/f64 gradients as they are (to_dtype always copies); only 16-bit ones get an f32 copy.
      const bool wide = g.dtype() == DType::f32 || g.dtype() == DType::f64;
      const Tensor g32 = wide ? g : to_dtype(g, DType::f32);
      const Tensor s = to_dtype(sum(mul(g32, g32)), DType::f64);
      Tensor* acc = nullptr;
      for (Tensor& t : on_device)
        if (t.device() == s.device()) acc = &t;
      if (acc) *acc = add(*acc, s);
      else on_device.push_back(s);
    }
  }
  for (const Tensor& t : on_device) total += t.item();
  return total;
}

void scale_grads(const std::vector<Tensor>& params, double coef) {
  NoGradGuard no_grad;
  for (const Tensor& p : params)
    if (p.grad().defined()) mul_(p.grad(), coef);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, const SumReducer& reduce) {
  if (!(max_norm > 0.0)) throw ConfigError("clip_grad_norm: max_norm must be > 0, got " + std::to_string(max_norm));
  double sq = grad_sq_sum(params);
  if (reduce) sq = reduce(sq);
  const double total = std::sqrt(sq);
  const double coef = max_norm / (total + 1e-6);
  // !(coef >= 1) also scales by a NaN coefficient, as torch does.
  if (!(coef >= 1.0)) scale_grads(params, coef);
  return total;
}

}  // namespace px::optim

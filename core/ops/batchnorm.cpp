// Batch norm through Backend::batchnorm_stats / channel_affine / batchnorm_backward; the per-channel
// coefficients (C values) and running-statistics updates are small ops in the statistics dtype.
#include "core/ops/batchnorm.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/op_utils.h"

namespace px {

using autograd::SavedTensor;
using detail::backend_of;

namespace {

// x (N, C, ...) as a raw contiguous (N, C, L) view.
Tensor channels_view(const Tensor& x, const char* op) {
  detail::check_defined(x, op, "x");
  detail::check_floating(x, op);
  CHECK_GE(x.dim(), 2) << op << ": x " << x.str() << " must be (N, C, ...)";
  const Tensor xc = detail::contiguous_raw(x);
  const int64_t n = x.size(0), c = x.size(1), l = c == 0 ? 0 : x.numel() / std::max<int64_t>(n * c, 1);
  return xc.as_strided({n, c, l}, {c * l, l, 1}, xc.offset());
}

void check_vector(const Tensor& v, const Tensor& x, const char* op, const char* name, bool same_dtype) {
  if (!v.defined()) return;
  CHECK(v.dim() == 1 && v.size(0) == x.size(1) && v.device() == x.device() && is_floating(v.dtype()) &&
        (!same_dtype || v.dtype() == x.dtype()))
      << op << ": " << name << " " << v.str() << " must be a float (" << x.size(1) << ") on x's device"
      << (same_dtype ? " of x's dtype" : "") << ", x " << x.str();
}

// v in the statistics dtype (no graph).
Tensor stat(const Tensor& v, DType dtype) { return v.dtype() == dtype ? v.detach() : to_dtype(v.detach(), dtype); }

// The per-channel scale = w invstd and shift = b - mean scale (w, b may be undefined), in the statistics dtype.
std::pair<Tensor, Tensor> affine_of(const Tensor& w, const Tensor& b, const Tensor& mean, const Tensor& invstd) {
  const DType sd = mean.dtype();
  const Tensor scale = w.defined() ? mul(stat(w, sd), invstd) : invstd;
  const Tensor shift = b.defined() ? sub(stat(b, sd), mul(mean, scale)) : neg(mul(mean, scale));
  return {scale, shift};
}

// y (x's shape) = x3 (N, C, L) * scale_c + shift_c.
Tensor affine(const Tensor& x3, const Tensor& scale, const Tensor& shift, const Shape& shape) {
  Tensor y = Tensor::empty(shape, x3.dtype(), x3.device());
  backend_of(x3).channel_affine(x3, scale, shift, y.as_strided(x3.shape(), contiguous_strides(x3.shape()), 0));
  return y;
}

}  // namespace

// xhat = (x - mean_c) / sqrt(var_c + eps), y = w_c xhat + b_c, statistics over N and the trailing dims;
// dL/dx, dL/dw = sum g xhat, dL/db = sum g from Backend::batchnorm_backward (batch or running statistics)
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps) {
  const Tensor x3 = channels_view(x, "batch_norm");
  check_vector(weight, x, "batch_norm", "weight", true);
  check_vector(bias, x, "batch_norm", "bias", true);
  check_vector(running_mean, x, "batch_norm", "running_mean", false);
  check_vector(running_var, x, "batch_norm", "running_var", false);
  CHECK_EQ(running_mean.defined(), running_var.defined()) << "batch_norm: give both running statistics or neither";
  const DType sd = master_dtype(x.dtype());
  const bool batch_stats = training || !running_mean.defined();
  const int64_t m = x3.size(0) * x3.size(2);
  Tensor mean, invstd, scale, shift;
  {
    NoGradGuard no_grad;
    if (batch_stats) {
      CHECK_GT(m, 1) << "batch_norm: training needs more than one value per channel, got x " << x.str();
      mean = Tensor::empty({x3.size(1)}, sd, x.device());
      Tensor var = Tensor::empty({x3.size(1)}, sd, x.device());
      backend_of(x).batchnorm_stats(x3, mean, var);
      invstd = pow(add(var, eps), -0.5);
      if (training && running_mean.defined()) {  // running = (1 - momentum) running + momentum batch
        const double unbias = static_cast<double>(m) / static_cast<double>(m - 1);
        copy_(running_mean, add(mul(stat(running_mean, sd), 1.0 - momentum), mul(mean, momentum)));
        copy_(running_var, add(mul(stat(running_var, sd), 1.0 - momentum), mul(var, momentum * unbias)));
      }
    } else {
      mean = clone(stat(running_mean, sd));  // the backward's copy, whatever later updates the buffer
      invstd = pow(add(stat(running_var, sd), eps), -0.5);
    }
    std::tie(scale, shift) = affine_of(weight, bias, mean, invstd);
  }
  Tensor y = affine(x3, scale, shift, x.shape());
  const bool need_x = autograd::any_requires_grad({&x}), need_w = autograd::any_requires_grad({&weight}),
             need_b = autograd::any_requires_grad({&bias});
  if (need_x || need_w || need_b) {
    autograd::attach(
        y, "BatchNormBackward", {x, weight, bias},
        [sx = SavedTensor(x3), sw = SavedTensor(weight), mean, invstd, batch_stats, need_x, need_w, need_b,
         x_shape = x.shape()](const Tensor& g) {
          const Tensor x3 = sx.unpack("BatchNormBackward"), w = sw.unpack("BatchNormBackward");
          const Tensor gc = detail::contiguous_raw(g);
          const Tensor g3 = gc.as_strided(x3.shape(), contiguous_strides(x3.shape()), gc.offset());
          Tensor gx = need_x ? Tensor::empty(x_shape, g.dtype(), g.device()) : Tensor();
          Tensor gw = need_w ? Tensor::empty({x3.size(1)}, g.dtype(), g.device()) : Tensor();
          Tensor gb = need_b ? Tensor::empty({x3.size(1)}, g.dtype(), g.device()) : Tensor();
          const Tensor gx3 = need_x ? gx.as_strided(x3.shape(), contiguous_strides(x3.shape()), 0) : Tensor();
          backend_of(g).batchnorm_backward(x3, g3, w.defined() ? detail::contiguous_raw(w) : w, mean, invstd,
                                           batch_stats, gx3, gw, gb);
          return std::vector<Tensor>{gx, gw, gb};
        });
  }
  return y;
}

// y = x scale_c + shift_c, scale = w / sqrt(rv + eps), shift = b - rm scale; dL/dx = g scale_c
Tensor frozen_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                         const Tensor& running_var, double eps) {
  const Tensor x3 = channels_view(x, "frozen_batch_norm");
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"weight", &weight},
                                {"bias", &bias},
                                {"running_mean", &running_mean},
                                {"running_var", &running_var}}) {
    detail::check_defined(*t, "frozen_batch_norm", name);
    check_vector(*t, x, "frozen_batch_norm", name, false);
    CHECK(!t->requires_grad()) << "frozen_batch_norm: " << name << " " << t->str()
                               << " requires grad, but a frozen batch norm's buffers are constants";
  }
  Tensor scale, shift;
  {
    NoGradGuard no_grad;
    const DType sd = master_dtype(x.dtype());
    std::tie(scale, shift) =
        affine_of(weight, bias, stat(running_mean, sd), pow(add(stat(running_var, sd), eps), -0.5));
  }
  Tensor y = affine(x3, scale, shift, x.shape());
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "FrozenBatchNormBackward", {x}, [scale, shape = x3.shape()](const Tensor& g) {
      const Tensor gc = detail::contiguous_raw(g);
      return std::vector<Tensor>{
          affine(gc.as_strided(shape, contiguous_strides(shape), gc.offset()), scale, Tensor(), g.shape())};
    });
  }
  return y;
}

}  // namespace px

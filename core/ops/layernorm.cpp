// Layer normalisation over the last dim with optional affine weight and bias.
#include "core/ops/layernorm.h"

#include "core/ops/op_utils.h"

namespace px {

using autograd::SavedTensor;

// y = (x - mean) * rstd * w + b; the backward is the backend's fused kernel (gx, gw, gb)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  detail::check_defined(x, "layer_norm", "x");
  detail::check_floating(x, "layer_norm");
  CHECK_GE(x.dim(), 1) << "layer_norm of a 0-d tensor";
  const int64_t c = x.size(-1), r = x.numel() / std::max<int64_t>(c, 1);
  for (const Tensor* p : {&weight, &bias})
    if (p->defined()) {
      detail::check_same(x, *p, "layer_norm");
      CHECK(p->dim() == 1 && p->size(0) == c) << "layer_norm: affine " << p->str() << " for input " << x.str();
    }
  const Tensor xc = detail::contiguous_raw(x);
  const Tensor w = weight.defined() ? detail::contiguous_raw(weight) : Tensor();
  const Tensor b = bias.defined() ? detail::contiguous_raw(bias) : Tensor();
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor y = detail::empty_like(xc);
  Tensor mean = Tensor::empty({r}, stat, x.device()), rstd = Tensor::empty({r}, stat, x.device());
  const Tensor x2 = xc.as_strided({r, c}, {c, 1}, xc.offset());
  const Tensor y2 = y.as_strided({r, c}, {c, 1}, 0);
  if (r > 0) detail::backend_of(x).layernorm(x2, w, b, eps, y2, mean, rstd);
  if (autograd::any_requires_grad({&x, &weight, &bias})) {
    const bool need_w = weight.defined() && weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
    autograd::attach(
        y, "LayerNormBackward", {x, weight, bias},
        [sx = SavedTensor(x2), sw = SavedTensor(w), mean, rstd, need_w, need_b, r, c](const Tensor& g) {
          const Tensor x2 = sx.unpack("LayerNormBackward"), w = sw.unpack("LayerNormBackward");
          const Tensor gc = detail::contiguous_raw(g);
          Tensor gx = Tensor::empty(g.shape(), g.dtype(), g.device());
          Tensor gw = need_w ? Tensor::empty({c}, g.dtype(), g.device()) : Tensor();
          Tensor gb = need_b ? Tensor::empty({c}, g.dtype(), g.device()) : Tensor();
          if (r > 0) {
            detail::backend_of(g).layernorm_backward(x2, w, mean, rstd, gc.as_strided({r, c}, {c, 1}, gc.offset()),
                                                     gx.as_strided({r, c}, {c, 1}, 0), gw, gb);
          } else {
            for (Tensor* t : {&gw, &gb})
              if (t->defined()) detail::backend_of(g).fill(*t, 0.0);
          }
          return std::vector<Tensor>{gx, gw, gb};
        });
  }
  return y;
}

}  // namespace px

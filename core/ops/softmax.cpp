// Softmax and log-softmax over the last dim (f32/f64 accumulation, max-subtracted).
#include "core/ops/softmax.h"

#include "core/ops/op_utils.h"

namespace px {

namespace {

// Rows of a contiguous tensor as (R, C).
Tensor rows_view(const Tensor& t) {
  const int64_t c = t.dim() == 0 ? 1 : t.size(-1);
  return t.as_strided({t.numel() / std::max<int64_t>(c, 1), c}, {c, 1}, t.offset());
}

Tensor softmax_impl(const Tensor& x, bool log, const char* name) {
  detail::check_defined(x, name, "x");
  detail::check_floating(x, name);
  const Tensor xc = detail::contiguous_raw(x);
  Tensor y = detail::empty_like(xc);
  if (y.numel() > 0) detail::backend_of(x).softmax(rows_view(xc), rows_view(y), log);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, name, {x}, [log, name, sy = autograd::SavedTensor(y)](const Tensor& g) {
      const Tensor y = sy.unpack(name);
      Tensor gx = detail::empty_like(y);
      if (gx.numel() > 0)
        detail::backend_of(g).softmax_backward(rows_view(y), rows_view(detail::contiguous_raw(g)), rows_view(gx), log);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace

// y = exp(x - max) / sum exp(x - max); dL/dx = y * (g - sum(g * y))
Tensor softmax(const Tensor& x) { return softmax_impl(x, false, "SoftmaxBackward"); }
// y = x - logsumexp(x); dL/dx = g - exp(y) * sum(g)
Tensor log_softmax(const Tensor& x) { return softmax_impl(x, true, "LogSoftmaxBackward"); }

}  // namespace px

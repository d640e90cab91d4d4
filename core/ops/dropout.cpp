// Inverted dropout with a counter-based mask: backward regenerates the mask from (seed, offset).
#include "core/ops/dropout.h"

#include "core/ops/elementwise.h"
#include "core/ops/op_utils.h"

namespace px {

// y = x * keep / (1 - p); dL/dx = g * keep / (1 - p) with the same keep mask
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  detail::check_defined(x, "dropout", "x");
  CHECK(p >= 0.0 && p <= 1.0) << "dropout probability " << p << " outside [0, 1]";
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  detail::check_floating(x, "dropout");
  const uint64_t seed = gen.seed(), offset = gen.take(static_cast<uint64_t>(x.numel()));
  const Tensor xc = detail::contiguous_raw(x);
  Tensor y = detail::empty_like(xc);
  detail::backend_of(x).dropout(xc, y, p, seed, offset);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "DropoutBackward", {x}, [p, seed, offset](const Tensor& g) {
      const Tensor gc = detail::contiguous_raw(g);
      Tensor gx = detail::empty_like(gc);
      detail::backend_of(g).dropout(gc, gx, p, seed, offset);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace px

// Selection by mask and by index: masked_fill, where, index_select, gather (backward scatter-adds).
#include "core/ops/indexing.h"

#include "core/ops/factory.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace px {

using detail::backend_of;
using detail::expand_raw;

namespace {

Tensor where_raw(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape()), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_of(a).where(expand_raw(cond, shape), expand_raw(a, shape), expand_raw(b, shape), out);
  return out;
}

void check_mask(const Tensor& mask, const char* op) {
  detail::check_defined(mask, op, "mask");
  CHECK(mask.dtype() == DType::boolean) << op << ": mask must be bool, got " << mask.str();
}

}  // namespace

// out = cond ? a : b; dL/da = sum_to(cond ? g : 0, a), dL/db = sum_to(cond ? 0 : g, b)
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_mask(cond, "where");
  detail::check_same(a, b, "where");
  Tensor out = where_raw(cond, a, b);
  if (autograd::any_requires_grad({&a, &b})) {
    autograd::attach(out, "WhereBackward", {a, b}, [cond, sa = a.shape(), sb = b.shape()](const Tensor& g) {
      const Tensor zero = scalar_tensor(0.0, g.dtype(), g.device());
      return std::vector<Tensor>{sum_to(where_raw(cond, g, zero), sa), sum_to(where_raw(cond, zero, g), sb)};
    });
  }
  return out;
}

// out = mask ? value : x; dL/dx = mask ? 0 : g
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_mask(mask, "masked_fill");
  const Shape shape = broadcast_shapes(x.shape(), mask.shape());
  CHECK(shape == x.shape()) << "masked_fill: mask " << mask.str() << " does not broadcast to " << x.str();
  return where(mask, scalar_tensor(value, x.dtype(), x.device()), x);
}

// out = x.index_select(dim, index); dL/dx = zeros.index_add(dim, index, g)
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined(x, "index_select", "x");
  CHECK_EQ(index.dim(), 1) << "index_select: index must be 1-D, got " << index.str();
  const int64_t d = wrap_dim(dim, x.dim());
  const Tensor idx = detail::checked_indices(index, x.size(d), "index_select");
  const Tensor xc = detail::contiguous_raw(x);
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  backend_of(x).index_select(xc, d, idx, out);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(out, "IndexSelectBackward", {x}, [idx, d, in_shape = x.shape()](const Tensor& g) {
      Tensor gx = zeros(in_shape, g.dtype(), g.device());
      backend_of(g).index_add(gx, d, idx, detail::contiguous_raw(g));
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

// out[.., i, ..] = x[.., index[.., i, ..], ..] along dim; dL/dx = zeros.scatter_add(dim, index, g)
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined(x, "gather", "x");
  CHECK_EQ(index.dim(), x.dim()) << "gather: index " << index.str() << " for input " << x.str();
  const int64_t d = wrap_dim(dim, x.dim());
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) CHECK_LE(index.size(i), x.size(i)) << "gather: index " << index.str() << " for input " << x.str();
  const Tensor idx = detail::checked_indices(index, x.size(d), "gather");
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  backend_of(x).gather(detail::contiguous_raw(x), d, idx, out);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(out, "GatherBackward", {x}, [idx, d, in_shape = x.shape()](const Tensor& g) {
      Tensor gx = zeros(in_shape, g.dtype(), g.device());
      backend_of(g).scatter_add(gx, d, idx, detail::contiguous_raw(g));
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

}  // namespace px

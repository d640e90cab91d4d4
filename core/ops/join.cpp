// Joining and splitting along a dim: cat, stack, split (split returns views).
#include "core/ops/join.h"

#include "core/ops/op_utils.h"
#include "core/ops/view.h"

namespace px {

// out = [x0; x1; ...] along dim; dL/dxi = the slice of g that xi filled
Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  CHECK(!xs.empty()) << "cat of no tensors";
  const Tensor& first = xs[0];
  const int64_t d = wrap_dim(dim, first.dim());
  Shape shape = first.shape();
  shape[d] = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) {
    detail::check_same(first, x, "cat");
    CHECK_EQ(x.dim(), first.dim()) << "cat: " << x.str() << " vs " << first.str();
    for (int64_t i = 0; i < x.dim(); ++i)
      if (i != d) CHECK_EQ(x.size(i), first.size(i)) << "cat along " << d << ": " << x.str() << " vs " << first.str();
    sizes.push_back(x.size(d));
    shape[d] += x.size(d);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  int64_t start = 0;
  for (const Tensor& x : xs) {
    Shape part = shape;
    part[d] = x.size(d);
    if (x.numel() > 0)
      detail::backend_of(x).copy(x, out.as_strided(part, out.strides(), start * out.strides()[d]));
    start += x.size(d);
  }
  if (autograd::any_requires_grad(xs)) {
    autograd::attach(out, "CatBackward", xs, [d, sizes](const Tensor& g) {
      std::vector<Tensor> grads;
      int64_t start = 0;
      for (int64_t s : sizes) {
        grads.push_back(contiguous(narrow(g, d, start, s)));
        start += s;
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  CHECK(!xs.empty()) << "stack of no tensors";
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1);
  std::vector<Tensor> parts;
  for (const Tensor& x : xs) {
    CHECK(x.shape() == xs[0].shape()) << "stack: " << x.str() << " vs " << xs[0].str();
    parts.push_back(unsqueeze(x, d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  CHECK_GT(size, 0) << "split size must be positive";
  const int64_t d = wrap_dim(dim, x.dim());
  std::vector<Tensor> out;
  for (int64_t start = 0; start < x.size(d); start += size) out.push_back(narrow(x, d, start, std::min(size, x.size(d) - start)));
  return out;
}

}  // namespace px

// Differentiable views that share storage (reshape of a non-viewable layout copies), and contiguous().
#include "core/ops/view.h"

#include <numeric>

#include "core/ops/factory.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace px {

using autograd::attach;

static Shape infer_shape(const Shape& shape, int64_t numel, const Tensor& x) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      CHECK_EQ(infer, -1) << "reshape: more than one -1 in " << shape_str(shape);
      infer = static_cast<int64_t>(i);
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    CHECK(known > 0 && numel % known == 0) << "reshape " << x.str() << " to " << shape_str(shape);
    out[infer] = numel / known;
  }
  CHECK_EQ(shape_numel(out), numel) << "reshape " << x.str() << " to " << shape_str(shape);
  return out;
}

// y = x with a new shape; dL/dx = reshape(dL/dy, x.shape)
Tensor reshape(const Tensor& x, const Shape& shape) {
  const Shape target = infer_shape(shape, x.numel(), x);
  Tensor base = detail::contiguous_raw(x);
  Tensor y = base.as_strided(target, contiguous_strides(target), base.offset());
  if (autograd::any_requires_grad({&x})) {
    const Shape in_shape = x.shape();
    attach(y, "ReshapeBackward", {x}, [in_shape](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
  }
  return y;
}

// y = x with dims d0, d1 swapped; dL/dx = transpose(dL/dy, d0, d1)
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  const int64_t d0 = wrap_dim(dim0, x.dim()), d1 = wrap_dim(dim1, x.dim());
  Shape shape = x.shape(), strides = x.strides();
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  Tensor y = x.as_strided(shape, strides, x.offset());
  if (autograd::any_requires_grad({&x}))
    attach(y, "TransposeBackward", {x}, [d0, d1](const Tensor& g) { return std::vector<Tensor>{transpose(g, d0, d1)}; });
  return y;
}

// y = x.permute(dims); dL/dx = dL/dy.permute(inverse(dims))
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  CHECK_EQ(static_cast<int64_t>(dims.size()), x.dim()) << "permute of " << x.str();
  Shape shape(dims.size()), strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], x.dim());
    CHECK_EQ(inverse[d], -1) << "permute: dim " << d << " repeated";
    inverse[d] = static_cast<int64_t>(i);
    shape[i] = x.shape()[d];
    strides[i] = x.strides()[d];
  }
  Tensor y = x.as_strided(shape, strides, x.offset());
  if (autograd::any_requires_grad({&x}))
    attach(y, "PermuteBackward", {x}, [inverse](const Tensor& g) { return std::vector<Tensor>{permute(g, inverse)}; });
  return y;
}

// y = x[.., start:start+length, ..]; dL/dx = zeros with dL/dy written into that slice
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const int64_t d = wrap_dim(dim, x.dim());
  CHECK(start >= 0 && length >= 0 && start + length <= x.shape()[d])
      << "narrow(" << d << ", " << start << ", " << length << ") of " << x.str();
  Shape shape = x.shape();
  shape[d] = length;
  Tensor y = x.as_strided(shape, x.strides(), x.offset() + start * x.strides()[d]);
  if (autograd::any_requires_grad({&x})) {
    const Shape in_shape = x.shape();
    attach(y, "NarrowBackward", {x}, [in_shape, d, start, length](const Tensor& g) {
      Tensor gx = zeros(in_shape, g.dtype(), g.device());
      Tensor slice = gx.as_strided(g.shape(), gx.strides(), start * gx.strides()[d]);
      detail::backend_of(g).copy(g, slice);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

// y = x broadcast to shape (stride 0); dL/dx = sum of dL/dy over the broadcast dims
Tensor expand(const Tensor& x, const Shape& shape) {
  Shape target = shape;
  const int64_t lead = static_cast<int64_t>(shape.size()) - x.dim();
  for (size_t i = 0; i < target.size(); ++i)
    if (target[i] == -1) {
      CHECK_GE(static_cast<int64_t>(i), lead) << "expand: -1 in a new leading dim";
      target[i] = x.shape()[i - lead];
    }
  Tensor y = detail::expand_raw(x, target);
  if (autograd::any_requires_grad({&x})) {
    const Shape in_shape = x.shape();
    attach(y, "ExpandBackward", {x}, [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  }
  return y;
}

// y = x with a size-1 dim inserted at dim (a view); dL/dx = reshape(dL/dy, x.shape)
Tensor unsqueeze(const Tensor& x, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim() + 1);
  Shape shape = x.shape(), strides = x.strides();
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, d < x.dim() ? x.strides()[d] * x.shape()[d] : 1);
  Tensor y = x.as_strided(shape, strides, x.offset());
  if (autograd::any_requires_grad({&x}))
    attach(y, "UnsqueezeBackward", {x}, [in_shape = x.shape()](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
  return y;
}

// y = x without its size-1 dim `dim` (a view; x itself if that dim is not 1); dL/dx = reshape(dL/dy, x.shape)
Tensor squeeze(const Tensor& x, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim());
  if (x.shape()[d] != 1) return x;
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  Tensor y = x.as_strided(shape, strides, x.offset());
  if (autograd::any_requires_grad({&x}))
    attach(y, "SqueezeBackward", {x}, [in_shape = x.shape()](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
  return y;
}

// y = contiguous copy of x; dL/dx = dL/dy
Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor y = detail::contiguous_raw(x);
  if (autograd::any_requires_grad({&x}))
    attach(y, "ContiguousBackward", {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return y;
}

}  // namespace px

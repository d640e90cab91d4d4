// Differentiable reductions over dims (keepdim or not): sum, mean, max (ties share the gradient
// like torch.amax); argmax and topk; and sum_to, which undoes broadcasting in backward.
#include "core/ops/reduce.h"

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/op_utils.h"
#include "core/ops/view.h"

namespace px {

using autograd::attach;
using autograd::SavedTensor;

namespace {

Shape keepdim_shape(const Shape& shape, const std::vector<int64_t>& dims) {
  Shape out = shape;
  for (int64_t d : dims) out[d] = 1;
  return out;
}

Shape dropped_shape(const Shape& shape, const std::vector<int64_t>& dims) {
  Shape out;
  size_t j = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (j < dims.size() && dims[j] == i) {
      ++j;
      continue;
    }
    out.push_back(shape[i]);
  }
  return out;
}

// Reduces x over dims into a keepdim-shaped tensor, then drops the dims unless keepdim.
Tensor reduce_raw(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, DType dtype) {
  const Shape kshape = keepdim_shape(x.shape(), dims);
  Tensor out = Tensor::empty(kshape, dtype, x.device());
  detail::backend_of(x).reduce(op, x, out);
  if (keepdim) return out;
  const Shape shape = dropped_shape(x.shape(), dims);
  return out.as_strided(shape, contiguous_strides(shape), 0);
}

}  // namespace

// y = sum of x over dims; dL/dx = dL/dy broadcast back over dims
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const std::vector<int64_t> d = detail::normalize_dims(dims, x.dim());
  Tensor y = reduce_raw(ReduceOp::sum, x, d, keepdim, x.dtype());
  if (autograd::any_requires_grad({&x})) {
    attach(y, "SumBackward", {x}, [in_shape = x.shape(), kshape = keepdim_shape(x.shape(), d)](const Tensor& g) {
      return std::vector<Tensor>{contiguous(expand(reshape(g, kshape), in_shape))};
    });
  }
  return y;
}

// y = sum(x over dims) / count
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const std::vector<int64_t> d = detail::normalize_dims(dims, x.dim());
  int64_t count = 1;
  for (int64_t i : d) count *= x.shape()[i];
  return mul(sum(x, d, keepdim), 1.0 / static_cast<double>(count));
}

// y = max of x over dims; dL/dx = dL/dy / (number of maxima) at every maximum, 0 elsewhere
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const std::vector<int64_t> d = detail::normalize_dims(dims, x.dim());
  for (int64_t i : d) CHECK_GT(x.shape()[i], 0) << "max over an empty dim of " << x.str();
  Tensor y = reduce_raw(ReduceOp::max, x, d, keepdim, x.dtype());
  if (autograd::any_requires_grad({&x})) {
    attach(y, "MaxBackward", {x}, [sx = SavedTensor(x), sy = SavedTensor(y), d, kshape = keepdim_shape(x.shape(), d)](
                                      const Tensor& g) {
      const Tensor x = sx.unpack("MaxBackward");
      const Tensor at_max = to_dtype(eq(x, reshape(sy.unpack("MaxBackward"), kshape)), x.dtype());
      const Tensor count = sum(at_max, d, true);
      return std::vector<Tensor>{mul(at_max, div(reshape(g, kshape), count))};
    });
  }
  return y;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_raw(ReduceOp::argmax, x, {wrap_dim(dim, x.dim())}, keepdim, DType::i64);
}

// values, indices = the k best of every row of x over its last dim
TopK topk(const Tensor& x, int64_t k) {
  CHECK(x.defined() && x.dim() >= 1) << "topk: x must have at least one dim, got " << (x.defined() ? x.str() : "undefined");
  const int64_t cols = x.size(-1);
  CHECK(k >= 1 && k <= cols) << "topk: k = " << k << " outside [1, " << cols << "] for " << x.str();
  const Tensor rows = detail::contiguous_raw(x);
  const int64_t n = cols == 0 ? 0 : rows.numel() / cols;
  Shape shape = x.shape();
  shape.back() = k;
  TopK result{Tensor::empty(shape, x.dtype(), x.device()), Tensor::empty(shape, DType::i64, x.device())};
  if (n == 0) return result;
  const auto as_rows = [n](const Tensor& t, int64_t c) { return t.as_strided({n, c}, {c, 1}, t.offset()); };
  detail::backend_of(x).topk(as_rows(rows, cols), k, as_rows(result.values, k), as_rows(result.indices, k));
  return result;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  CHECK_GE(lead, 0) << "sum_to: " << x.str() << " to " << shape_str(shape);
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) dims.push_back(i);
  if (dims.empty()) return reshape(x, shape);
  return reshape(sum(x, dims, true), shape);
}

}  // namespace px

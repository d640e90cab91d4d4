// Plain reference kernels of the index family: index_select / index_add along one dim and
// gather / scatter_add, one element at a time through row-major coordinates.
#include <vector>

#include "core/backend/cpu/reference_kernels.h"

namespace px::ref {
namespace {

// Row-major coordinates of position `linear` in `shape`.
std::vector<int64_t> coords_of(const Shape& shape, int64_t linear) {
  std::vector<int64_t> c(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    c[d] = linear % shape[d];
    linear /= shape[d];
  }
  return c;
}

// Row-major position of `coords` in `shape`.
int64_t linear_of(const Shape& shape, const std::vector<int64_t>& coords) {
  int64_t linear = 0;
  for (size_t d = 0; d < shape.size(); ++d) linear = linear * shape[d] + coords[d];
  return linear;
}

// Position in `big` of the element at `linear` in `small` with coordinate `dim` replaced by `k`.
int64_t redirected(const Tensor& small, int64_t linear, int64_t dim, int64_t k, const Tensor& big) {
  std::vector<int64_t> c = coords_of(small.shape(), linear);
  CHECK(k >= 0 && k < big.size(dim)) << "ref: index " << k << " outside [0, " << big.size(dim) << ") of " << big.str();
  c[dim] = k;
  return linear_of(big.shape(), c);
}

int64_t index_at(const Tensor& index, int64_t linear) { return static_cast<int64_t>(load(index, linear)); }

// out[position(p)] += src[p] for every p of src, summed in double and rounded once.
template <typename Position>
void accumulate(const Tensor& out, const Tensor& src, Position&& position) {
  std::vector<double> acc(out.numel());
  for (int64_t o = 0; o < out.numel(); ++o) acc[o] = load(out, o);
  for (int64_t p = 0; p < src.numel(); ++p) acc[position(p)] += load(src, p);
  for (int64_t o = 0; o < out.numel(); ++o) store(out, o, acc[o]);
}

}  // namespace

// out[..., l, ...] = x[..., index[l], ...] along dim
void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  dim = wrap_dim(dim, x.dim());
  for (int64_t p = 0; p < out.numel(); ++p) {
    const int64_t l = coords_of(out.shape(), p)[dim];
    store(out, p, load(x, redirected(out, p, dim, index_at(index, l), x)));
  }
}

// out[..., index[l], ...] += src[..., l, ...] along dim
void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  dim = wrap_dim(dim, out.dim());
  accumulate(out, src,
             [&](int64_t p) { return redirected(src, p, dim, index_at(index, coords_of(src.shape(), p)[dim]), out); });
}

// out[p] = x[p with coordinate dim replaced by index[p]]
void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  dim = wrap_dim(dim, x.dim());
  for (int64_t p = 0; p < out.numel(); ++p) store(out, p, load(x, redirected(out, p, dim, index_at(index, p), x)));
}

// out[p with coordinate dim replaced by index[p]] += src[p]
void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  dim = wrap_dim(dim, out.dim());
  accumulate(out, src, [&](int64_t p) { return redirected(src, p, dim, index_at(index, p), out); });
}

}  // namespace px::ref

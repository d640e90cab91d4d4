// Embedding lookup: rows of a table by integer ids; backward scatter-adds into the table.
#include "core/ops/embedding.h"

#include "core/ops/factory.h"
#include "core/ops/op_utils.h"

namespace px {

// y[i] = weight[ids[i]]; dL/dweight[v] = sum of g[i] over i with ids[i] == v
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  detail::check_defined(weight, "embedding", "weight");
  detail::check_defined(ids, "embedding", "ids");
  CHECK_EQ(weight.dim(), 2) << "embedding: weight must be (V, D), got " << weight.str();
  const int64_t vocab = weight.size(0), dim = weight.size(1);
  const Tensor flat_ids = detail::checked_indices(ids, vocab, "embedding");
  const Tensor idx = flat_ids.as_strided({flat_ids.numel()}, {1}, flat_ids.offset());
  const Tensor w = detail::contiguous_raw(weight);
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor y = Tensor::empty(out_shape, weight.dtype(), weight.device());
  detail::backend_of(weight).index_select(w, 0, idx, y.as_strided({idx.numel(), dim}, {dim, 1}, 0));
  if (autograd::any_requires_grad({&weight})) {
    autograd::attach(y, "EmbeddingBackward", {weight}, [idx, vocab, dim](const Tensor& g) {
      Tensor gw = zeros({vocab, dim}, g.dtype(), g.device());
      const Tensor gc = detail::contiguous_raw(g);
      detail::backend_of(g).index_add(gw, 0, idx, gc.as_strided({idx.numel(), dim}, {dim, 1}, gc.offset()));
      return std::vector<Tensor>{gw};
    });
  }
  return y;
}

}  // namespace px

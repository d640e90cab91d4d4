// Megatron's conjugate tensor-parallel communication ops (tensor_parallel/mappings.py) as autograd nodes:
// copy/reduce (identity vs all-reduce) and scatter/gather (chunk of the last dim vs all-gather of it).
#include "parallel/tp/mappings.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"

namespace px::parallel {

namespace {

// x summed over the group, in place when x is the only handle on its storage (then nothing saved it for a
// backward and nobody else sees the change: a partial sum moved into reduce_from_tp_region, a gradient only the
// engine holds), else in a copy. x (...)
Tensor all_reduce_sum(const Tensor& x, ProcessGroup& tp) {
  NoGradGuard no_grad;
  const bool sole_owner = x.impl_ptr().use_count() == 1 && x.storage().use_count() == 1 && x.is_contiguous();
  Tensor out = sole_owner ? x.detach() : clone(x.detach());
  tp.all_reduce(out, ReduceOp::sum)->wait_on_stream();  // NCCL: the current stream waits, not the host
  return out;
}

// Every rank's x concatenated along the last dim, rank order. x (..., c) -> (..., size * c)
Tensor all_gather_last_dim(const Tensor& x, ProcessGroup& tp) {
  NoGradGuard no_grad;
  const int size = tp.size();
  const Tensor flat = contiguous(x.detach());  // (..., c)
  Shape stacked_shape{size};
  stacked_shape.insert(stacked_shape.end(), x.shape().begin(), x.shape().end());
  const Tensor stacked = Tensor::empty(stacked_shape, x.dtype(), x.device());  // (size, ..., c)
  tp.all_gather(reshape(flat, {1, x.numel()}), reshape(stacked, {size, x.numel()}))->wait_on_stream();
  // (size, ..., c) -> (..., size, c) -> (..., size * c)
  std::vector<int64_t> order;
  for (int64_t i = 1; i < x.dim(); ++i) order.push_back(i);
  order.push_back(0);
  order.push_back(x.dim());
  Shape out_shape = x.shape();
  out_shape.back() *= size;
  return reshape(contiguous(permute(stacked, order)), out_shape);
}

// This rank's chunk of the last dim, as a contiguous copy. x (..., n) -> (..., n / size)
Tensor local_chunk_last_dim(const Tensor& x, ProcessGroup& tp, const char* op) {
  NoGradGuard no_grad;
  CHECK(x.dim() >= 1 && x.size(-1) % tp.size() == 0)
      << op << ": last dim of " << x.str() << " does not split over " << tp.describe();
  const int64_t chunk = x.size(-1) / tp.size();
  return clone(narrow(x.detach(), -1, tp.rank() * chunk, chunk));
}

}  // namespace

// forward: y = x   backward: gx = sum_r g_r
Tensor copy_to_tp_region(const Tensor& x, ProcessGroup& tp) {
  CHECK(x.defined()) << "copy_to_tp_region: undefined tensor";
  if (tp.size() == 1) return x;
  Tensor y = x.as_strided(x.shape(), x.strides(), x.offset());
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "CopyToTensorParallelRegionBackward", {x},
                     [&tp](const Tensor& g) { return std::vector<Tensor>{all_reduce_sum(g, tp)}; });
  }
  return y;
}

// forward: y = sum_r x_r   backward: gx = g
Tensor reduce_from_tp_region(Tensor x, ProcessGroup& tp) {
  CHECK(x.defined()) << "reduce_from_tp_region: undefined tensor";
  if (tp.size() == 1) return x;
  Tensor y = all_reduce_sum(x, tp);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "ReduceFromTensorParallelRegionBackward", {x},
                     [](const Tensor& g) { return std::vector<Tensor>{g}; });
  }
  return y;
}

// forward: y = x[..., r n/tp : (r+1) n/tp]   backward: gx = concat_r g_r along the last dim
Tensor scatter_to_tp_region(const Tensor& x, ProcessGroup& tp) {
  CHECK(x.defined()) << "scatter_to_tp_region: undefined tensor";
  if (tp.size() == 1) return x;
  Tensor y = local_chunk_last_dim(x, tp, "scatter_to_tp_region");
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "ScatterToTensorParallelRegionBackward", {x},
                     [&tp](const Tensor& g) { return std::vector<Tensor>{all_gather_last_dim(g, tp)}; });
  }
  return y;
}

// forward: y = concat_r x_r along the last dim   backward: gx = g[..., r c : (r+1) c]
Tensor gather_from_tp_region(const Tensor& x, ProcessGroup& tp) {
  CHECK(x.defined() && x.dim() >= 1) << "gather_from_tp_region: needs a tensor with a last dim";
  if (tp.size() == 1) return x;
  Tensor y = all_gather_last_dim(x, tp);
  if (autograd::any_requires_grad({&x})) {
    autograd::attach(y, "GatherFromTensorParallelRegionBackward", {x}, [&tp](const Tensor& g) {
      return std::vector<Tensor>{local_chunk_last_dim(g, tp, "gather_from_tp_region backward")};
    });
  }
  return y;
}

}  // namespace px::parallel

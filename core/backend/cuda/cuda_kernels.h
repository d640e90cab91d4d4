// Host-callable launchers of every CUDA kernel family (no CUDA headers here, so tests can call them).
// Impl::reference runs the plain one-thread-per-element/row kernel kept beside each optimised one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor/tensor.h"

namespace px::gpu {

// atomic: index_add/scatter_add by atomicAdd (not bit-reproducible), kept to measure the deterministic kernels
// against; the other families run their fast kernel for it.
enum class Impl : uint8_t { fast, reference, atomic };

// cuda_elementwise.cu: whether this binary carries kernels the current GPU can run (sm_90 SASS or
// compute_90 PTX); on false, *why says what is missing.
bool kernels_loadable(std::string* why);
// copy: src and dst of one shape on the same device (host staging lives in CudaBackend::copy);
// uniform/normal/dropout: contiguous; unary: x any strides, out contiguous; binary/where: inputs expanded
// to out's shape (stride 0 broadcasts), out contiguous.
void copy(const Tensor& src, const Tensor& dst, Impl impl = Impl::fast);
void fill(const Tensor& dst, double value);
void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi);
void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset);
void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha, Impl impl = Impl::fast);
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx, double alpha);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, Impl impl = Impl::fast);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

// cuda_reduce.cu: x (any strides), out contiguous with x's ndim, size 1 on the reduced dims.
void reduce(ReduceOp op, const Tensor& x, const Tensor& out, Impl impl = Impl::fast);

// cuda_topk.cu: x (R, C), values (R, k) x's dtype, indices i64 (R, k), all contiguous; Backend::topk's order.
void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices, Impl impl = Impl::fast);

// cuda_softmax.cu: x, y, gy, gx contiguous (R, C) over the last dim.
void softmax(const Tensor& x, const Tensor& y, bool log, Impl impl = Impl::fast);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log, Impl impl = Impl::fast);

// cuda_layernorm.cu: x, y, gy, gx (R, C); w, b, gw, gb (C) or undefined; mean, rstd (R) f32/f64
// (optional in the forward); gx may be undefined when only gw/gb are wanted.
void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
               const Tensor& rstd, Impl impl = Impl::fast);
void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                        const Tensor& gx, const Tensor& gw, const Tensor& gb, Impl impl = Impl::fast);

// cuda_conv.cu: x (B, C, H, W) and col (C kh kw, B, OH OW) contiguous, one float dtype (Backend::im2col/col2im).
void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g, Impl impl = Impl::fast);
void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g, Impl impl = Impl::fast);

// cuda_pool.cu: x (B, C, H, W), y and indices i64 (B, C, OH, OW), contiguous (Backend::max_pool2d).
void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g,
                Impl impl = Impl::fast);

// cuda_batchnorm.cu: x, y, gy, gx (N, C, L); per-channel tensors (C), statistics in Acc (f32, f64 for f64): the
// contracts of Backend::batchnorm_stats, channel_affine and batchnorm_backward.
void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var, Impl impl = Impl::fast);
void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y, Impl impl = Impl::fast);
void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb, Impl impl = Impl::fast);

// cuda_index.cu: x/out contiguous; index i64 (L) for index_select/index_add ((O, D, I) <-> (O, L, I)),
// index with out's (gather) or src's (scatter_add) shape. index_add/scatter_add are deterministic (a sort and
// segmented sums in source order; scratch of O*L*W accumulators) but for Impl::atomic.
void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out, Impl impl = Impl::fast);
void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src, Impl impl = Impl::fast);
void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out, Impl impl = Impl::fast);
void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src, Impl impl = Impl::fast);

// cuda_loss.cu: logits, glogits (N, C) contiguous; target i64 (N); loss, lse, gloss float (N) (lse optional
// in the forward; gloss may be one value for every row).
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                   const Tensor& lse, Impl impl = Impl::fast);
void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                            int64_t ignore_index, double eps, const Tensor& glogits, Impl impl = Impl::fast);

// cuda_gemm_reference.cu: c = alpha * a @ b + beta * c with one thread per output element (f64 accumulation);
// the oracle for gemm_cublaslt. Same contract as Backend::gemm.
void gemm_reference(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta);

// cuda_optim.cu: Backend::adamw on one GPU, math in the target's dtype (f32 for f32/bf16/f16 parameters). The slots
// are grouped by parameter dtype and each group runs as one multi-tensor launch (more when it has over 24 tensors or
// 320 chunks) of chunk_elems-element chunks (0: 65536; tests pass fewer to force several launches). No host sync.
// Impl::reference: one launch per slot, one thread per element.
void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps, Impl impl = Impl::fast,
           int64_t chunk_elems = 0);

}  // namespace px::gpu

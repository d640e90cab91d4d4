// Plain reference kernels (simple loops, double math, one thread) that the optimised CPU and CUDA
// kernels are tested against: one per Backend method, with that method's contract (any strides here).
#pragma once

#include <cstdint>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor/tensor.h"

namespace px::ref {

// Element `linear` (row-major over t's shape) of a host tensor of any dtype and strides, as double.
double load(const Tensor& t, int64_t linear);
// Writes v, converted to t's dtype, at row-major position `linear`.
void store(const Tensor& t, int64_t linear, double v);

// reference_elementwise.cpp. dst = src converted; equal shapes.
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
// out_i = lo + (hi - lo) philox_uniform(seed, offset + i) / mean + std philox_normal(seed, offset + i).
void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi);
void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
// y_i = x_i / (1 - p) where philox_uniform_f32(seed, offset + i) >= p, else 0.  x, y one shape.
void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset);
// op(v; alpha) and a op b (1 or 0 for comparisons) for single values.
double unary_value(UnaryOp op, double v, double alpha);
double binary_value(BinaryOp op, double a, double b);
// out = op(x; alpha); gx = gy op'(x) from x or y = op(x), the same choice as the backends.  One shape each.
void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha);
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx, double alpha);
// out = a op b (bool for comparisons); out = cond ? a : b.  Operands expanded to out's shape.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

// reference_index.cpp. x (O, D, I) <-> out/src (O, L, I) with index i64 (L) for index_select / index_add;
// index with out's (gather) or src's (scatter_add) shape.
void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

// reference_kernels.cpp. c = alpha * a @ b + beta * c per batch; a (B, M, K), b (B, K, N), c (B, M, N).
void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta);
// out = reduce of x over the dims where out has size 1 and x does not (argmax: first max, i64).
void reduce(ReduceOp op, const Tensor& x, const Tensor& out);
// Row-wise over the last dim of x, y (R, C).
void softmax(const Tensor& x, const Tensor& y, bool log);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log);
// x, y (R, C); w, b (C) or undefined; mean, rstd (R).
void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
               const Tensor& rstd);
void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                        const Tensor& gx, const Tensor& gw, const Tensor& gb);
// x (R, C); values (R, k), indices i64 (R, k): k selection passes per row, each taking the best element that
// ranks after the previous one (value descending, NaN first, ties by lower column).
void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices);
// logits (N, C), target i64 (N), loss and lse (N).
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                            int64_t ignore_index, double eps, const Tensor& glogits);
// reference_conv.cpp. x (B, C, H, W), col (C kh kw, B, OH OW) as Backend::im2col / col2im describe them.
void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g);
void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g);
// x (B, C, H, W), y and indices (B, C, OH, OW): Backend::max_pool2d's contract.
void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g);
// reference_batchnorm.cpp. x, y, gy, gx (N, C, L); per-channel tensors (C): Backend::batchnorm_*'s contracts.
void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var);
void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y);
void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb);
// Backend::adamw one element at a time, unthreaded. Unlike the other reference kernels it computes in the target's
// dtype (f32 or f64, not double), in torch's order, since that is AdamW's contract: the CPU's loop matches it bit
// for bit. Slots as Backend::adamw takes them (contiguous).
void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps);

}  // namespace px::ref

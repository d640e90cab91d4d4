// Plain reference kernels (simple loops, double accumulation, one thread) that the optimised
// CPU and CUDA kernels are tested against. Same contracts as the Backend methods of the same name.
#pragma once

#include <cstdint>

#include "core/backend/backend.h"
#include "core/tensor/tensor.h"

namespace px::ref {

// Element `linear` (row-major over t's shape) of a host tensor of any dtype and strides, as double.
double load(const Tensor& t, int64_t linear);
// Writes v, converted to t's dtype, at row-major position `linear`.
void store(const Tensor& t, int64_t linear, double v);

// c = alpha * a @ b + beta * c per batch; a (B, M, K), b (B, K, N), c (B, M, N), any strides.
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
// logits (N, C), target i64 (N), loss and lse (N).
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                            int64_t ignore_index, double eps, const Tensor& glogits);

}  // namespace px::ref

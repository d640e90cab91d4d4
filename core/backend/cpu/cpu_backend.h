// The host backend: OpenBLAS GEMM, OpenMP-threaded elementwise, reduction, softmax, layernorm, batch
// norm, im2col, pooling, index, loss and optimizer (AdamW) kernels. Each family lives in its own cpu_*.cpp.
#pragma once

#include "core/backend/backend.h"

namespace px {

class CpuBackend final : public Backend {
 public:
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) override;
  void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                      double alpha) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override;
  void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) override;
  void softmax(const Tensor& x, const Tensor& y, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override;
  void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                 const Tensor& mean, const Tensor& rstd) override;
  void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                          const Tensor& gy, const Tensor& gx, const Tensor& gw, const Tensor& gb) override;
  void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) override;
  void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) override;
  void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) override;
  void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) override;
  void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) override;
  void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                          bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb) override;
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override;
  void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) override;
  void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) override;
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps,
                     const Tensor& loss, const Tensor& lse) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                              int64_t ignore_index, double eps, const Tensor& glogits) override;
  void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) override;
};

CpuBackend& cpu_backend();

// Threads used by OpenMP kernels and OpenBLAS. The default is this node's cores / `local_ranks`, the processes
// sharing them (under mpirun or srun: parallel::World's placement().local_size), at least 1;
// PARALLAX_NUM_THREADS overrides. A process that sets none uses default_num_threads(1) from its first kernel on.
int default_num_threads(int local_ranks = 1);
void set_num_threads(int n);
int num_threads();

}  // namespace px

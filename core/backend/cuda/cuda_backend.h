// The CUDA implementation of Backend, its one-time registration (init_cuda_backend), and the
// per-thread "current stream" every kernel, GEMM and the caching allocator are ordered on.
#pragma once

#include <cstdint>

#include "core/backend/backend.h"

namespace px {

class CudaBackend final : public Backend {
 public:
  // Either tensor may live on the host; host <-> device copies stage through contiguous buffers and block the host,
  // except a copy from a contiguous pinned host tensor (Tensor::empty_pinned) to the device: queued on the current
  // stream, no host wait, no host sync counted (src must not be written until that stream has run the copy).
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

// Probes cudaGetDeviceCount once (cached). With >= 1 usable GPU it registers the CUDA backend, the caching
// allocator and the pinned host allocator and returns true; otherwise it logs one INFO line saying why and returns
// false.
bool init_cuda_backend();
CudaBackend& cuda_backend();

// The stream (a cudaStream_t, passed as void* so this header stays free of CUDA headers) that kernels
// launched from this thread run on. nullptr is the legacy default stream, the initial value.
void* current_cuda_stream();
void set_current_cuda_stream(void* stream);

// Makes `device`'s GPU current for the guard's lifetime (a no-op for host devices).
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(Device device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Waits for all work queued on the current stream (tests, host reads).
void cuda_synchronize();
// How many times this process has blocked on the GPU (cuda_synchronize: every device-to-host copy, pageable
// host-to-device copy and item(); not pinned host-to-device copies); tests count them per training step.
uint64_t cuda_host_syncs();
// Turns the CUDA profiler's collection on / off (cudaProfilerStart/Stop), so that `ncu --profile-from-start off`
// or `nsys --capture-range=cudaProfilerApi` records only the marked region (benchmarks mark one step).
void cuda_profiler_start();
void cuda_profiler_stop();

}  // namespace px

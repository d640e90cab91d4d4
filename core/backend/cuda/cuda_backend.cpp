// The CUDA implementation of Backend, its one-time registration (init_cuda_backend), the per-thread
// current stream, host <-> device copies (staged, or asynchronous from pinned memory), and the status strings.
#include "core/backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <atomic>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cuda/caching_allocator.h"
#include "core/backend/cuda/cuda_kernels.h"
#include "core/backend/cuda/gemm_cublaslt.h"
#include "core/backend/cuda/pinned_allocator.h"
#include "core/util/check.h"

namespace px {

// ---- status strings (declared in core/util/check.h) ----

const char* cuda_error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

const char* cublas_error_string(int code) { return cublasGetStatusString(static_cast<cublasStatus_t>(code)); }

// NCCL is not linked into core, so its codes (ncclResult_t) are spelled out here.
const char* nccl_error_string(int code) {
  switch (code) {
    case 0: return "ncclSuccess";
    case 1: return "ncclUnhandledCudaError: a CUDA call inside NCCL failed";
    case 2: return "ncclSystemError: a system or network call failed";
    case 3: return "ncclInternalError: an internal NCCL check failed";
    case 4: return "ncclInvalidArgument: invalid argument";
    case 5: return "ncclInvalidUsage: invalid usage (e.g. mismatched collectives across ranks)";
    case 6: return "ncclRemoteError: a remote peer failed or went away";
    case 7: return "ncclInProgress: operation still in progress";
    default: return "unknown NCCL error";
  }
}

// ---- streams and devices ----

namespace {
thread_local void* t_stream = nullptr;

cudaStream_t cur() { return static_cast<cudaStream_t>(t_stream); }
bool on_cuda(const Tensor& t) { return t.defined() && t.device().type == DeviceType::cuda; }
}  // namespace

void* current_cuda_stream() { return t_stream; }
void set_current_cuda_stream(void* stream) { t_stream = stream; }

CudaDeviceGuard::CudaDeviceGuard(Device device) {
  if (device.type != DeviceType::cuda) return;
  int current = 0;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != device.index) {
    CUDA_CHECK(cudaSetDevice(device.index));
    previous_ = current;
  }
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (previous_ >= 0) CUDA_CHECK(cudaSetDevice(previous_));
}

namespace {
std::atomic<uint64_t> host_syncs{0};
}  // namespace

void cuda_synchronize() {
  host_syncs.fetch_add(1, std::memory_order_relaxed);
  CUDA_CHECK(cudaStreamSynchronize(cur()));
}

uint64_t cuda_host_syncs() { return host_syncs.load(std::memory_order_relaxed); }

void cuda_profiler_start() { CUDA_CHECK(cudaProfilerStart()); }
void cuda_profiler_stop() { CUDA_CHECK(cudaProfilerStop()); }

// ---- registration ----

CudaBackend& cuda_backend() {
  static CudaBackend* backend = new CudaBackend();  // never destroyed, like the allocator
  return *backend;
}

namespace {
std::string g_unavailable_reason;  // why init_cuda_backend() found no usable GPU; written once
}  // namespace

bool init_cuda_backend() {
  static const bool available = [] {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      g_unavailable_reason = std::string("cudaGetDeviceCount: ") +
                             (err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
      VLOG(1) << "CUDA: no usable GPU (" << g_unavailable_reason << "); running on the CPU";
      return false;
    }
    std::string why;
    if (!gpu::kernels_loadable(&why)) {
      g_unavailable_reason = why;
      VLOG(1) << "CUDA: no usable GPU (" << why << "); running on the CPU";
      return false;
    }
    cudaDeviceProp prop{};
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    register_allocator(DeviceType::cuda, &cuda_caching_allocator());
    register_pinned_allocator(&pinned_host_allocator());
    register_backend(DeviceType::cuda, &cuda_backend());
    VLOG(1) << "CUDA: " << count << " GPU(s); cuda:" << device << " is " << prop.name << " (sm_" << prop.major
              << prop.minor << ", " << (prop.totalGlobalMem >> 20) << " MiB)";
    return true;
  }();
  return available;
}

std::vector<GpuInfo> visible_gpus(std::string* why_none) {
  if (!init_cuda_backend()) {
    if (why_none != nullptr) *why_none = g_unavailable_reason;
    return {};
  }
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  std::vector<GpuInfo> gpus;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    gpus.push_back(GpuInfo{prop.name, static_cast<int64_t>(prop.totalGlobalMem), prop.major, prop.minor});
  }
  return gpus;
}

void set_current_gpu(int index) {
  CHECK(init_cuda_backend()) << "set_current_gpu(" << index << "): no usable GPU";
  CUDA_CHECK(cudaSetDevice(index));
}

// ---- copies, with host staging ----

namespace {

// src as a contiguous tensor on its own device (src itself when it already is).
Tensor contiguous_copy(const Tensor& src) {
  if (src.is_contiguous()) return src;
  Tensor t = Tensor::empty(src.shape(), src.dtype(), src.device());
  if (on_cuda(src)) gpu::copy(src, t);
  else cpu_backend().copy(src, t);
  return t;
}

size_t nbytes(const Tensor& t) { return static_cast<size_t>(t.numel()) * dtype_size(t.dtype()); }

// Host -> device from contiguous page-locked memory, queued on the current stream (dst's device current) without
// blocking the host: the pinned allocator keeps src's block from reuse until an event after the copy completes.
// The caller must not write src before the copy has run (as PyTorch's non_blocking copies).
void copy_from_pinned(const Tensor& src, const Tensor& dst) {
  if (dst.is_contiguous() && dst.dtype() == src.dtype()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), nbytes(src), cudaMemcpyHostToDevice, cur()));
  } else {
    const Tensor ds = Tensor::empty(src.shape(), src.dtype(), dst.device());  // freed in stream order below
    CUDA_CHECK(cudaMemcpyAsync(ds.raw_data(), src.raw_data(), nbytes(src), cudaMemcpyHostToDevice, cur()));
    gpu::copy(ds, dst);
  }
  pinned_host_allocator().record_stream(src.storage()->data(), cur());
}

}  // namespace

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  CHECK(src.defined() && dst.defined()) << "copy: undefined tensor";
  CHECK(src.shape() == dst.shape()) << "copy: shapes differ: " << src.str() << " -> " << dst.str();
  if (src.numel() == 0) return;
  const bool from_gpu = on_cuda(src), to_gpu = on_cuda(dst);
  if (!from_gpu && !to_gpu) {
    cpu_backend().copy(src, dst);
    return;
  }
  if (from_gpu && to_gpu) {
    if (src.device() == dst.device()) {
      CudaDeviceGuard g(dst.device());
      gpu::copy(src, dst);
      return;
    }
    // Across GPUs: a contiguous copy of src, a peer copy, then the strided/converting write on dst's GPU.
    Tensor s;
    {
      CudaDeviceGuard g(src.device());
      s = contiguous_copy(src);
      cuda_synchronize();
    }
    CudaDeviceGuard g(dst.device());
    Tensor t = Tensor::empty(src.shape(), src.dtype(), dst.device());
    CUDA_CHECK(cudaMemcpyPeer(t.raw_data(), dst.device().index, s.raw_data(), src.device().index, nbytes(t)));
    gpu::copy(t, dst);
    return;
  }
  if (to_gpu) {  // host -> device
    CudaDeviceGuard g(dst.device());
    if (src.is_pinned() && src.is_contiguous()) {
      copy_from_pinned(src, dst);
      return;
    }
    const Tensor hs = contiguous_copy(src);
    if (dst.is_contiguous() && dst.dtype() == src.dtype()) {
      CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), hs.raw_data(), nbytes(hs), cudaMemcpyHostToDevice, cur()));
    } else {
      const Tensor ds = Tensor::empty(src.shape(), src.dtype(), dst.device());
      CUDA_CHECK(cudaMemcpyAsync(ds.raw_data(), hs.raw_data(), nbytes(hs), cudaMemcpyHostToDevice, cur()));
      gpu::copy(ds, dst);
    }
    cuda_synchronize();  // hs may be a temporary of pageable memory
    return;
  }
  // device -> host
  CudaDeviceGuard g(src.device());
  const Tensor ds = contiguous_copy(src);
  if (dst.is_contiguous() && dst.dtype() == src.dtype()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), ds.raw_data(), nbytes(ds), cudaMemcpyDeviceToHost, cur()));
    cuda_synchronize();
    return;
  }
  const Tensor hs = Tensor::empty(src.shape(), src.dtype(), cpu());
  CUDA_CHECK(cudaMemcpyAsync(hs.raw_data(), ds.raw_data(), nbytes(ds), cudaMemcpyDeviceToHost, cur()));
  cuda_synchronize();
  cpu_backend().copy(hs, dst);
}

// ---- the rest forward to the kernel launchers on the output's device ----

void CudaBackend::fill(const Tensor& dst, double value) {
  CudaDeviceGuard g(dst.device());
  gpu::fill(dst, value);
}

void CudaBackend::uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  CudaDeviceGuard g(out.device());
  gpu::uniform(out, seed, offset, lo, hi);
}

void CudaBackend::normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  CudaDeviceGuard g(out.device());
  gpu::normal(out, seed, offset, mean, std);
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) {
  CudaDeviceGuard g(out.device());
  gpu::unary(op, x, out, alpha);
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                                 double alpha) {
  CudaDeviceGuard g(gx.device());
  gpu::unary_backward(op, x, y, gy, gx, alpha);
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  CudaDeviceGuard g(out.device());
  gpu::binary(op, a, b, out);
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  CudaDeviceGuard g(out.device());
  gpu::where(cond, a, b, out);
}

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  CudaDeviceGuard g(out.device());
  gpu::reduce(op, x, out);
}

void CudaBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  CudaDeviceGuard g(c.device());
  gpu::gemm(a, b, c, alpha, beta);
}

void CudaBackend::topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  CudaDeviceGuard g(values.device());
  gpu::topk(x, k, values, indices);
}

void CudaBackend::softmax(const Tensor& x, const Tensor& y, bool log) {
  CudaDeviceGuard g(y.device());
  gpu::softmax(x, y, log);
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  CudaDeviceGuard g(gx.device());
  gpu::softmax_backward(y, gy, gx, log);
}

void CudaBackend::layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                            const Tensor& mean, const Tensor& rstd) {
  CudaDeviceGuard g(y.device());
  gpu::layernorm(x, w, b, eps, y, mean, rstd);
}

void CudaBackend::layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                                     const Tensor& gy, const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  CudaDeviceGuard g(gx.device());
  gpu::layernorm_backward(x, w, mean, rstd, gy, gx, gw, gb);
}

void CudaBackend::im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) {
  CudaDeviceGuard guard(col.device());
  gpu::im2col(x, col, g);
}

void CudaBackend::col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) {
  CudaDeviceGuard guard(x.device());
  gpu::col2im(col, x, g);
}

void CudaBackend::max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) {
  CudaDeviceGuard guard(y.device());
  gpu::max_pool2d(x, y, indices, g);
}

void CudaBackend::batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  CudaDeviceGuard guard(x.device());
  gpu::batchnorm_stats(x, mean, var);
}

void CudaBackend::channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) {
  CudaDeviceGuard guard(y.device());
  gpu::channel_affine(x, scale, shift, y);
}

void CudaBackend::batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean,
                                     const Tensor& invstd, bool batch_stats, const Tensor& gx, const Tensor& gw,
                                     const Tensor& gb) {
  CudaDeviceGuard guard(x.device());
  gpu::batchnorm_backward(x, gy, w, mean, invstd, batch_stats, gx, gw, gb);
}

void CudaBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  CudaDeviceGuard g(out.device());
  gpu::index_select(x, dim, index, out);
}

void CudaBackend::index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  CudaDeviceGuard g(out.device());
  gpu::index_add(out, dim, index, src);
}

void CudaBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  CudaDeviceGuard g(out.device());
  gpu::gather(x, dim, index, out);
}

void CudaBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  CudaDeviceGuard g(out.device());
  gpu::scatter_add(out, dim, index, src);
}

void CudaBackend::dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) {
  CudaDeviceGuard g(y.device());
  gpu::dropout(x, y, p, seed, offset);
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps,
                                const Tensor& loss, const Tensor& lse) {
  CudaDeviceGuard g(loss.device());
  gpu::cross_entropy(logits, target, ignore_index, eps, loss, lse);
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                         const Tensor& gloss, int64_t ignore_index, double eps,
                                         const Tensor& glogits) {
  CudaDeviceGuard g(glogits.device());
  gpu::cross_entropy_backward(logits, target, lse, gloss, ignore_index, eps, glogits);
}

void CudaBackend::adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) {
  if (slots.empty()) return;
  CudaDeviceGuard g(slots.front().param.device());
  gpu::adamw(slots, beta1, beta2, eps);
}

}  // namespace px

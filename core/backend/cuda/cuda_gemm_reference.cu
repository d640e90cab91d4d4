// The plain GEMM kernel that tests compare gemm_cublaslt against: one thread per output element,
// f64 accumulation, any strides (row-major logical (B, M, K) x (B, K, N) -> (B, M, N)).
#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// c[b, m, n] = alpha * sum_k a[b, m, k] b[b, k, n] + beta * c[b, m, n]  (beta == 0 ignores c's old value).
template <typename T>
__global__ void gemm_reference_kernel(const T* a, int64_t sab, int64_t sam, int64_t sak, const T* b, int64_t sbb,
                                      int64_t sbk, int64_t sbn, T* c, int64_t batches, int64_t m, int64_t n, int64_t k,
                                      double alpha, double beta) {
  const int64_t total = batches * m * n;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e % n, i = (e / n) % m, bi = e / (m * n);
    double acc = 0;
    for (int64_t p = 0; p < k; ++p)
      acc += static_cast<double>(ld(a + bi * sab + i * sam + p * sak)) *
             static_cast<double>(ld(b + bi * sbb + p * sbk + j * sbn));
    const double old = beta == 0.0 ? 0.0 : beta * static_cast<double>(ld(c + e));
    st(c + e, alpha * acc + old);
  }
}

}  // namespace

// ================================ launchers ================================

void gemm_reference(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  check_on_cuda(a, "gemm_reference", "a");
  check_on_cuda(b, "gemm_reference", "b");
  check_contiguous(c, "gemm_reference", "c");
  CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3) << "gemm_reference: needs (B, M, K) x (B, K, N) -> (B, M, N)";
  const int64_t batches = c.size(0), m = c.size(1), n = c.size(2), k = a.size(2);
  CHECK(a.size(0) == batches && a.size(1) == m && b.size(0) == batches && b.size(1) == k && b.size(2) == n)
      << "gemm_reference: shapes " << a.str() << " x " << b.str() << " -> " << c.str();
  CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype()) << "gemm_reference: dtypes differ";
  if (c.numel() == 0) return;
  dispatch_float(c.dtype(), "gemm_reference", [&](auto t) {
    using T = decltype(t);
    gemm_reference_kernel<T><<<blocks_for(c.numel()), kThreads, 0, stream()>>>(
        a.data<T>(), a.stride(0), a.stride(1), a.stride(2), b.data<T>(), b.stride(0), b.stride(1), b.stride(2),
        c.data<T>(), batches, m, n, k, alpha, beta);
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

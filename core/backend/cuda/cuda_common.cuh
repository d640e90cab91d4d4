// Device-side helpers shared by the kernel families: element loads/stores with bf16/f16 conversion,
// strided N-d indexing (up to 8 dims), warp/block reductions, launch sizes and launcher precondition checks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_kernels.h"
#include "core/tensor/tensor.h"
#include "core/util/check.h"

namespace px::gpu {

inline cudaStream_t stream() { return static_cast<cudaStream_t>(current_cuda_stream()); }

// ---- element types: storage type T, math type Acc<T> (f32 for the 16-bit floats) ----

template <typename T> struct AccT { using type = T; };
template <> struct AccT<bf16> { using type = float; };
template <> struct AccT<f16> { using type = float; };
template <> struct AccT<bool> { using type = int; };
template <> struct AccT<uint8_t> { using type = int; };
template <typename T> using Acc = typename AccT<T>::type;

template <typename T>
__device__ __forceinline__ Acc<T> ld(const T* p) { return static_cast<Acc<T>>(*p); }
template <>
__device__ __forceinline__ float ld<bf16>(const bf16* p) {
  return __uint_as_float(static_cast<uint32_t>(p->bits) << 16);
}
template <>
__device__ __forceinline__ float ld<f16>(const f16* p) { return __half2float(__ushort_as_half(p->bits)); }

// Stores v rounded to nearest even for the 16-bit floats, a plain conversion otherwise.
template <typename T, typename V>
__device__ __forceinline__ void st(T* p, V v) { *p = static_cast<T>(v); }
template <typename V>
__device__ __forceinline__ void st(bf16* p, V v) {
  p->bits = __bfloat16_as_ushort(__float2bfloat16_rn(static_cast<float>(v)));
}
template <typename V>
__device__ __forceinline__ void st(f16* p, V v) { p->bits = __half_as_ushort(__float2half_rn(static_cast<float>(v))); }

// Element i of a buffer whose dtype is only known at run time, as double (same conversions as the host).
__device__ __forceinline__ double load_dyn(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::bf16: return ld(static_cast<const bf16*>(p) + i);
    case DType::f16: return ld(static_cast<const f16*>(p) + i);
    case DType::i32: return static_cast<const int32_t*>(p)[i];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::u8: return static_cast<const uint8_t*>(p)[i];
    case DType::boolean: return static_cast<const bool*>(p)[i] ? 1.0 : 0.0;
  }
  return 0.0;
}
// Stores v (double) into element i; the 16-bit floats round through f32 like px::from_double.
__device__ __forceinline__ void store_dyn(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = static_cast<float>(v); return;
    case DType::f64: static_cast<double*>(p)[i] = v; return;
    case DType::bf16: st(static_cast<bf16*>(p) + i, static_cast<float>(v)); return;
    case DType::f16: st(static_cast<f16*>(p) + i, static_cast<float>(v)); return;
    case DType::i32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); return;
    case DType::i64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); return;
    case DType::u8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); return;
    case DType::boolean: static_cast<bool*>(p)[i] = v != 0.0; return;
  }
}

// Math in Acc precision: float overloads use the f32 intrinsics' accurate forms, double the f64 ones.
__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }

// ---- strided N-d indexing ----

constexpr int kMaxDims = 8;

// Sizes and element strides of one operand, passed by value to kernels.
struct Strided {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride[kMaxDims];
};

// Element offset of the row-major linear index i in the strided layout m.
__device__ __forceinline__ int64_t offset_of(const Strided& m, int64_t i) {
  int64_t off = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < m.ndim) {
      const int64_t s = m.size[d];
      off += (i % s) * m.stride[d];
      i /= s;
    }
  }
  return off;
}

// Drops size-1 dims and merges neighbours that are contiguous in every operand, then packs
// each operand's layout; CHECK-fails past kMaxDims. All operands share `shape`.
inline std::vector<Strided> coalesce(const Shape& shape, const std::vector<Shape>& strides, bool merge = true) {
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> st(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && merge) continue;
    const bool can_merge = merge && !sizes.empty() && [&] {
      for (size_t k = 0; k < strides.size(); ++k)
        if (st[k].back() != strides[k][d] * shape[d]) return false;
      return true;
    }();
    if (can_merge) {
      sizes.back() *= shape[d];
      for (size_t k = 0; k < strides.size(); ++k) st[k].back() = strides[k][d];
    } else {
      sizes.push_back(shape[d]);
      for (size_t k = 0; k < strides.size(); ++k) st[k].push_back(strides[k][d]);
    }
  }
  CHECK_LE(sizes.size(), static_cast<size_t>(kMaxDims))
      << "CUDA kernels take at most " << kMaxDims << " non-mergeable dims; got shape " << shape_str(shape);
  std::vector<Strided> out(strides.size());
  for (size_t k = 0; k < strides.size(); ++k) {
    out[k].ndim = static_cast<int>(sizes.size());
    for (size_t d = 0; d < sizes.size(); ++d) {
      out[k].size[d] = sizes[d];
      out[k].stride[d] = st[k][d];
    }
  }
  return out;
}

// True when a layout produced by coalesce() is one unit-stride run (or a scalar).
inline bool is_flat(const Strided& m) { return m.ndim == 0 || (m.ndim == 1 && m.stride[0] == 1); }

// ---- reductions ----

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum / max over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `scratch` holds 32 values; the call ends with a barrier so scratch may be reused.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : T(0);
  v = warp_sum(v);
  __syncthreads();
  return v;
}
template <typename T>
__device__ __forceinline__ T block_max(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : scratch[0];
  v = warp_max(v);
  __syncthreads();
  return v;
}

// Row kernels give each row to a group: a warp (Block = false, several rows per block) or the
// whole block (Block = true). The group's lane and width, its first row and the stride over rows:
template <bool Block>
struct RowGroup {
  int lane, width;
  int64_t first, step;
  __device__ __forceinline__ RowGroup()
      : lane(Block ? threadIdx.x : (threadIdx.x & 31)),
        width(Block ? blockDim.x : 32),
        first(Block ? blockIdx.x : blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5)),
        step(Block ? gridDim.x : static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5)) {}
};
// Sum / max over a row group; every lane gets the result.
template <bool Block, typename A>
__device__ __forceinline__ A group_sum(A v, A* scratch) {
  if constexpr (Block) return block_sum(v, scratch);
  else return warp_sum(v);
}
template <bool Block, typename A>
__device__ __forceinline__ A group_max(A v, A* scratch) {
  if constexpr (Block) return block_max(v, scratch);
  else return warp_max(v);
}

template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -INFINITY; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -static_cast<double>(INFINITY); }

// ---- launch helpers ----

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

// Preconditions shared by the launchers; `what` names the op in the message.
inline void check_on_cuda(const Tensor& t, const char* what, const char* name) {
  CHECK(t.defined()) << what << ": " << name << " is undefined";
  CHECK(t.device().type == DeviceType::cuda) << what << ": " << name << " must be a CUDA tensor; got " << t.str();
}
inline void check_contiguous(const Tensor& t, const char* what, const char* name) {
  check_on_cuda(t, what, name);
  CHECK(t.is_contiguous()) << what << ": " << name << " must be contiguous; got " << t.str() << " strides "
                           << shape_str(t.strides());
}
inline void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  CHECK(a.shape() == b.shape()) << what << ": shapes differ: " << a.str() << " vs " << b.str();
}
inline void check_float(const Tensor& t, const char* what) {
  CHECK(is_floating(t.dtype())) << what << ": needs a floating tensor; got " << t.str();
}

// Calls f(T{}) for the floating dtypes; CHECK-fails for others.
template <typename F>
void dispatch_float(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::bf16: f(bf16{}); return;
    case DType::f16: f(f16{}); return;
    default: LOG(FATAL) << what << ": unsupported dtype " << dtype_name(t) << " on CUDA (f32, f64, bf16, f16 only)";
  }
}

#define PX_CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

}  // namespace px::gpu

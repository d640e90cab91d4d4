// CUDA reductions (sum, max, min, argmax) over the dims where out has size 1: a warp or block per
// output when the reduced elements are contiguous, a thread per output (coalesced) otherwise.
#include <cstdint>
#include <limits>

#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// Accumulator type: f32 for the float types below f64, f64 for f64, i64 for the integers.
template <typename T> struct RAccT { using type = Acc<T>; };
template <> struct RAccT<int32_t> { using type = int64_t; };
template <typename T> using RAcc = typename RAccT<T>::type;

constexpr int64_t kNoIndex = INT64_MAX;  // index of the initial value: loses every argmax tie

// Running value and (for argmax) the index of the reduced element it came from.
template <typename A>
struct State {
  A v;
  int64_t i;
};

// Merge two partial results: sum adds; max/min keep the extreme (NaN wins); argmax keeps the
// larger value and, on ties, the smaller index (first occurrence, like torch).
template <typename A>
__device__ __forceinline__ State<A> combine(ReduceOp op, State<A> s, State<A> o) {
  switch (op) {
    case ReduceOp::sum: return {s.v + o.v, 0};
    case ReduceOp::max: return (o.v != o.v || o.v > s.v) ? o : s;
    case ReduceOp::min: return (o.v != o.v || o.v < s.v) ? o : s;
    case ReduceOp::argmax:
      if (s.v != s.v) return (o.v != o.v && o.i < s.i) ? o : s;
      if (o.v != o.v || o.v > s.v || (o.v == s.v && o.i < s.i)) return o;
      return s;
  }
  return s;
}

template <typename A>
__device__ __forceinline__ State<A> warp_combine(ReduceOp op, State<A> s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    State<A> other{__shfl_xor_sync(0xffffffffu, s.v, o), __shfl_xor_sync(0xffffffffu, s.i, o)};
    s = combine(op, s, other);
  }
  return s;
}

template <typename T>
__device__ __forceinline__ void write_result(ReduceOp op, void* out, int64_t o, State<RAcc<T>> s) {
  if (op == ReduceOp::argmax) static_cast<int64_t*>(out)[o] = s.i;
  else st(static_cast<T*>(out) + o, s.v);
}

// out_o = reduce_r x[keep(o) + red(r)], one warp per output o (warps grid-stride over outputs).
template <typename T>
__global__ void reduce_warp_kernel(ReduceOp op, const T* x, Strided keep, Strided red, int64_t nout, int64_t nred,
                                   RAcc<T> init, void* out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5); o < nout; o += warps) {
    const T* xo = x + offset_of(keep, o);
    State<RAcc<T>> s{init, kNoIndex};
    for (int64_t r = lane; r < nred; r += 32) s = combine(op, s, State<RAcc<T>>{ld(xo + offset_of(red, r)), r});
    s = warp_combine(op, s);
    if (lane == 0) write_result<T>(op, out, o, s);
  }
}

// out_o = reduce_r x[keep(o) + red(r)], one block per output (for few, long reductions).
template <typename T>
__global__ void reduce_block_kernel(ReduceOp op, const T* x, Strided keep, Strided red, int64_t nout, int64_t nred,
                                    RAcc<T> init, void* out) {
  __shared__ RAcc<T> sv[32];
  __shared__ int64_t si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
    const T* xo = x + offset_of(keep, o);
    State<RAcc<T>> s{init, kNoIndex};
    for (int64_t r = threadIdx.x; r < nred; r += blockDim.x)
      s = combine(op, s, State<RAcc<T>>{ld(xo + offset_of(red, r)), r});
    s = warp_combine(op, s);
    if (lane == 0) {
      sv[warp] = s.v;
      si[warp] = s.i;
    }
    __syncthreads();
    if (warp == 0) {
      s = lane < nwarps ? State<RAcc<T>>{sv[lane], si[lane]} : State<RAcc<T>>{init, kNoIndex};
      s = warp_combine(op, s);
      if (lane == 0) write_result<T>(op, out, o, s);
    }
    __syncthreads();
  }
}

// out_o = reduce_r x[keep(o) + red(r)] with threadIdx.x over 32 neighbouring outputs (coalesced when the
// kept dims are innermost) and threadIdx.y splitting r; partials merged in shared memory.
template <typename T>
__global__ void reduce_cols_kernel(ReduceOp op, const T* x, Strided keep, Strided red, int64_t nout, int64_t nred,
                                   RAcc<T> init, void* out) {
  __shared__ RAcc<T> sv[32][33];
  __shared__ int64_t si[32][33];
  const int64_t o = blockIdx.x * 32 + threadIdx.x;
  State<RAcc<T>> s{init, kNoIndex};
  if (o < nout) {
    const T* xo = x + offset_of(keep, o);
    for (int64_t r = threadIdx.y; r < nred; r += blockDim.y)
      s = combine(op, s, State<RAcc<T>>{ld(xo + offset_of(red, r)), r});
  }
  sv[threadIdx.y][threadIdx.x] = s.v;
  si[threadIdx.y][threadIdx.x] = s.i;
  __syncthreads();
  if (threadIdx.y == 0 && o < nout) {
    for (unsigned k = 1; k < blockDim.y; ++k) s = combine(op, s, State<RAcc<T>>{sv[k][threadIdx.x], si[k][threadIdx.x]});
    write_result<T>(op, out, o, s);
  }
}

// Reference: out_o = reduce_r x[keep(o) + red(r)], one thread per output, r in order.
template <typename T>
__global__ void reduce_reference_kernel(ReduceOp op, const T* x, Strided keep, Strided red, int64_t nout,
                                        int64_t nred, RAcc<T> init, void* out) {
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (o >= nout) return;
  const T* xo = x + offset_of(keep, o);
  State<RAcc<T>> s{init, kNoIndex};
  for (int64_t r = 0; r < nred; ++r) s = combine(op, s, State<RAcc<T>>{ld(xo + offset_of(red, r)), r});
  write_result<T>(op, out, o, s);
}

// ================================ launchers ================================

template <typename A>
A init_for(ReduceOp op) {
  if (op == ReduceOp::sum) return A(0);
  if constexpr (std::numeric_limits<A>::has_infinity) {
    return op == ReduceOp::min ? std::numeric_limits<A>::infinity() : -std::numeric_limits<A>::infinity();
  } else {
    return op == ReduceOp::min ? std::numeric_limits<A>::max() : std::numeric_limits<A>::lowest();
  }
}

int sm_count() {
  int dev = 0, n = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, const Tensor& out, Impl impl) {
  check_on_cuda(x, "reduce", "x");
  check_contiguous(out, "reduce", "out");
  CHECK_EQ(x.dim(), out.dim()) << "reduce: out keeps x's ndim; got " << x.str() << " -> " << out.str();
  Shape keep_shape, keep_strides, red_shape, red_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (out.size(d) == x.size(d)) {
      keep_shape.push_back(x.size(d));
      keep_strides.push_back(x.stride(d));
    } else {
      CHECK_EQ(out.size(d), 1) << "reduce: out dim " << d << " must be 1 or x's size; got " << x.str() << " -> "
                               << out.str();
      red_shape.push_back(x.size(d));
      red_strides.push_back(x.stride(d));
    }
  }
  if (op == ReduceOp::argmax) {
    CHECK_LE(red_shape.size(), 1u) << "reduce: argmax needs exactly one reduced dim; got " << x.str() << " -> "
                                   << out.str();
    CHECK(out.dtype() == DType::i64) << "reduce: argmax writes i64; got " << out.str();
  } else {
    CHECK(out.dtype() == x.dtype()) << "reduce: out dtype must match x; got " << x.str() << " -> " << out.str();
  }
  const int64_t nout = out.numel(), nred = shape_numel(red_shape);
  if (nout == 0) return;
  CHECK(nred > 0 || op == ReduceOp::sum) << "reduce: max/min/argmax over an empty dim of " << x.str();
  const bool merge = impl == Impl::fast;
  const Strided keep = coalesce(keep_shape, {keep_strides}, merge)[0];
  const Strided red = coalesce(red_shape, {red_strides}, merge)[0];

  auto launch = [&](auto t) {
    using T = decltype(t);
    const RAcc<T> init = init_for<RAcc<T>>(op);
    const T* px = static_cast<const T*>(x.raw_data());
    void* po = out.raw_data();
    if (impl == Impl::reference) {
      reduce_reference_kernel<T><<<blocks_for(nout), kThreads, 0, stream()>>>(op, px, keep, red, nout, nred, init, po);
      return;
    }
    const bool inner = red.ndim == 0 || red.stride[red.ndim - 1] == 1;
    if (!inner) {
      const int ty = nred >= 32 ? 32 : (nred >= 8 ? 8 : 1);
      const dim3 block(32, ty);
      const unsigned grid = static_cast<unsigned>((nout + 31) / 32);
      reduce_cols_kernel<T><<<grid, block, 0, stream()>>>(op, px, keep, red, nout, nred, init, po);
    } else if (nout < 2 * static_cast<int64_t>(sm_count()) && nred >= 4096) {
      reduce_block_kernel<T><<<static_cast<unsigned>(nout), 1024, 0, stream()>>>(op, px, keep, red, nout, nred, init,
                                                                                  po);
    } else {
      const int warps_per_block = kThreads / 32;
      reduce_warp_kernel<T><<<blocks_for(nout, warps_per_block), kThreads, 0, stream()>>>(op, px, keep, red, nout,
                                                                                           nred, init, po);
    }
  };
  switch (x.dtype()) {
    case DType::f32: launch(float{}); break;
    case DType::f64: launch(double{}); break;
    case DType::bf16: launch(bf16{}); break;
    case DType::f16: launch(f16{}); break;
    case DType::i32: launch(int32_t{}); break;
    case DType::i64: launch(int64_t{}); break;
    default: LOG(FATAL) << "reduce: unsupported dtype on CUDA: " << x.str();
  }
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

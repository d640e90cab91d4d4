// CUDA indexing kernels: index_select and gather (bit copies); index_add and scatter_add as deterministic segmented
// sums (sort the destinations, add each one's sources in source order), with the atomicAdd kernels kept to measure.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>

#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// *p += v atomically, in T's own precision (bf16/f16 via the native sm_80/sm_70 atomics).
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(bf16* p, float v) {
  atomicAdd(reinterpret_cast<__nv_bfloat16*>(p), __float2bfloat16_rn(v));
}
__device__ __forceinline__ void atomic_add(f16* p, float v) {
  atomicAdd(reinterpret_cast<__half*>(p), __float2half_rn(v));
}
__device__ __forceinline__ void atomic_add(int32_t* p, int32_t v) { atomicAdd(reinterpret_cast<int*>(p), v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}

// out[o, l, :] = x[o, index[l], :] for x (O, D, I), out (O, L, I): a block copies whole rows.
template <typename W>
__global__ void index_select_rows_kernel(const W* x, const int64_t* index, W* out, int64_t outer, int64_t d,
                                         int64_t l, int64_t inner) {
  for (int64_t row = blockIdx.x; row < outer * l; row += gridDim.x) {
    const W* src = x + ((row / l) * d + index[row % l]) * inner;
    W* dst = out + row * inner;
    for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) dst[i] = src[i];
  }
}

// Reference (and small-inner path): out[o, l, i] = x[o, index[l], i], one thread per element.
template <typename W>
__global__ void index_select_elems_kernel(const W* x, const int64_t* index, W* out, int64_t outer, int64_t d,
                                          int64_t l, int64_t inner) {
  const int64_t n = outer * l * inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % inner, li = (e / inner) % l, o = e / (inner * l);
    out[e] = x[(o * d + index[li]) * inner + i];
  }
}

// out[o, index[l], i] += src[o, l, i] for out (O, D, I), src (O, L, I): one thread per src element.
template <typename T>
__global__ void index_add_kernel(T* out, const int64_t* index, const T* src, int64_t outer, int64_t d, int64_t l,
                                 int64_t inner) {
  const int64_t n = outer * l * inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % inner, li = (e / inner) % l, o = e / (inner * l);
    atomic_add(out + (o * d + index[li]) * inner + i, ld(src + e));
  }
}

// Reference: the same sum by one thread in element order (deterministic).
template <typename T>
__global__ void index_add_reference_kernel(T* out, const int64_t* index, const T* src, int64_t outer, int64_t d,
                                           int64_t l, int64_t inner) {
  for (int64_t e = 0; e < outer * l * inner; ++e) {
    const int64_t i = e % inner, li = (e / inner) % l, o = e / (inner * l);
    T* p = out + (o * d + index[li]) * inner + i;
    st(p, ld(p) + ld(src + e));
  }
}

// Offset in `other` (strides `m.stride`) of the element at out/src linear index e (shape `m.size`),
// with the coordinate along `dim` replaced by `idx`.
__device__ __forceinline__ int64_t offset_with(const Strided& m, int dim, int64_t e, int64_t idx) {
  int64_t off = 0;
  for (int k = m.ndim - 1; k >= 0; --k) {
    const int64_t c = e % m.size[k];
    e /= m.size[k];
    off += (k == dim ? idx : c) * m.stride[k];
  }
  return off;
}

// out[p] = x[p with p_dim = index[p]] for index/out of shape m.size and x strides m.stride.
template <typename W>
__global__ void gather_kernel(const W* x, Strided m, int dim, const int64_t* index, W* out, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[e] = x[offset_with(m, dim, e, index[e])];
}

// Fast gather when x and out agree outside dim: out[o, j, i] = x[o, index[o, j, i], i], x (O, D, I), out (O, L, I).
template <typename W>
__global__ void gather_3d_kernel(const W* x, const int64_t* index, W* out, int64_t d, int64_t l, int64_t inner,
                                 int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % inner, o = e / (inner * l);
    out[e] = x[(o * d + index[e]) * inner + i];
  }
}

// out[p with p_dim = index[p]] += src[p] for index/src of shape m.size and out strides m.stride.
template <typename T>
__global__ void scatter_add_kernel(T* out, Strided m, int dim, const int64_t* index, const T* src, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    atomic_add(out + offset_with(m, dim, e, index[e]), ld(src + e));
}

// Reference: the same sum by one thread in element order (deterministic).
template <typename T>
__global__ void scatter_add_reference_kernel(T* out, Strided m, int dim, const int64_t* index, const T* src,
                                             int64_t n) {
  for (int64_t e = 0; e < n; ++e) {
    T* p = out + offset_with(m, dim, e, index[e]);
    st(p, ld(p) + ld(src + e));
  }
}

// ---- deterministic segmented sums: dst[key[j]] += src[pos[j]] over the sorted (key, pos) pairs ----
// A stable sort of the destinations puts equal keys in one segment, in source order. A piece is a segment's run
// inside one chunk of kChunk sorted positions: the piece sums go to partial[j] (j its first position), then each
// segment adds its pieces in order. Every sum has one fixed order, whatever the scheduling: bit-reproducible.
constexpr int64_t kChunk = 32;

// pos[j] = j.
__global__ void iota_kernel(int64_t* pos, int64_t n) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    pos[j] = j;
}

// key[e] = offset in out (strides m.stride) of scatter_add's destination for src element e (shape m.size).
__global__ void scatter_keys_kernel(Strided m, int dim, const int64_t* index, uint64_t* key, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    key[e] = static_cast<uint64_t>(offset_with(m, dim, e, index[e]));
}

// Groups of `group` threads take one sorted position j each and share the row's `width` columns; blockIdx.y
// walks the outer dim o. src (O, N, W) and partial (O, N, W) hold rows in source / sorted position order.
// partial[o, j, :] = sum of src[o, pos[k], :] over the piece starting at j (k in source order).
template <typename T, typename A>
__global__ void piece_sums_kernel(const uint64_t* key, const int64_t* pos, const T* src, A* partial, int64_t outer,
                                  int64_t n, int64_t width, int group) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x / group) + threadIdx.x / group;
  if (j >= n || (j % kChunk != 0 && key[j] == key[j - 1])) return;
  const int64_t end = min(n, (j / kChunk + 1) * kChunk);
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y)
    for (int64_t i = threadIdx.x % group; i < width; i += group) {
      A s = A(0);
      for (int64_t k = j; k < end && key[k] == key[j]; ++k) s += ld(src + (o * n + pos[k]) * width + i);
      partial[(o * n + j) * width + i] = s;
    }
}

// out[o, key[j], :] += the segment's piece sums in order, for j the first sorted position of a segment;
// out (O, D, W).
template <typename T, typename A>
__global__ void segment_totals_kernel(const uint64_t* key, const A* partial, T* out, int64_t outer, int64_t n,
                                      int64_t d, int64_t width, int group) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x / group) + threadIdx.x / group;
  if (j >= n || (j > 0 && key[j] == key[j - 1])) return;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y)
    for (int64_t i = threadIdx.x % group; i < width; i += group) {
      A s = partial[(o * n + j) * width + i];
      for (int64_t k = (j / kChunk + 1) * kChunk; k < n && key[k] == key[j]; k += kChunk)
        s += partial[(o * n + k) * width + i];
      T* p = out + (o * d + static_cast<int64_t>(key[j])) * width + i;
      st(p, ld(p) + s);
    }
}

// ================================ launchers ================================

template <typename F>
void dispatch_width(DType t, F&& f) {
  switch (dtype_size(t)) {
    case 1: f(uint8_t{}); return;
    case 2: f(uint16_t{}); return;
    case 4: f(uint32_t{}); return;
    default: f(uint64_t{}); return;
  }
}

// The dtypes index_add and scatter_add support (those the atomics do).
template <typename F>
void dispatch_add(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::bf16: f(bf16{}); return;
    case DType::f16: f(f16{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::i64: f(int64_t{}); return;
    default: LOG(FATAL) << what << ": unsupported dtype on CUDA: " << dtype_name(t);
  }
}

// Splits a contiguous tensor's shape around dim into (outer, size(dim), inner).
void split3(const Tensor& t, int64_t dim, int64_t* outer, int64_t* mid, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int64_t k = 0; k < dim; ++k) *outer *= t.size(k);
  for (int64_t k = dim + 1; k < t.dim(); ++k) *inner *= t.size(k);
  *mid = t.size(dim);
}

void check_index(const Tensor& index, const char* what) {
  check_contiguous(index, what, "index");
  CHECK(index.dtype() == DType::i64) << what << ": index must be i64; got " << index.str();
}

// Checks that a and b agree on every dim but dim.
void check_outside_dim(const Tensor& a, const Tensor& b, int64_t dim, const char* what) {
  CHECK_EQ(a.dim(), b.dim()) << what << ": ndims differ: " << a.str() << " vs " << b.str();
  for (int64_t k = 0; k < a.dim(); ++k)
    CHECK(k == dim || a.size(k) == b.size(k)) << what << ": sizes differ outside dim " << dim << ": " << a.str()
                                              << " vs " << b.str();
}

Strided shape_with_strides(const Shape& shape, const Shape& strides, const char* what) {
  CHECK_LE(shape.size(), static_cast<size_t>(kMaxDims)) << what << ": at most " << kMaxDims << " dims on CUDA";
  Strided m;
  m.ndim = static_cast<int>(shape.size());
  for (size_t k = 0; k < shape.size(); ++k) {
    m.size[k] = shape[k];
    m.stride[k] = strides[k];
  }
  return m;
}

// Device scratch of `bytes` (freed when the returned tensor goes, stream-ordered by the caching allocator).
Tensor scratch(int64_t bytes, const Device& device) { return Tensor::empty({bytes}, DType::u8, device); }

// The bits a key below `bound` needs (at least 1), so the radix sort makes no more passes than that.
int key_bits(int64_t bound) {
  int bits = 1;
  while (bits < 64 && (uint64_t{1} << bits) < static_cast<uint64_t>(bound)) ++bits;
  return bits;
}

// out (O, D, W) += src (O, N, W) with src row k going to out row key[k] (every key < D): the segmented sum above.
template <typename T>
void segmented_add(T* out, const uint64_t* key, const T* src, int64_t outer, int64_t n, int64_t d, int64_t width,
                   const Device& device) {
  using A = Acc<T>;
  const Tensor pos = scratch(n * 8, device), sorted_key = scratch(n * 8, device), sorted_pos = scratch(n * 8, device);
  const auto p64 = [](const Tensor& t) { return static_cast<int64_t*>(t.raw_data()); };
  iota_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(p64(pos), n);
  size_t bytes = 0;
  uint64_t* keys_out = reinterpret_cast<uint64_t*>(p64(sorted_key));
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, key, keys_out, p64(pos), p64(sorted_pos), n, 0,
                                             key_bits(d), stream()));
  const Tensor temp = scratch(static_cast<int64_t>(bytes), device);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), bytes, key, keys_out, p64(pos), p64(sorted_pos), n, 0,
                                             key_bits(d), stream()));
  const Tensor partial = scratch(outer * n * width * static_cast<int64_t>(sizeof(A)), device);
  A* pa = static_cast<A*>(partial.raw_data());
  int group = 1;
  while (group < kThreads && group < width) group *= 2;
  const dim3 grid(blocks_for(n, kThreads / group), static_cast<unsigned>(std::min<int64_t>(outer, 65535)));
  piece_sums_kernel<T, A><<<grid, kThreads, 0, stream()>>>(keys_out, p64(sorted_pos), src, pa, outer, n, width, group);
  segment_totals_kernel<T, A><<<grid, kThreads, 0, stream()>>>(keys_out, pa, out, outer, n, d, width, group);
}

}  // namespace

void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out, Impl impl) {
  check_contiguous(x, "index_select", "x");
  check_contiguous(out, "index_select", "out");
  check_index(index, "index_select");
  dim = wrap_dim(dim, x.dim());
  check_outside_dim(x, out, dim, "index_select");
  CHECK(out.size(dim) == index.numel() && x.dtype() == out.dtype())
      << "index_select: out " << out.str() << " must have index's length along dim " << dim << " and x's dtype";
  int64_t outer, d, inner, l = index.numel();
  split3(x, dim, &outer, &d, &inner);
  if (out.numel() == 0) return;
  dispatch_width(x.dtype(), [&](auto w) {
    using W = decltype(w);
    const W* px = static_cast<const W*>(x.raw_data());
    W* po = static_cast<W*>(out.raw_data());
    if (impl == Impl::fast && inner >= 32)
      index_select_rows_kernel<W><<<blocks_for(outer * l, 1), inner >= 256 ? 256 : 64, 0, stream()>>>(
          px, index.data<int64_t>(), po, outer, d, l, inner);
    else
      index_select_elems_kernel<W><<<blocks_for(out.numel()), kThreads, 0, stream()>>>(px, index.data<int64_t>(),
                                                                                         po, outer, d, l, inner);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src, Impl impl) {
  check_contiguous(out, "index_add", "out");
  check_contiguous(src, "index_add", "src");
  check_index(index, "index_add");
  dim = wrap_dim(dim, out.dim());
  check_outside_dim(out, src, dim, "index_add");
  CHECK(src.size(dim) == index.numel() && src.dtype() == out.dtype())
      << "index_add: src " << src.str() << " must have index's length along dim " << dim << " and out's dtype";
  int64_t outer, d, inner, l = index.numel();
  split3(out, dim, &outer, &d, &inner);
  if (src.numel() == 0) return;
  dispatch_add(out.dtype(), "index_add", [&](auto t) {
    using T = decltype(t);
    if (impl == Impl::reference)
      index_add_reference_kernel<T><<<1, 1, 0, stream()>>>(out.data<T>(), index.data<int64_t>(), src.data<T>(), outer,
                                                           d, l, inner);
    else if (impl == Impl::atomic)
      index_add_kernel<T><<<blocks_for(src.numel()), kThreads, 0, stream()>>>(out.data<T>(), index.data<int64_t>(),
                                                                              src.data<T>(), outer, d, l, inner);
    else  // indices in [0, D), the contract of every index kernel: as u64 they sort in the same order
      segmented_add(out.data<T>(), reinterpret_cast<const uint64_t*>(index.data<int64_t>()), src.data<T>(), outer, l,
                    d, inner, out.device());
  });
  PX_CUDA_LAUNCH_CHECK();
}

void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out, Impl impl) {
  check_contiguous(x, "gather", "x");
  check_contiguous(out, "gather", "out");
  check_index(index, "gather");
  dim = wrap_dim(dim, x.dim());
  CHECK(index.shape() == out.shape() && x.dim() == out.dim() && x.dtype() == out.dtype())
      << "gather: index " << index.str() << " must have out's shape " << out.str() << ", out x's ndim and dtype";
  const int64_t n = out.numel();
  if (n == 0) return;
  bool same_outside = true;
  for (int64_t k = 0; k < x.dim(); ++k) same_outside = same_outside && (k == dim || x.size(k) == out.size(k));
  dispatch_width(x.dtype(), [&](auto w) {
    using W = decltype(w);
    const W* px = static_cast<const W*>(x.raw_data());
    W* po = static_cast<W*>(out.raw_data());
    if (impl == Impl::fast && same_outside) {
      int64_t outer, d, inner;
      split3(x, dim, &outer, &d, &inner);
      gather_3d_kernel<W><<<blocks_for(n), kThreads, 0, stream()>>>(px, index.data<int64_t>(), po, d, out.size(dim),
                                                                    inner, n);
    } else {
      const Strided m = shape_with_strides(out.shape(), x.strides(), "gather");
      gather_kernel<W><<<blocks_for(n), kThreads, 0, stream()>>>(px, m, static_cast<int>(dim), index.data<int64_t>(),
                                                                 po, n);
    }
  });
  PX_CUDA_LAUNCH_CHECK();
}

void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src, Impl impl) {
  check_contiguous(out, "scatter_add", "out");
  check_contiguous(src, "scatter_add", "src");
  check_index(index, "scatter_add");
  dim = wrap_dim(dim, out.dim());
  CHECK(index.shape() == src.shape() && src.dim() == out.dim() && src.dtype() == out.dtype())
      << "scatter_add: index " << index.str() << " must have src's shape " << src.str()
      << ", src out's ndim and dtype (" << out.str() << ")";
  const int64_t n = src.numel();
  if (n == 0) return;
  const Strided m = shape_with_strides(src.shape(), out.strides(), "scatter_add");
  dispatch_add(out.dtype(), "scatter_add", [&](auto t) {
    using T = decltype(t);
    if (impl == Impl::reference) {
      scatter_add_reference_kernel<T><<<1, 1, 0, stream()>>>(out.data<T>(), m, static_cast<int>(dim),
                                                             index.data<int64_t>(), src.data<T>(), n);
    } else if (impl == Impl::atomic) {
      scatter_add_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(out.data<T>(), m, static_cast<int>(dim),
                                                                      index.data<int64_t>(), src.data<T>(), n);
    } else {  // the destination offsets as keys, one element per row
      const Tensor key = scratch(n * 8, out.device());
      uint64_t* pk = static_cast<uint64_t*>(key.raw_data());
      scatter_keys_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(m, static_cast<int>(dim), index.data<int64_t>(),
                                                                    pk, n);
      segmented_add(out.data<T>(), pk, src.data<T>(), 1, n, out.numel(), 1, out.device());
    }
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

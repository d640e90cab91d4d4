// CPU index kernels: index_select / index_add along one dim and gather / scatter_add.
// Accumulating kernels split work over the non-indexed dims only, so no two threads add to one element.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/backend/cpu/cpu_loops.h"

namespace px {
namespace {

using cpu_kernels::parallel_for;

// Sizes of a tensor around `dim`: (outer, D, inner).
struct Split3 {
  int64_t outer = 1, mid = 1, inner = 1;
};
Split3 split_at(const Shape& shape, int64_t dim) {
  Split3 s;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim) s.outer *= shape[d];
    else if (d == dim) s.mid = shape[d];
    else s.inner *= shape[d];
  }
  return s;
}

// Calls f(U{}) with U an unsigned integer type of the element size (copying kernels are dtype-blind).
template <typename F>
void dispatch_bytes(DType t, F&& f) {
  switch (dtype_size(t)) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    case 8: return f(uint64_t{});
  }
  LOG(FATAL) << "index kernel: unexpected element size " << dtype_size(t);
}

// Calls f(T{}) for the dtypes that accumulate: f32, f64, i32, i64.
template <typename F>
void dispatch_accumulate(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    default:
      LOG(FATAL) << "op " << op << ": dtype " << dtype_name(t) << " not supported on the CPU; convert to f32";
  }
}

// Element offsets into a contiguous tensor `of` for the positions of `shape` over dims [lo, hi)
// in row-major order: offsets[i] = sum_d coord_d(i) * stride_d(of).
std::vector<int64_t> dim_offsets(const Shape& shape, const Tensor& of, int64_t lo, int64_t hi) {
  std::vector<int64_t> offs{0};
  for (int64_t d = lo; d < hi; ++d) {
    std::vector<int64_t> next;
    next.reserve(offs.size() * shape[d]);
    for (int64_t base : offs)
      for (int64_t k = 0; k < shape[d]; ++k) next.push_back(base + k * of.stride(d));
    offs.swap(next);
  }
  return offs;
}

void check_index(const char* op, const Tensor& index) {
  CHECK(index.dtype() == DType::i64 && index.is_contiguous()) << op << ": index must be contiguous i64, got "
                                                               << index.str();
}

// Shared set-up of gather / scatter_add: positions of `shape` (outer, L, inner) mapped into `big`.
struct GatherPlan {
  Split3 s;
  std::vector<int64_t> outer_off, inner_off;
  int64_t dim_stride = 1, dim_size = 1;
  GatherPlan(const Shape& shape, const Tensor& big, int64_t dim) : s(split_at(shape, dim)) {
    CHECK_EQ(static_cast<int64_t>(shape.size()), big.dim()) << "gather/scatter: ndim of index vs " << big.str();
    for (int64_t d = 0; d < big.dim(); ++d)
      CHECK(d == dim || shape[d] <= big.size(d)) << "gather/scatter: index shape " << shape_str(shape)
                                                 << " exceeds " << big.str() << " in dim " << d;
    outer_off = dim_offsets(shape, big, 0, dim);
    inner_off = dim_offsets(shape, big, dim + 1, big.dim());
    dim_stride = big.stride(dim);
    dim_size = big.size(dim);
  }
};

}  // namespace

// out[o, l, i] = x[o, index[l], i] viewing x as (outer, D, inner), out as (outer, L, inner).
void CpuBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  dim = wrap_dim(dim, std::max<int64_t>(x.dim(), 1));
  check_index("index_select", index);
  CHECK(x.is_contiguous() && out.is_contiguous() && x.dtype() == out.dtype())
      << "index_select: x " << x.str() << " and out " << out.str() << " must be contiguous, one dtype";
  const Split3 xs = split_at(x.shape(), dim);
  const int64_t len = index.numel();
  CHECK_EQ(out.numel(), xs.outer * len * xs.inner) << "index_select: out " << out.str() << " for x " << x.str();
  const int64_t* idx = index.data<int64_t>();
  dispatch_bytes(x.dtype(), [&](auto u) {
    using U = decltype(u);
    const U* src = static_cast<const U*>(x.raw_data());
    U* dst = static_cast<U*>(out.raw_data());
    parallel_for(xs.outer * len, xs.inner, [&](int64_t b, int64_t e) {
      for (int64_t ol = b; ol < e; ++ol) {
        const int64_t o = ol / len, k = idx[ol % len];
        DCHECK(k >= 0 && k < xs.mid) << "index_select: index " << k << " outside [0, " << xs.mid << ")";
        std::memcpy(dst + ol * xs.inner, src + (o * xs.mid + k) * xs.inner, xs.inner * sizeof(U));
      }
    });
  });
}

// out[o, index[l], i] += src[o, l, i]; tasks own (o, block of i), each walking every l in order.
void CpuBackend::index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (F32Stage::any_half({&out, &src})) {  // accumulates in f32
    F32Stage s;
    index_add(s.inout(out), dim, index, s.in(src));
    return s.finish();
  }
  dim = wrap_dim(dim, std::max<int64_t>(out.dim(), 1));
  check_index("index_add", index);
  CHECK(out.is_contiguous() && src.is_contiguous() && out.dtype() == src.dtype())
      << "index_add: out " << out.str() << " and src " << src.str() << " must be contiguous, one dtype";
  const Split3 os = split_at(out.shape(), dim);
  const int64_t len = index.numel();
  CHECK_EQ(src.numel(), os.outer * len * os.inner) << "index_add: src " << src.str() << " for out " << out.str();
  const int64_t* idx = index.data<int64_t>();
  constexpr int64_t kBlock = 512;
  const int64_t blocks = (os.inner + kBlock - 1) / kBlock;
  dispatch_accumulate(out.dtype(), "index_add", [&](auto t) {
    using T = decltype(t);
    T* o_data = out.data<T>();
    const T* s_data = src.data<T>();
    parallel_for(os.outer * blocks, len * std::min(kBlock, os.inner), [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; ++task) {
        const int64_t o = task / blocks, i0 = (task % blocks) * kBlock, n = std::min(kBlock, os.inner - i0);
        for (int64_t l = 0; l < len; ++l) {
          const int64_t k = idx[l];
          DCHECK(k >= 0 && k < os.mid) << "index_add: index " << k << " outside [0, " << os.mid << ")";
          T* dst = o_data + (o * os.mid + k) * os.inner + i0;
          const T* s = s_data + (o * len + l) * os.inner + i0;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) dst[i] += s[i];
        }
      }
    });
  });
}

// out[p] = x[p with coordinate dim replaced by index[p]]; index and out share a shape.
void CpuBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  dim = wrap_dim(dim, std::max<int64_t>(x.dim(), 1));
  check_index("gather", index);
  CHECK(index.shape() == out.shape()) << "gather: index " << index.str() << " vs out " << out.str();
  CHECK(x.is_contiguous() && out.is_contiguous() && x.dtype() == out.dtype())
      << "gather: x " << x.str() << " and out " << out.str() << " must be contiguous, one dtype";
  if (out.numel() == 0) return;
  const GatherPlan plan(out.shape(), x, dim);
  const int64_t* idx = index.data<int64_t>();
  const int64_t len = plan.s.mid, inner = plan.s.inner;
  dispatch_bytes(x.dtype(), [&](auto u) {
    using U = decltype(u);
    const U* src = static_cast<const U*>(x.raw_data());
    U* dst = static_cast<U*>(out.raw_data());
    parallel_for(plan.s.outer * len, inner, [&](int64_t b, int64_t e) {
      for (int64_t ol = b; ol < e; ++ol) {
        const U* base = src + plan.outer_off[ol / len];
        const int64_t* ir = idx + ol * inner;
        U* dr = dst + ol * inner;
        for (int64_t i = 0; i < inner; ++i) {
          DCHECK(ir[i] >= 0 && ir[i] < plan.dim_size) << "gather: index " << ir[i] << " out of range";
          dr[i] = base[ir[i] * plan.dim_stride + plan.inner_off[i]];
        }
      }
    });
  });
}

// out[p with coordinate dim replaced by index[p]] += src[p]; tasks own (outer o, block of inner).
void CpuBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (F32Stage::any_half({&out, &src})) {  // accumulates in f32
    F32Stage s;
    scatter_add(s.inout(out), dim, index, s.in(src));
    return s.finish();
  }
  dim = wrap_dim(dim, std::max<int64_t>(out.dim(), 1));
  check_index("scatter_add", index);
  CHECK(index.shape() == src.shape()) << "scatter_add: index " << index.str() << " vs src " << src.str();
  CHECK(out.is_contiguous() && src.is_contiguous() && out.dtype() == src.dtype())
      << "scatter_add: out " << out.str() << " and src " << src.str() << " must be contiguous, one dtype";
  if (src.numel() == 0) return;
  const GatherPlan plan(src.shape(), out, dim);
  const int64_t* idx = index.data<int64_t>();
  const int64_t len = plan.s.mid, inner = plan.s.inner;
  constexpr int64_t kBlock = 512;
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  dispatch_accumulate(out.dtype(), "scatter_add", [&](auto t) {
    using T = decltype(t);
    T* o_data = out.data<T>();
    const T* s_data = src.data<T>();
    parallel_for(plan.s.outer * blocks, len * std::min(kBlock, inner), [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; ++task) {
        const int64_t o = task / blocks, i0 = (task % blocks) * kBlock, n = std::min(kBlock, inner - i0);
        T* base = o_data + plan.outer_off[o];
        for (int64_t l = 0; l < len; ++l) {
          const int64_t row = (o * len + l) * inner + i0;
          const int64_t* ir = idx + row;
          const T* s = s_data + row;
          for (int64_t i = 0; i < n; ++i) {
            DCHECK(ir[i] >= 0 && ir[i] < plan.dim_size) << "scatter_add: index " << ir[i] << " out of range";
            base[ir[i] * plan.dim_stride + plan.inner_off[i0 + i]] += s[i];
          }
        }
      }
    });
  });
}

}  // namespace px

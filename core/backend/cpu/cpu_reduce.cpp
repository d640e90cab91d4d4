// CPU reductions (sum, max, min, argmax) over the dims where out has size 1 and x does not:
// a contiguous-row fast path, a column (prefix) fast path for bias-gradient sums, and a generic loop.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/backend/cpu/cpu_loops.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::parallel_for;

// Dims of one group (kept or reduced), coalesced; strides in elements.
struct DimGroup {
  std::vector<int64_t> size, stride;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : size) n *= s;
    return n;
  }
  void add(int64_t sz, int64_t st) {
    if (sz == 1) return;
    if (!size.empty() && stride.back() == st * sz) {  // merge into the previous (outer) dim
      size.back() *= sz;
      stride.back() = st;
      return;
    }
    size.push_back(sz);
    stride.push_back(st);
  }
  // Element offset of linear index i (row-major over the group).
  int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int64_t d = static_cast<int64_t>(size.size()) - 1; d >= 0; --d) {
      off += (i % size[d]) * stride[d];
      i /= size[d];
    }
    return off;
  }
};

// The accumulator: double for floats, int64 for integers.
template <typename T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

template <typename T>
struct SumOp {
  using A = Acc<T>;
  static A init() { return A(0); }
  static A step(A acc, T v) { return acc + static_cast<A>(v); }
};
// NaN propagates (torch semantics): once acc is NaN it stays NaN.
template <typename T>
struct MaxOp {
  using A = T;
  static A init() {
    return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::lowest();
  }
  static A step(A acc, T v) { return (v > acc || v != v) ? v : acc; }
};
template <typename T>
struct MinOp {
  using A = T;
  static A init() {
    return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::max();
  }
  static A step(A acc, T v) { return (v < acc || v != v) ? v : acc; }
};

// out[k] = reduce_r x[kept(k) + red(r)] for a reduction with a contiguous (unit-stride) inner group.
template <typename T, typename Op>
void reduce_rows(const T* x, T* out, const DimGroup& kept, int64_t len) {
  using A = typename Op::A;
  parallel_for(kept.numel(), len, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const T* row = x + kept.offset(k);
      A acc = Op::init();
      if constexpr (std::is_same_v<Op, SumOp<T>>) {
#pragma omp simd reduction(+ : acc)
        for (int64_t r = 0; r < len; ++r) acc += static_cast<A>(row[r]);
      } else if constexpr (std::is_same_v<Op, MaxOp<T>>) {
        acc = cpu_kernels::vmax(row, len, acc);
      } else if constexpr (std::is_same_v<Op, MinOp<T>>) {
        acc = cpu_kernels::vmin(row, len, acc);
      } else {
        for (int64_t r = 0; r < len; ++r) acc = Op::step(acc, row[r]);
      }
      out[k] = static_cast<T>(acc);
    }
  });
}

// out[j] = reduce_r x[r * rs + j] for j in [0, cols): kept dims contiguous and innermost.
template <typename T, typename Op>
void reduce_cols(const T* x, T* out, int64_t cols, int64_t rows, int64_t rs) {
  using A = typename Op::A;
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  parallel_for(blocks, kBlock * rows, [&](int64_t b, int64_t e) {
    A acc[kBlock];
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t j0 = blk * kBlock, n = std::min(kBlock, cols - j0);
      for (int64_t j = 0; j < n; ++j) acc[j] = Op::init();
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = x + r * rs + j0;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) acc[j] = Op::step(acc[j], row[j]);
      }
      for (int64_t j = 0; j < n; ++j) out[j0 + j] = static_cast<T>(acc[j]);
    }
  });
}

template <typename T, typename Op>
void reduce_generic(const T* x, T* out, const DimGroup& kept, const DimGroup& red) {
  using A = typename Op::A;
  const int64_t rn = red.numel();
  parallel_for(kept.numel(), rn, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const T* base = x + kept.offset(k);
      A acc = Op::init();
      for (int64_t r = 0; r < rn; ++r) acc = Op::step(acc, base[red.offset(r)]);
      out[k] = static_cast<T>(acc);
    }
  });
}

template <typename T, typename Op>
void reduce_typed(const Tensor& x, const Tensor& out, const DimGroup& kept, const DimGroup& red) {
  const T* xs = x.data<T>();
  T* os = out.data<T>();
  if (red.size.size() == 1 && red.stride[0] == 1) return reduce_rows<T, Op>(xs, os, kept, red.size[0]);
  if (red.size.size() == 1 && kept.size.size() == 1 && kept.stride[0] == 1)
    return reduce_cols<T, Op>(xs, os, kept.size[0], red.size[0], red.stride[0]);
  reduce_generic<T, Op>(xs, os, kept, red);
}

// out[k] = first r with x[k, r] maximal (NaN counts as the maximum); x (kept..., R) strided.
template <typename T>
void argmax_typed(const Tensor& x, const Tensor& out, const DimGroup& kept, int64_t len, int64_t rs) {
  const T* xs = x.data<T>();
  int64_t* os = out.data<int64_t>();
  parallel_for(kept.numel(), len, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const T* row = xs + kept.offset(k);
      int64_t best = 0;
      T bv = row[0];
      for (int64_t r = 1; r < len && bv == bv; ++r) {
        const T v = row[r * rs];
        if (v > bv || v != v) {
          bv = v;
          best = r;
        }
      }
      os[k] = best;
    }
  });
}

}  // namespace

// out = reduce of x over the dims where out has size 1 and x does not; out contiguous, x's ndim.
void CpuBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  if (F32Stage::any_half({&x, &out})) {  // sums accumulate in f32
    F32Stage s;
    reduce(op, s.in(x), s.out(out));
    return s.finish();
  }
  CHECK_EQ(x.dim(), out.dim()) << "reduce: x " << x.str() << " and out " << out.str() << " differ in ndim";
  CHECK(out.is_contiguous()) << "reduce: out must be contiguous, got strides " << shape_str(out.strides());
  const DType want = op == ReduceOp::argmax ? DType::i64 : x.dtype();
  CHECK(out.dtype() == want) << "reduce: out is " << out.str() << ", expected " << dtype_name(want);
  // Kept dims in order give out's linear index (out is contiguous and size 1 on reduced dims).
  DimGroup kept, red;
  int64_t n_reduced = 0;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool reduced = out.size(d) == 1 && x.size(d) != 1;
    if (!reduced) {
      CHECK_EQ(out.size(d), x.size(d)) << "reduce: dim " << d << " of out " << out.str() << " vs x " << x.str();
      kept.add(x.size(d), x.stride(d));
    } else {
      ++n_reduced;
      red.add(x.size(d), x.stride(d));
    }
  }
  if (out.numel() == 0) return;
  if (op != ReduceOp::sum && op != ReduceOp::argmax)
    CHECK(x.numel() > 0) << "reduce: max/min of an empty tensor " << x.str();

  if (op == ReduceOp::argmax) {
    CHECK_LE(n_reduced, 1) << "reduce: argmax needs exactly one reduced dim; x " << x.str() << " out " << out.str();
    CHECK(x.numel() > 0) << "reduce: argmax of an empty tensor " << x.str();
    const int64_t len = red.size.empty() ? 1 : red.size[0], rs = red.size.empty() ? 0 : red.stride[0];
    dispatch_float(x.dtype(), "argmax", [&](auto t) { argmax_typed<decltype(t)>(x, out, kept, len, rs); });
    return;
  }
  auto run = [&](auto t) {
    using T = decltype(t);
    switch (op) {
      case ReduceOp::sum: return reduce_typed<T, SumOp<T>>(x, out, kept, red);
      case ReduceOp::max: return reduce_typed<T, MaxOp<T>>(x, out, kept, red);
      case ReduceOp::min: return reduce_typed<T, MinOp<T>>(x, out, kept, red);
      case ReduceOp::argmax: break;
    }
  };
  switch (x.dtype()) {
    case DType::f32: return run(float{});
    case DType::f64: return run(double{});
    case DType::i32: return run(int32_t{});
    case DType::i64: return run(int64_t{});
    default:
      LOG(FATAL) << "op reduce: dtype " << dtype_name(x.dtype()) << " not supported on the CPU; convert to f32";
  }
}

}  // namespace px

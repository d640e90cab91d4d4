// Internal helpers shared by the CPU kernels: the OpenMP parallel_for, the strided N-d loop
// (coalesced dims, rows of the innermost dim handed to a kernel) and dtype dispatch for float kernels.
#pragma once

#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/tensor/tensor.h"
#include "core/util/check.h"

namespace px::cpu_kernels {

// Below this many elements a kernel runs on the calling thread.
constexpr int64_t kParallelGrain = 32768;

// Calls f(begin, end) over disjoint chunks covering [0, n), in parallel when n * cost_per_item
// reaches kParallelGrain; each thread gets at most one contiguous chunk.
template <typename F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n <= 0) return;
  const int64_t work = n * std::max<int64_t>(cost_per_item, 1);
  int64_t nt = std::min<int64_t>(num_threads(), std::max<int64_t>(work / kParallelGrain, 1));
  nt = std::min(nt, n);
  if (nt <= 1 || omp_in_parallel()) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(static_cast<int>(nt))
  {
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t chunk = (n + threads - 1) / threads;
    const int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    if (begin < end) f(begin, end);
  }
}

// Number of threads parallel_for would use for n items of the given cost (for per-thread buffers).
inline int planned_threads(int64_t n, int64_t cost_per_item) {
  const int64_t work = n * std::max<int64_t>(cost_per_item, 1);
  int64_t nt = std::min<int64_t>(num_threads(), std::max<int64_t>(work / kParallelGrain, 1));
  return static_cast<int>(std::max<int64_t>(1, std::min(nt, n)));
}

// An N-operand loop nest over a common shape with per-operand strides in bytes. Size-1 dims are
// dropped and adjacent dims merged when every operand allows it, so contiguous tensors become 1-d.
template <int N>
struct StridedLoop {
  std::vector<int64_t> shape;  // innermost last
  std::array<std::vector<int64_t>, N> strides;  // bytes, per operand, per dim
  std::array<char*, N> base{};
  int64_t numel = 1;

  StridedLoop(const Shape& full_shape, const std::array<const Tensor*, N>& ops) {
    for (int64_t s : full_shape) numel *= s;
    for (int i = 0; i < N; ++i) {
      CHECK(ops[i]->shape() == full_shape) << "strided loop: operand " << i << " has shape "
                                          << shape_str(ops[i]->shape()) << ", expected " << shape_str(full_shape);
      base[i] = static_cast<char*>(ops[i]->raw_data());
    }
    const int64_t nd = static_cast<int64_t>(full_shape.size());
    for (int64_t d = 0; d < nd; ++d) {
      if (full_shape[d] == 1) continue;
      shape.push_back(full_shape[d]);
      for (int i = 0; i < N; ++i)
        strides[i].push_back(ops[i]->strides()[d] * static_cast<int64_t>(dtype_size(ops[i]->dtype())));
    }
    // merge dim k into dim k-1 (outer) when outer stride == inner stride * inner size for all operands
    for (int64_t k = static_cast<int64_t>(shape.size()) - 1; k >= 1; --k) {
      bool ok = true;
      for (int i = 0; i < N; ++i) ok = ok && strides[i][k - 1] == strides[i][k] * shape[k];
      if (!ok) continue;
      shape[k - 1] *= shape[k];
      shape.erase(shape.begin() + k);
      for (int i = 0; i < N; ++i) {
        strides[i][k - 1] = strides[i][k];
        strides[i].erase(strides[i].begin() + k);
      }
    }
    if (shape.empty()) {  // a scalar (or all size-1 dims)
      shape.push_back(1);
      for (int i = 0; i < N; ++i) strides[i].push_back(0);
    }
  }

  // Calls row(len, ptrs, inner_strides_bytes) for every run of the innermost dim inside
  // elements [begin, end) in row-major order.
  template <typename Row>
  void run_range(int64_t begin, int64_t end, Row&& row) const {
    const int64_t nd = static_cast<int64_t>(shape.size());
    std::vector<int64_t> coord(nd, 0);
    int64_t rem = begin;
    for (int64_t d = nd - 1; d >= 0; --d) {
      coord[d] = rem % shape[d];
      rem /= shape[d];
    }
    std::array<int64_t, N> inner;
    for (int i = 0; i < N; ++i) inner[i] = strides[i][nd - 1];
    int64_t pos = begin;
    while (pos < end) {
      std::array<char*, N> p;
      for (int i = 0; i < N; ++i) {
        int64_t off = 0;
        for (int64_t d = 0; d < nd; ++d) off += coord[d] * strides[i][d];
        p[i] = base[i] + off;
      }
      const int64_t len = std::min(shape[nd - 1] - coord[nd - 1], end - pos);
      row(len, p, inner);
      pos += len;
      coord[nd - 1] += len;
      for (int64_t d = nd - 1; d > 0 && coord[d] == shape[d]; --d) {
        coord[d] = 0;
        ++coord[d - 1];
      }
    }
  }

  // The whole loop, split across threads by element ranges.
  template <typename Row>
  void run(int64_t cost_per_item, Row&& row) const {
    parallel_for(numel, cost_per_item, [&](int64_t b, int64_t e) { run_range(b, e, row); });
  }
};

// Elementwise map out = f(in...) with typed operands: out (index 0) and inputs Ins.... A contiguous
// row gets a plain indexed loop the compiler vectorises; other rows use byte strides.
template <typename Out, typename... Ins, typename F>
void map_elementwise(const Tensor& out, std::array<const Tensor*, sizeof...(Ins)> ins, int64_t cost, F&& f) {
  constexpr int N = 1 + sizeof...(Ins);
  std::array<const Tensor*, N> ops;
  ops[0] = &out;
  for (size_t i = 0; i < sizeof...(Ins); ++i) ops[i + 1] = ins[i];
  StridedLoop<N> loop(out.shape(), ops);
  constexpr std::array<int64_t, N> sizes{static_cast<int64_t>(sizeof(Out)), static_cast<int64_t>(sizeof(Ins))...};
  loop.run(cost, [&](int64_t n, const std::array<char*, N>& p, const std::array<int64_t, N>& s) {
    bool contiguous = true;
    for (int i = 0; i < N; ++i) contiguous = contiguous && s[i] == sizes[i];
    [&]<size_t... I>(std::index_sequence<I...>) {
      Out* o = reinterpret_cast<Out*>(p[0]);
      if (contiguous) {
        const std::tuple<const Ins*...> in{reinterpret_cast<const Ins*>(p[I + 1])...};
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) o[k] = f(std::get<I>(in)[k]...);
      } else {
        for (int64_t k = 0; k < n; ++k)
          *reinterpret_cast<Out*>(p[0] + k * s[0]) =
              f(*reinterpret_cast<const Ins*>(p[I + 1] + k * s[I + 1])...);
      }
    }(std::index_sequence_for<Ins...>{});
  });
}

// e^x for f32 in a form the compiler vectorises (Cephes-style: x = n ln2 + r, degree-6
// polynomial in r, 2^n from exponent bits); within ~2 ulp of expf; results below 2^-126 flush to 0.
// f64 uses std::exp.
inline float vexp(float x) {
  const float hi = 88.72283f, lo = -87.33654f;
  // selects through integer masks: GCC keeps a float ?: as control flow under -ftrapping-math
  const int32_t big = -static_cast<int32_t>(x > hi), small = -static_cast<int32_t>(x < lo);
  const int32_t nan = -static_cast<int32_t>(x != x), special = big | small | nan;
  const int32_t xb = std::bit_cast<int32_t>(x);
  const float xc = std::bit_cast<float>((xb & ~special) | (std::bit_cast<int32_t>(hi) & big) |
                                        (std::bit_cast<int32_t>(lo) & small));
  // n = round(x / ln2) by the 1.5 * 2^23 trick, whose low mantissa bits then hold n
  const float magic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + magic;
  const float n = t - magic;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(magic);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n as 2^h * 2^(n - h), h = floor(n / 2), so n in [-126, 128] never leaves the normal range
  const int32_t h = ni >> 1;
  const float s1 = std::bit_cast<float>((h + 127) << 23), s2 = std::bit_cast<float>((ni - h + 127) << 23);
  const int32_t yb = std::bit_cast<int32_t>(p * s1 * s2);
  return std::bit_cast<float>((yb & ~special) | (0x7f800000 & big) | (xb & nan));  // inf, 0, NaN kept
}
inline double vexp(double x) { return std::exp(x); }

// erf(x) for f32 by Abramowitz & Stegun 7.1.26, |error| < 1.5e-7, branch-free so loops vectorise
// (libm's erff does not: GELU was 8x slower than torch with it). f64 uses std::erf.
inline float verf(float x) {
  const float a = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  return std::copysign(1.0f - poly * vexp(-a * a), x);
}
inline double verf(double x) { return std::erf(x); }

// c ? a : b through integer masks for floats, so loops using it still vectorise (see vexp).
template <typename T>
inline T vselect(bool c, T a, T b) {
  if constexpr (std::is_same_v<T, float>) {
    const int32_t m = -static_cast<int32_t>(c);
    return std::bit_cast<float>((std::bit_cast<int32_t>(a) & m) | (std::bit_cast<int32_t>(b) & ~m));
  } else if constexpr (std::is_same_v<T, double>) {
    const int64_t m = -static_cast<int64_t>(c);
    return std::bit_cast<double>((std::bit_cast<int64_t>(a) & m) | (std::bit_cast<int64_t>(b) & ~m));
  } else {
    return c ? a : b;
  }
}

// max over n values with NaN propagating; vectorises (the NaN check rides along as a flag).
template <typename T>
inline T vmax(const T* x, int64_t n, T init) {
  T m = init;
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<T>::quiet_NaN() : m;
}
template <typename T>
inline T vmin(const T* x, int64_t n, T init) {
  T m = init;
  int nan = 0;
#pragma omp simd reduction(min : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] < m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<T>::quiet_NaN() : m;
}

// Calls f(T{}) for f32 or f64 and CHECK-fails naming the op for every other dtype.
template <typename F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default:
      LOG(FATAL) << "op " << op << ": dtype " << dtype_name(t) << " not supported on the CPU; convert to f32";
  }
  __builtin_unreachable();
}

// Reads / writes element i of a 1-d f32 or f64 tensor (statistics, per-row losses) by its stride.
inline double load_f(const Tensor& t, int64_t i) {
  const int64_t off = t.dim() == 0 ? 0 : i * t.stride(0);
  if (t.dtype() == DType::f32) return static_cast<const float*>(t.raw_data())[off];
  CHECK(t.dtype() == DType::f64) << "expected an f32/f64 tensor, got " << t.str();
  return static_cast<const double*>(t.raw_data())[off];
}
inline void store_f(const Tensor& t, int64_t i, double v) {
  const int64_t off = t.dim() == 0 ? 0 : i * t.stride(0);
  if (t.dtype() == DType::f32) {
    static_cast<float*>(t.raw_data())[off] = static_cast<float>(v);
    return;
  }
  CHECK(t.dtype() == DType::f64) << "expected an f32/f64 tensor, got " << t.str();
  static_cast<double*>(t.raw_data())[off] = v;
}

// Rows and columns of a tensor viewed as (R, C) over its last dim.
inline int64_t last_dim(const Tensor& t) { return t.dim() == 0 ? 1 : t.size(-1); }
inline int64_t rows_of(const Tensor& t) {
  const int64_t c = last_dim(t);
  return c == 0 ? 0 : t.numel() / c;
}

}  // namespace px::cpu_kernels

// CPU elementwise kernels: copy/convert, fill, Philox uniform/normal/dropout, unary ops and
// their backward, binary ops (comparisons write bool) and where. All go through map_elementwise.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/util/philox.h"

namespace px {
namespace {

using cpu_kernels::dispatch_float;
using cpu_kernels::map_elementwise;
using cpu_kernels::parallel_for;
using cpu_kernels::vselect;

template <typename T>
constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

template <typename T>
inline float half_to_float(T v) {
  if constexpr (std::is_same_v<T, bf16>) return from_bf16(v);
  else return from_f16(v);
}

// Element conversion S -> D: 16-bit floats go through f32 (round to nearest even), the rest cast.
template <typename D, typename S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) return v;
  else if constexpr (is_half_v<S>) return convert<D>(half_to_float(v));
  else if constexpr (std::is_same_v<D, bf16>) return to_bf16(static_cast<float>(v));
  else if constexpr (std::is_same_v<D, f16>) return to_f16(static_cast<float>(v));
  else return static_cast<D>(v);
}

// dst = convert(src) where the two disagree on which of the last two dims is unit-stride (a
// transpose): 32x32 tiles keep both sides in cache; dst's unit-stride dim is the inner loop.
template <typename D, typename S>
void copy_tiled(const cpu_kernels::StridedLoop<2>& loop) {
  const int64_t nd = static_cast<int64_t>(loop.shape.size());
  const int64_t rows = loop.shape[nd - 2], cols = loop.shape[nd - 1], outer = loop.numel / (rows * cols);
  const int64_t dr = loop.strides[0][nd - 2], dc = loop.strides[0][nd - 1];
  const int64_t sr = loop.strides[1][nd - 2], sc = loop.strides[1][nd - 1];
  const bool rows_inner = dr == static_cast<int64_t>(sizeof(D));  // dst is column-major in the tile
  constexpr int64_t kT = 32;
  const int64_t tr = (rows + kT - 1) / kT, tc = (cols + kT - 1) / kT;
  parallel_for(outer * tr * tc, kT * kT, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      int64_t o = task / (tr * tc), od = 0, os = 0;
      for (int64_t d = nd - 3; d >= 0; --d) {
        od += (o % loop.shape[d]) * loop.strides[0][d];
        os += (o % loop.shape[d]) * loop.strides[1][d];
        o /= loop.shape[d];
      }
      const int64_t t = task % (tr * tc), i0 = (t / tc) * kT, j0 = (t % tc) * kT;
      const int64_t i1 = std::min(rows, i0 + kT), j1 = std::min(cols, j0 + kT);
      char* dp = loop.base[0] + od;
      const char* sp = loop.base[1] + os;
      auto at = [&](int64_t i, int64_t j) {
        *reinterpret_cast<D*>(dp + i * dr + j * dc) = convert<D>(*reinterpret_cast<const S*>(sp + i * sr + j * sc));
      };
      if (rows_inner) {
        for (int64_t j = j0; j < j1; ++j)
          for (int64_t i = i0; i < i1; ++i) at(i, j);
      } else {
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) at(i, j);
      }
    }
  });
}

template <typename T>
inline T gelu_exact(T x) {
  return T(0.5) * x * (T(1) + cpu_kernels::verf(x * T(0.70710678118654752440)));
}
// d/dx [x Phi(x)] = Phi(x) + x phi(x)
template <typename T>
inline T gelu_grad(T x) {
  const T cdf = T(0.5) * (T(1) + cpu_kernels::verf(x * T(0.70710678118654752440)));
  const T pdf = cpu_kernels::vexp(T(-0.5) * x * x) * T(0.39894228040143267794);
  return cdf + x * pdf;
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, double alpha_d) {
  const T alpha = static_cast<T>(alpha_d);
  auto run = [&](int64_t cost, auto f) { map_elementwise<T, T>(out, {&x}, cost, f); };
  switch (op) {
    case UnaryOp::neg: return run(1, [](T v) { return -v; });
    case UnaryOp::exp: return run(4, [](T v) { return cpu_kernels::vexp(v); });
    case UnaryOp::log: return run(4, [](T v) { return std::log(v); });
    case UnaryOp::sqrt: return run(1, [](T v) { return std::sqrt(v); });
    case UnaryOp::relu: return run(1, [](T v) { return vselect(v < T(0), T(0), v); });  // NaN stays NaN
    case UnaryOp::gelu: return run(8, [](T v) { return gelu_exact(v); });
    case UnaryOp::tanh: return run(8, [](T v) { return std::tanh(v); });
    case UnaryOp::sigmoid: return run(4, [](T v) { return T(1) / (T(1) + cpu_kernels::vexp(-v)); });
    case UnaryOp::add_scalar: return run(1, [alpha](T v) { return v + alpha; });
    case UnaryOp::mul_scalar: return run(1, [alpha](T v) { return alpha * v; });
    case UnaryOp::pow:
      if (alpha_d == 2.0) return run(1, [](T v) { return v * v; });
      if (alpha_d == 1.0) return run(1, [](T v) { return v; });
      if (alpha_d == 0.5) return run(1, [](T v) { return std::sqrt(v); });
      if (alpha_d == -1.0) return run(1, [](T v) { return T(1) / v; });
      return run(8, [alpha](T v) { return std::pow(v, alpha); });
  }
  LOG(FATAL) << "unary: unknown op " << static_cast<int>(op);
}

template <typename T>
void unary_backward_typed(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                          double alpha_d) {
  const T alpha = static_cast<T>(alpha_d);
  auto need = [&](const Tensor& t, const char* name) -> const Tensor* {
    CHECK(t.defined()) << "unary_backward op " << static_cast<int>(op) << " needs " << name;
    CHECK(t.shape() == gx.shape() && t.dtype() == gx.dtype())
        << "unary_backward: " << name << " " << t.str() << " vs gx " << gx.str();
    return &t;
  };
  auto with_x = [&](int64_t cost, auto f) { map_elementwise<T, T, T>(gx, {&gy, need(x, "x")}, cost, f); };
  auto with_y = [&](int64_t cost, auto f) { map_elementwise<T, T, T>(gx, {&gy, need(y, "y")}, cost, f); };
  switch (op) {
    case UnaryOp::neg: return map_elementwise<T, T>(gx, {&gy}, 1, [](T g) { return -g; });
    case UnaryOp::exp: return with_y(1, [](T g, T yv) { return g * yv; });  // y' = y
    case UnaryOp::log: return with_x(1, [](T g, T xv) { return g / xv; });  // 1 / x
    case UnaryOp::sqrt: return with_y(1, [](T g, T yv) { return g * T(0.5) / yv; });  // 1 / (2 y)
    case UnaryOp::relu: return with_x(1, [](T g, T xv) { return vselect(xv > T(0), g, T(0)); });
    case UnaryOp::gelu: return with_x(8, [](T g, T xv) { return g * gelu_grad(xv); });
    case UnaryOp::tanh: return with_y(1, [](T g, T yv) { return g * (T(1) - yv * yv); });  // 1 - y^2
    case UnaryOp::sigmoid: return with_y(1, [](T g, T yv) { return g * yv * (T(1) - yv); });  // y (1 - y)
    case UnaryOp::add_scalar: return map_elementwise<T, T>(gx, {&gy}, 1, [](T g) { return g; });
    case UnaryOp::mul_scalar: return map_elementwise<T, T>(gx, {&gy}, 1, [alpha](T g) { return alpha * g; });
    case UnaryOp::pow:  // alpha x^(alpha - 1), 0 for alpha == 0
      if (alpha_d == 0.0) return map_elementwise<T, T>(gx, {&gy}, 1, [](T) { return T(0); });
      if (alpha_d == 1.0) return map_elementwise<T, T>(gx, {&gy}, 1, [](T g) { return g; });
      if (alpha_d == 2.0) return with_x(1, [](T g, T xv) { return g * T(2) * xv; });
      return with_x(8, [alpha](T g, T xv) { return g * alpha * std::pow(xv, alpha - T(1)); });
  }
  LOG(FATAL) << "unary_backward: unknown op " << static_cast<int>(op);
}

template <typename T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  auto arith = [&](auto f) { map_elementwise<T, T, T>(out, {&a, &b}, 1, f); };
  auto cmp = [&](auto f) { map_elementwise<bool, T, T>(out, {&a, &b}, 1, f); };
  constexpr bool is_float = std::is_floating_point_v<T>;
  switch (op) {
    case BinaryOp::add: return arith([](T x, T y) { return static_cast<T>(x + y); });
    case BinaryOp::sub: return arith([](T x, T y) { return static_cast<T>(x - y); });
    case BinaryOp::mul: return arith([](T x, T y) { return static_cast<T>(x * y); });
    case BinaryOp::div:
      if constexpr (is_float) return arith([](T x, T y) { return x / y; });
      LOG(FATAL) << "op div: dtype " << dtype_name(a.dtype()) << " not supported on the CPU; convert to f32";
      return;
    // NaN propagates like torch.maximum / torch.minimum
    case BinaryOp::maximum: return arith([](T x, T y) { return vselect(x > y || x != x, x, y); });
    case BinaryOp::minimum: return arith([](T x, T y) { return vselect(x < y || x != x, x, y); });
    case BinaryOp::eq: return cmp([](T x, T y) { return x == y; });
    case BinaryOp::ne: return cmp([](T x, T y) { return x != y; });
    case BinaryOp::lt: return cmp([](T x, T y) { return x < y; });
    case BinaryOp::le: return cmp([](T x, T y) { return x <= y; });
    case BinaryOp::gt: return cmp([](T x, T y) { return x > y; });
    case BinaryOp::ge: return cmp([](T x, T y) { return x >= y; });
  }
  LOG(FATAL) << "binary: unknown op " << static_cast<int>(op);
}

}  // namespace

// dst = convert(src), elementwise; memcpy when dtypes match and both are contiguous.
void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  CHECK(src.shape() == dst.shape()) << "copy: shape " << shape_str(src.shape()) << " -> " << shape_str(dst.shape());
  if (src.numel() == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    const int64_t bytes = src.numel() * static_cast<int64_t>(dtype_size(src.dtype()));
    if (src.raw_data() == dst.raw_data()) return;
    const char* s = static_cast<const char*>(src.raw_data());
    char* d = static_cast<char*>(dst.raw_data());
    constexpr int64_t kBlock = 1 << 16;
    parallel_for((bytes + kBlock - 1) / kBlock, kBlock / 4, [&](int64_t b, int64_t e) {
      const int64_t lo = b * kBlock, hi = std::min(bytes, e * kBlock);
      std::memcpy(d + lo, s + lo, hi - lo);
    });
    return;
  }
  dispatch_dtype(src.dtype(), [&](auto s) {
    using S = decltype(s);
    dispatch_dtype(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      const cpu_kernels::StridedLoop<2> loop(dst.shape(), {&dst, &src});
      const int64_t nd = static_cast<int64_t>(loop.shape.size());
      if (nd >= 2 && loop.shape[nd - 1] >= 8 && loop.shape[nd - 2] >= 8) {
        const int64_t ds = sizeof(D), ss = sizeof(S);
        const bool d_row = loop.strides[0][nd - 1] == ds, s_row = loop.strides[1][nd - 1] == ss;
        const bool d_col = loop.strides[0][nd - 2] == ds, s_col = loop.strides[1][nd - 2] == ss;
        if ((d_row && s_col && !s_row) || (d_col && s_row && !d_row)) return copy_tiled<D, S>(loop);
      }
      map_elementwise<D, S>(dst, {&src}, 1, [](S v) { return convert<D>(v); });
    });
  });
}

// dst[...] = value converted to dst's dtype.
void CpuBackend::fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  dispatch_dtype(dst.dtype(), [&](auto t) {
    using T = decltype(t);
    const T v = from_double<T>(value);
    map_elementwise<T>(dst, {}, 1, [v]() { return v; });
  });
}

// out_i = lo + (hi - lo) * U(seed, offset + i), U uniform in [0, 1) with 53 bits.  out contiguous.
void CpuBackend::uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  CHECK(out.is_contiguous() && is_floating(out.dtype())) << "uniform: needs a contiguous float tensor, got "
                                                         << out.str();
  dispatch_dtype(out.dtype(), [&](auto t) {
    using T = decltype(t);
    if constexpr (std::is_floating_point_v<T> || is_half_v<T>) {
      T* o = out.data<T>();
      parallel_for(out.numel(), 8, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) o[i] = from_double<T>(lo + (hi - lo) * philox_uniform(seed, offset + i));
      });
    }
  });
}

// out_i = mean + std * N(seed, offset + i), N = philox_normal (Box-Muller, philox.h).  out contiguous.
void CpuBackend::normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  CHECK(out.is_contiguous() && is_floating(out.dtype())) << "normal: needs a contiguous float tensor, got "
                                                        << out.str();
  dispatch_dtype(out.dtype(), [&](auto t) {
    using T = decltype(t);
    if constexpr (std::is_floating_point_v<T> || is_half_v<T>) {
      T* o = out.data<T>();
      parallel_for(out.numel(), 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) o[i] = from_double<T>(mean + std * philox_normal(seed, offset + i));
      });
    }
  });
}

// out = op(x; alpha); x strided, out contiguous.
void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) {
  if (F32Stage::any_half({&x, &out})) {
    F32Stage s;
    unary(op, s.in(x), s.out(out), alpha);
    return s.finish();
  }
  CHECK(x.dtype() == out.dtype()) << "unary: x " << x.str() << " vs out " << out.str();
  if (out.numel() == 0) return;
  dispatch_float(x.dtype(), "unary", [&](auto t) { unary_typed<decltype(t)>(op, x, out, alpha); });
}

// gx = gy * op'(x), from x or y = op(x) as convenient.
void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                                double alpha) {
  if (F32Stage::any_half({&x, &y, &gy, &gx})) {
    F32Stage s;
    unary_backward(op, s.in(x), s.in(y), s.in(gy), s.out(gx), alpha);
    return s.finish();
  }
  CHECK(gy.shape() == gx.shape() && gy.dtype() == gx.dtype())
      << "unary_backward: gy " << gy.str() << " vs gx " << gx.str();
  if (gx.numel() == 0) return;
  dispatch_float(gx.dtype(), "unary_backward",
                 [&](auto t) { unary_backward_typed<decltype(t)>(op, x, y, gy, gx, alpha); });
}

// out = a op b; a, b (out's shape, any strides); out contiguous, bool for comparisons.
void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (F32Stage::any_half({&a, &b, &out})) {
    F32Stage s;
    binary(op, s.in(a), s.in(b), s.out(out));
    return s.finish();
  }
  CHECK(a.dtype() == b.dtype()) << "binary: operand dtypes differ: " << a.str() << " vs " << b.str();
  const DType want = is_comparison(op) ? DType::boolean : a.dtype();
  CHECK(out.dtype() == want) << "binary: out is " << out.str() << ", expected " << dtype_name(want);
  if (out.numel() == 0) return;
  switch (a.dtype()) {
    case DType::f32: return binary_typed<float>(op, a, b, out);
    case DType::f64: return binary_typed<double>(op, a, b, out);
    case DType::i32: return binary_typed<int32_t>(op, a, b, out);
    case DType::i64: return binary_typed<int64_t>(op, a, b, out);
    case DType::u8:
      if (is_comparison(op)) return binary_typed<uint8_t>(op, a, b, out);
      break;
    case DType::boolean:
      if (op == BinaryOp::eq || op == BinaryOp::ne) return binary_typed<bool>(op, a, b, out);
      break;
    default: break;
  }
  LOG(FATAL) << "op binary " << static_cast<int>(op) << ": dtype " << dtype_name(a.dtype())
             << " not supported on the CPU; convert to f32";
}

// out = cond ? a : b; cond bool, a/b/out one dtype, all of out's shape.
void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  CHECK(cond.dtype() == DType::boolean) << "where: cond must be bool, got " << cond.str();
  CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype())
      << "where: dtypes " << a.str() << ", " << b.str() << " -> " << out.str();
  if (out.numel() == 0) return;
  dispatch_dtype(out.dtype(), [&](auto t) {
    using T = decltype(t);
    map_elementwise<T, bool, T, T>(out, {&cond, &a, &b}, 1, [](bool c, T x, T y) { return vselect(c, x, y); });
  });
}

// y_i = keep_i ? x_i / (1 - p) : 0 with keep_i = U32(seed, offset + i) >= p.  x, y contiguous.
void CpuBackend::dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) {
  if (F32Stage::any_half({&x, &y})) {  // the mask depends on the element index only: the same as in f32
    F32Stage s;
    dropout(s.in(x), s.out(y), p, seed, offset);
    return s.finish();
  }
  CHECK(x.shape() == y.shape() && x.dtype() == y.dtype()) << "dropout: x " << x.str() << " vs y " << y.str();
  CHECK(x.is_contiguous() && y.is_contiguous()) << "dropout: x and y must be contiguous";
  CHECK(p >= 0.0 && p <= 1.0) << "dropout: p = " << p << " outside [0, 1]";
  dispatch_float(x.dtype(), "dropout", [&](auto t) {
    using T = decltype(t);
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    const T scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    const float pf = static_cast<float>(p);
    parallel_for(x.numel(), 4, [&](int64_t b, int64_t e) {
      // One Philox block serves four consecutive counters (philox_uniform_f32's layout). Blocks are
      // drawn kBlocks at a time in an independent loop: one call is a long dependent multiply chain.
      constexpr int64_t kBlocks = 64;
      float u[4 * kBlocks];
      for (int64_t i = b; i < e;) {
        const uint64_t first_block = (offset + static_cast<uint64_t>(i)) >> 2;
        for (int64_t j = 0; j < kBlocks; ++j) {
          const PhiloxOut o = philox4x32(seed, first_block + static_cast<uint64_t>(j), kPhiloxDropoutDomain);
          for (int k = 0; k < 4; ++k) u[4 * j + k] = philox_word_f32(o, static_cast<uint64_t>(k));
        }
        const int64_t skip = static_cast<int64_t>(offset + static_cast<uint64_t>(i) - 4 * first_block);
        const int64_t end = std::min(e, i + 4 * kBlocks - skip);
        for (int64_t k = skip; i < end; ++i, ++k) ys[i] = u[k] >= pf ? xs[i] * scale : T(0);
      }
    });
  });
}

}  // namespace px

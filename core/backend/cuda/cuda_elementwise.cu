// CUDA elementwise kernels: strided copy with dtype conversion, fill, Philox uniform/normal/dropout
// (bit-identical draws to the CPU backend), unary ops and their backward, broadcasting binary ops, where.
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/backend/cuda/cuda_common.cuh"
#include "core/util/philox.h"

namespace px::gpu {
namespace {

// ================================ kernels ================================

// dst[d(i)] = src[s(i)], same dtype: bits moved unchanged.
template <typename W>
__global__ void copy_bits_kernel(const W* src, Strided s, W* dst, Strided d, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[offset_of(d, i)] = src[offset_of(s, i)];
}

// dst[d(i)] = convert(src[s(i)]) through double (16-bit floats round through f32, as on the host).
__global__ void copy_convert_kernel(const void* src, DType st_, Strided s, void* dst, DType dt, Strided d, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store_dyn(dst, dt, offset_of(d, i), load_dyn(src, st_, offset_of(s, i)));
}

// dst_i = src_i between f32, bf16 and f16, both unit-stride: through f32, so the bits equal copy_convert_kernel's
// (an exact widening to double there) without its per-element dtype switches and 64-bit index divisions.
template <typename S, typename D>
__global__ void convert_flat_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    st(dst + i, static_cast<float>(ld(src + i)));
}

// dst[d(i)] = pattern (the value already converted to dst's dtype on the host).
template <typename W>
__global__ void fill_kernel(W* dst, Strided d, int64_t n, W pattern) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[offset_of(d, i)] = pattern;
}

// out_i = lo + range * philox_uniform(seed, offset + i), computed in double without FMA contraction.
template <typename T>
__global__ void uniform_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double range) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double u = philox_uniform(seed, offset + static_cast<uint64_t>(i));
    st(out + i, __dadd_rn(lo, __dmul_rn(range, u)));
  }
}

// out_i = mean + std * philox_normal(seed, offset + i) (Box-Muller on words v0, v1; see philox.h), in double.
template <typename T>
__global__ void normal_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double z = philox_normal(seed, offset + static_cast<uint64_t>(i));
    st(out + i, __dadd_rn(mean, __dmul_rn(std, z)));
  }
}

// y_i = keep_i ? x_i * scale : 0, keep_i = philox_uniform_f32(seed, offset + i) >= float(p), scale = 1/(1-p)
// rounded to Acc<T> (as the CPU backend does).
template <typename T>
__global__ void dropout_kernel(const T* x, T* y, int64_t n, float p, Acc<T> scale, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool keep = philox_uniform_f32(seed, offset + static_cast<uint64_t>(i)) >= p;
    st(y + i, keep ? ld(x + i) * scale : Acc<T>(0));
  }
}

__device__ __forceinline__ float d_erf(float x) { return erff(x); }
__device__ __forceinline__ double d_erf(double x) { return erf(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_pow(float x, float a) { return powf(x, a); }
__device__ __forceinline__ double d_pow(double x, double a) { return pow(x, a); }

// y = op(x; a): gelu exact 0.5 x (1 + erf(x / sqrt 2)); sigmoid 1 / (1 + e^-x); pow x^a.
template <typename C>
__device__ __forceinline__ C apply_unary(UnaryOp op, C x, C a) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return dexp(x);
    case UnaryOp::log: return dlog(x);
    case UnaryOp::sqrt: return d_sqrt(x);
    case UnaryOp::relu: return x > C(0) ? x : C(0);
    case UnaryOp::gelu: return C(0.5) * x * (C(1) + d_erf(x * C(0.70710678118654752440)));
    case UnaryOp::tanh: return d_tanh(x);
    case UnaryOp::sigmoid: return C(1) / (C(1) + dexp(-x));
    case UnaryOp::add_scalar: return x + a;
    case UnaryOp::mul_scalar: return a * x;
    case UnaryOp::pow:  // the exponents the CPU backend special-cases, for identical rounding
      if (a == C(2)) return x * x;
      if (a == C(1)) return x;
      if (a == C(0.5)) return d_sqrt(x);
      if (a == C(-1)) return C(1) / x;
      return d_pow(x, a);
  }
  return x;
}

// gx = gy * dy/dx: gelu' = Phi(x) + x phi(x); tanh' = 1 - y^2; sigmoid' = y (1 - y); pow' = a x^(a-1).
template <typename C>
__device__ __forceinline__ C apply_unary_backward(UnaryOp op, C x, C y, C gy, C a) {
  switch (op) {
    case UnaryOp::neg: return -gy;
    case UnaryOp::exp: return gy * y;
    case UnaryOp::log: return gy / x;
    case UnaryOp::sqrt: return gy * C(0.5) / y;
    case UnaryOp::relu: return x > C(0) ? gy : C(0);
    case UnaryOp::gelu: {
      const C cdf = C(0.5) * (C(1) + d_erf(x * C(0.70710678118654752440)));
      const C pdf = C(0.39894228040143267794) * dexp(C(-0.5) * x * x);
      return gy * (cdf + x * pdf);
    }
    case UnaryOp::tanh: return gy * (C(1) - y * y);
    case UnaryOp::sigmoid: return gy * y * (C(1) - y);
    case UnaryOp::add_scalar: return gy;
    case UnaryOp::mul_scalar: return gy * a;
    case UnaryOp::pow:
      if (a == C(0)) return C(0);
      if (a == C(1)) return gy;
      if (a == C(2)) return gy * C(2) * x;
      return gy * a * d_pow(x, a - C(1));
  }
  return gy;
}

// out_i = op(x[x(i)]; alpha); Flat: x is one unit-stride run.
template <typename T, bool Flat>
__global__ void unary_kernel(UnaryOp op, const T* x, Strided xm, T* out, int64_t n, Acc<T> alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t xo = Flat ? i : offset_of(xm, i);
    st(out + i, apply_unary<Acc<T>>(op, ld(x + xo), alpha));
  }
}

// gx_i = gy_i * op'(x_i, y_i; alpha), all contiguous; x or y may be null when op does not read it.
template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, const T* x, const T* y, const T* gy, T* gx, int64_t n,
                                      Acc<T> alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Acc<T> xv = x != nullptr ? ld(x + i) : Acc<T>(0), yv = y != nullptr ? ld(y + i) : Acc<T>(0);
    st(gx + i, apply_unary_backward<Acc<T>>(op, xv, yv, ld(gy + i), alpha));
  }
}

// out = a op b; maximum/minimum propagate NaN; comparisons give 1/0.
template <typename C>
__device__ __forceinline__ C apply_binary(BinaryOp op, C a, C b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::maximum: return (a != a) ? a : ((b != b) ? b : (a > b ? a : b));
    case BinaryOp::minimum: return (a != a) ? a : ((b != b) ? b : (a < b ? a : b));
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
  }
  return a;
}

// out_i = a[a(i)] op b[b(i)], out of type O (T, or bool for comparisons); Flat: a and b unit-stride.
template <typename T, typename O, bool Flat>
__global__ void binary_kernel(BinaryOp op, const T* a, Strided am, const T* b, Strided bm, O* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ao = Flat ? i : offset_of(am, i), bo = Flat ? i : offset_of(bm, i);
    const Acc<T> r = apply_binary<Acc<T>>(op, ld(a + ao), ld(b + bo));
    if constexpr (std::is_same_v<O, bool>) out[i] = r != Acc<T>(0);
    else st(out + i, r);
  }
}

// out_i = cond[c(i)] ? a[a(i)] : b[b(i)], bits moved unchanged.
template <typename W>
__global__ void where_kernel(const bool* cond, Strided cm, const W* a, Strided am, const W* b, Strided bm, W* out,
                             int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = cond[offset_of(cm, i)] ? a[offset_of(am, i)] : b[offset_of(bm, i)];
}

// ================================ launchers ================================

// Calls f(W{}) with W the unsigned integer of the dtype's width.
template <typename F>
void dispatch_width(DType t, F&& f) {
  switch (dtype_size(t)) {
    case 1: f(uint8_t{}); return;
    case 2: f(uint16_t{}); return;
    case 4: f(uint32_t{}); return;
    case 8: f(uint64_t{}); return;
    default: LOG(FATAL) << "unexpected element size of " << dtype_name(t);
  }
}

// Calls f(T{}) and returns true for f32, bf16 and f16 (the training dtypes); false for the others.
template <typename F>
bool dispatch_train_float(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return true;
    case DType::bf16: f(bf16{}); return true;
    case DType::f16: f(f16{}); return true;
    default: return false;
  }
}

// dst = src converted when both are unit-stride training floats (the mixed-precision casts); false otherwise.
bool convert_flat(const Tensor& src, const Tensor& dst, int64_t n) {
  bool launched = false;
  dispatch_train_float(src.dtype(), [&](auto s) {
    using S = decltype(s);
    launched = dispatch_train_float(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      convert_flat_kernel<S, D><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const S*>(src.raw_data()),
                                                                         static_cast<D*>(dst.raw_data()), n);
    });
  });
  return launched;
}

}  // namespace

bool kernels_loadable(std::string* why) {
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, fill_kernel<uint32_t>);
  if (err == cudaSuccess) return true;
  (void)cudaGetLastError();
  int device = 0, major = 0, minor = 0;
  (void)cudaGetDevice(&device);
  (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  (void)cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  (void)cudaGetLastError();
  *why = "cuda:" + std::to_string(device) + " is sm_" + std::to_string(major) + std::to_string(minor) +
         " and the kernels do not load on it: " + cudaGetErrorString(err);
  return false;
}

void copy(const Tensor& src, const Tensor& dst, Impl impl) {
  check_on_cuda(src, "copy", "src");
  check_on_cuda(dst, "copy", "dst");
  check_same_shape(src, dst, "copy");
  CHECK(src.device() == dst.device()) << "copy: device-to-device copies need one device; got " << src.str()
                                      << " -> " << dst.str();
  const int64_t n = dst.numel();
  if (n == 0) return;
  const bool merge = impl == Impl::fast;
  const auto m = coalesce(dst.shape(), {src.strides(), dst.strides()}, merge);
  if (impl == Impl::fast && src.dtype() == dst.dtype()) {
    if (is_flat(m[0]) && is_flat(m[1])) {
      CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), n * dtype_size(dst.dtype()),
                                 cudaMemcpyDeviceToDevice, stream()));
      return;
    }
    dispatch_width(dst.dtype(), [&](auto w) {
      using W = decltype(w);
      copy_bits_kernel<W><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const W*>(src.raw_data()), m[0],
                                                                     static_cast<W*>(dst.raw_data()), m[1], n);
    });
  } else if (!(impl == Impl::fast && is_flat(m[0]) && is_flat(m[1]) && convert_flat(src, dst, n))) {
    copy_convert_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(src.raw_data(), src.dtype(), m[0], dst.raw_data(),
                                                                  dst.dtype(), m[1], n);
  }
  PX_CUDA_LAUNCH_CHECK();
}

void fill(const Tensor& dst, double value) {
  check_on_cuda(dst, "fill", "dst");
  const int64_t n = dst.numel();
  if (n == 0) return;
  // The host conversion (px::from_double) fixes the bit pattern, so fills match the CPU exactly.
  uint64_t pattern = 0;
  dispatch_dtype(dst.dtype(), [&](auto t) {
    using T = decltype(t);
    const T v = from_double<T>(value);
    std::memcpy(&pattern, &v, sizeof(T));
  });
  const auto m = coalesce(dst.shape(), {dst.strides()});
  if (pattern == 0 && is_flat(m[0])) {
    CUDA_CHECK(cudaMemsetAsync(dst.raw_data(), 0, n * dtype_size(dst.dtype()), stream()));
    return;
  }
  dispatch_width(dst.dtype(), [&](auto w) {
    using W = decltype(w);
    fill_kernel<W><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<W*>(dst.raw_data()), m[0], n,
                                                             static_cast<W>(pattern));
  });
  PX_CUDA_LAUNCH_CHECK();
}

void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  check_contiguous(out, "uniform", "out");
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), "uniform", [&](auto t) {
    using T = decltype(t);
    uniform_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(out.data<T>(), n, seed, offset, lo, hi - lo);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  check_contiguous(out, "normal", "out");
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), "normal", [&](auto t) {
    using T = decltype(t);
    normal_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(out.data<T>(), n, seed, offset, mean, std);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) {
  check_contiguous(x, "dropout", "x");
  check_contiguous(y, "dropout", "y");
  check_same_shape(x, y, "dropout");
  CHECK(x.dtype() == y.dtype()) << "dropout: dtypes differ: " << x.str() << " vs " << y.str();
  CHECK(p >= 0.0 && p <= 1.0) << "dropout: p must be in [0, 1]; got " << p;
  const int64_t n = x.numel();
  if (n == 0) return;
  const double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  dispatch_float(x.dtype(), "dropout", [&](auto t) {
    using T = decltype(t);
    dropout_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x.data<T>(), y.data<T>(), n, static_cast<float>(p),
                                                                static_cast<Acc<T>>(scale), seed, offset);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha, Impl impl) {
  check_on_cuda(x, "unary", "x");
  check_contiguous(out, "unary", "out");
  check_same_shape(x, out, "unary");
  CHECK(x.dtype() == out.dtype()) << "unary: dtypes differ: " << x.str() << " vs " << out.str();
  const int64_t n = out.numel();
  if (n == 0) return;
  const auto m = coalesce(x.shape(), {x.strides()}, impl == Impl::fast);
  const bool flat = impl == Impl::fast && is_flat(m[0]);
  dispatch_float(x.dtype(), "unary", [&](auto t) {
    using T = decltype(t);
    const auto a = static_cast<Acc<T>>(alpha);
    if (flat)
      unary_kernel<T, true><<<blocks_for(n), kThreads, 0, stream()>>>(op, x.data<T>(), m[0], out.data<T>(), n, a);
    else
      unary_kernel<T, false><<<blocks_for(n), kThreads, 0, stream()>>>(op, x.data<T>(), m[0], out.data<T>(), n, a);
  });
  PX_CUDA_LAUNCH_CHECK();
}

void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx, double alpha) {
  // Which of x and y the derivative reads (the same choice as the CPU backend; the other may be undefined).
  const bool need_x = op == UnaryOp::log || op == UnaryOp::relu || op == UnaryOp::gelu ||
                      (op == UnaryOp::pow && alpha != 0.0 && alpha != 1.0);
  const bool need_y = op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh || op == UnaryOp::sigmoid;
  using Arg = std::pair<const Tensor*, const char*>;
  std::vector<Arg> args{{&gy, "gy"}, {&gx, "gx"}};
  if (need_x) args.push_back({&x, "x"});
  if (need_y) args.push_back({&y, "y"});
  for (const auto& [t, name] : args) {
    check_contiguous(*t, "unary_backward", name);
    check_same_shape(*t, gx, "unary_backward");
    CHECK(t->dtype() == gx.dtype()) << "unary_backward: " << name << " is " << t->str() << ", gx " << gx.str();
  }
  const int64_t n = gx.numel();
  if (n == 0) return;
  dispatch_float(gx.dtype(), "unary_backward", [&](auto t) {
    using T = decltype(t);
    unary_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(
        op, need_x ? x.data<T>() : nullptr, need_y ? y.data<T>() : nullptr, gy.data<T>(), gx.data<T>(), n,
        static_cast<Acc<T>>(alpha));
  });
  PX_CUDA_LAUNCH_CHECK();
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, Impl impl) {
  check_on_cuda(a, "binary", "a");
  check_on_cuda(b, "binary", "b");
  check_contiguous(out, "binary", "out");
  check_same_shape(a, out, "binary");
  check_same_shape(b, out, "binary");
  CHECK(a.dtype() == b.dtype()) << "binary: operand dtypes differ: " << a.str() << " vs " << b.str();
  const bool cmp = is_comparison(op);
  CHECK(out.dtype() == (cmp ? DType::boolean : a.dtype()))
      << "binary: out must be " << (cmp ? "bool" : dtype_name(a.dtype())) << "; got " << out.str();
  const int64_t n = out.numel();
  if (n == 0) return;
  const auto m = coalesce(out.shape(), {a.strides(), b.strides()}, impl == Impl::fast);
  const bool flat = impl == Impl::fast && is_flat(m[0]) && is_flat(m[1]);
  dispatch_dtype(a.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    if (cmp) {
      bool* po = static_cast<bool*>(out.raw_data());
      if (flat) binary_kernel<T, bool, true><<<blocks_for(n), kThreads, 0, stream()>>>(op, pa, m[0], pb, m[1], po, n);
      else binary_kernel<T, bool, false><<<blocks_for(n), kThreads, 0, stream()>>>(op, pa, m[0], pb, m[1], po, n);
    } else {
      T* po = static_cast<T*>(out.raw_data());
      if (flat) binary_kernel<T, T, true><<<blocks_for(n), kThreads, 0, stream()>>>(op, pa, m[0], pb, m[1], po, n);
      else binary_kernel<T, T, false><<<blocks_for(n), kThreads, 0, stream()>>>(op, pa, m[0], pb, m[1], po, n);
    }
  });
  PX_CUDA_LAUNCH_CHECK();
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_on_cuda(cond, "where", "cond");
  check_on_cuda(a, "where", "a");
  check_on_cuda(b, "where", "b");
  check_contiguous(out, "where", "out");
  for (const Tensor* t : {&cond, &a, &b}) check_same_shape(*t, out, "where");
  CHECK(cond.dtype() == DType::boolean) << "where: cond must be bool; got " << cond.str();
  CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype())
      << "where: a, b and out must share a dtype; got " << a.str() << ", " << b.str() << ", " << out.str();
  const int64_t n = out.numel();
  if (n == 0) return;
  const auto m = coalesce(out.shape(), {cond.strides(), a.strides(), b.strides()});
  dispatch_width(out.dtype(), [&](auto w) {
    using W = decltype(w);
    where_kernel<W><<<blocks_for(n), kThreads, 0, stream()>>>(
        static_cast<const bool*>(cond.raw_data()), m[0], static_cast<const W*>(a.raw_data()), m[1],
        static_cast<const W*>(b.raw_data()), m[2], static_cast<W*>(out.raw_data()), n);
  });
  PX_CUDA_LAUNCH_CHECK();
}

}  // namespace px::gpu

// CUDA backend vs the CPU backend on the same random inputs (ggml-style op tests), and every optimised
// CUDA kernel vs its plain reference kernel. Every test skips cleanly where there is no GPU (or no CUDA build).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/tensor/tensor.h"
#include "tests/common/compare.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/caching_allocator.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_kernels.h"
#include "core/backend/cuda/gemm_cublaslt.h"
#endif

#define PX_REQUIRE_GPU() \
  if (!::px::cuda_available()) GTEST_SKIP() << "no GPU"

namespace px {
namespace {

TEST(CudaBackend, AvailabilityIsCachedAndConsistent) {
  PX_REQUIRE_GPU();
  EXPECT_TRUE(cuda_available());
}

#ifdef PARALLAX_WITH_CUDA

using gpu::Impl;

Backend& dev() { return backend_for(cuda()); }
CpuBackend& host() { return cpu_backend(); }

// A random host tensor with values in [lo, hi).
Tensor host_rand(const Shape& shape, DType dtype, uint32_t seed, double lo = -2.0, double hi = 2.0) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  dispatch_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = from_double<T>(dist(gen));
  });
  return t;
}

// Random i64 indices in [0, n).
Tensor host_index(const Shape& shape, int64_t n, uint32_t seed) {
  Tensor t = Tensor::empty(shape, DType::i64);
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> dist(0, n - 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int64_t>()[i] = dist(gen);
  return t;
}

Tensor to_gpu(const Tensor& t) {
  Tensor d = Tensor::empty(t.shape(), t.dtype(), cuda());
  dev().copy(t, d);
  return d;
}
Tensor to_host(const Tensor& t) {
  Tensor h = Tensor::empty(t.shape(), t.dtype());
  dev().copy(t, h);
  return h;
}
Tensor gpu_empty(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, cuda()); }
Tensor gpu_like(const Tensor& t) { return gpu_empty(t.shape(), t.dtype()); }
Tensor cpu_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype()); }

// The same view (last two dims swapped) of a tensor.
Tensor transposed(const Tensor& t) {
  Shape s = t.shape(), st = t.strides();
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  std::swap(st[st.size() - 1], st[st.size() - 2]);
  return t.as_strided(s, st, t.offset());
}

double tol(DType t) { return t == DType::f64 ? 1e-10 : 2e-5; }

::testing::AssertionResult close(const Tensor& device_result, const Tensor& expected, double rtol, double atol) {
  return test::all_close(to_host(device_result), expected, rtol, atol);
}
::testing::AssertionResult same(const Tensor& a, const Tensor& b, double rtol, double atol) {
  return test::all_close(to_host(a), to_host(b), rtol, atol);
}

const std::vector<DType> kFloat = {DType::f32, DType::f64};

TEST(CudaBackend, CopyRoundTripsAndConvertsLikeTheCpu) {
  PX_REQUIRE_GPU();
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
    const Tensor h = host_rand({5, 7, 3}, t, 1, 0.0, 100.0);
    EXPECT_TRUE(test::all_close(to_host(to_gpu(h)), h, 0, 0)) << dtype_name(t);
  }
  // strided host source and strided device destination, with conversions
  for (DType to : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i64}) {
    const Tensor h = host_rand({6, 9}, DType::f32, 2, -50.0, 50.0);
    const Tensor expected = Tensor::empty({9, 6}, to);
    host().copy(transposed(h), expected);
    const Tensor d = gpu_empty({9, 6}, to);
    dev().copy(transposed(h), d);  // host strided -> device
    EXPECT_TRUE(close(d, expected, 0, 0)) << dtype_name(to);
    const Tensor dsrc = to_gpu(h);
    for (Impl impl : {Impl::fast, Impl::reference}) {
      const Tensor d2 = gpu_empty({9, 6}, to);
      gpu::copy(transposed(dsrc), d2, impl);  // device strided -> device with conversion
      EXPECT_TRUE(close(d2, expected, 0, 0)) << dtype_name(to);
    }
    const Tensor back = Tensor::empty({6, 9}, to);
    dev().copy(transposed(d), transposed(back));  // device -> strided host
    const Tensor expected_back = Tensor::empty({6, 9}, to);
    host().copy(h, expected_back);
    EXPECT_TRUE(test::all_close(back, expected_back, 0, 0)) << dtype_name(to);
  }
}

TEST(CudaBackend, FillMatchesCpuOnStridedViews) {
  PX_REQUIRE_GPU();
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::boolean}) {
    const Tensor h = host_rand({4, 6}, t, 3, 0.0, 10.0);
    const Tensor d = to_gpu(h);
    host().fill(transposed(h), 1.7);
    dev().fill(transposed(d), 1.7);
    EXPECT_TRUE(close(d, h, 0, 0)) << dtype_name(t);
    host().fill(h, 0.0);
    dev().fill(d, 0.0);
    EXPECT_TRUE(close(d, h, 0, 0)) << dtype_name(t);
  }
}

TEST(CudaBackend, PhiloxDrawsMatchTheCpu) {
  PX_REQUIRE_GPU();
  for (DType t : {DType::f32, DType::f64, DType::bf16}) {
    const Tensor hu = Tensor::empty({3001}, t), hn = Tensor::empty({3001}, t);
    const Tensor du = gpu_like(hu), dn = gpu_like(hn);
    host().uniform(hu, 1234, 77, -0.5, 2.0);
    dev().uniform(du, 1234, 77, -0.5, 2.0);
    host().normal(hn, 99, 1u << 20, 0.25, 3.0);
    dev().normal(dn, 99, 1u << 20, 0.25, 3.0);
    // Equal up to the last bit of double math (device log/cos vs libm; FMA contraction on the host).
    const double r = t == DType::f64 ? 1e-13 : 1e-6;
    EXPECT_TRUE(close(du, hu, r, r)) << dtype_name(t);
    EXPECT_TRUE(close(dn, hn, r, r)) << dtype_name(t);
  }
  for (DType t : kFloat) {
    const Tensor x = host_rand({64, 65}, t, 4);
    const Tensor hy = cpu_like(x), dy = gpu_like(x);
    host().dropout(x, hy, 0.3, 7, 11);
    dev().dropout(to_gpu(x), dy, 0.3, 7, 11);
    EXPECT_TRUE(close(dy, hy, 0, 0)) << "dropout masks must be identical, " << dtype_name(t);
  }
}

TEST(CudaBackend, UnaryForwardAndBackwardMatchCpu) {
  PX_REQUIRE_GPU();
  const UnaryOp ops[] = {UnaryOp::neg,  UnaryOp::exp,     UnaryOp::log,        UnaryOp::sqrt,
                         UnaryOp::relu, UnaryOp::gelu,    UnaryOp::tanh,       UnaryOp::sigmoid,
                         UnaryOp::add_scalar, UnaryOp::mul_scalar, UnaryOp::pow};
  for (DType t : kFloat) {
    for (UnaryOp op : ops) {
      const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::pow;
      const Tensor xb = host_rand({13, 37}, t, 5, positive ? 0.1 : -3.0, 3.0);
      const Tensor x = transposed(xb);  // strided input
      const Tensor dxb = to_gpu(xb);
      const Tensor dx = transposed(dxb);
      for (double alpha : {1.5, 2.0}) {
        const Tensor hy = Tensor::empty(x.shape(), t), dy = gpu_empty(x.shape(), t), ry = gpu_empty(x.shape(), t);
        host().unary(op, x, hy, alpha);
        dev().unary(op, dx, dy, alpha);
        gpu::unary(op, dx, ry, alpha, Impl::reference);
        EXPECT_TRUE(close(dy, hy, tol(t), tol(t))) << "op " << int(op);
        EXPECT_TRUE(same(dy, ry, 0, 0)) << "fast vs reference, op " << int(op);

        const Tensor xc = cpu_like(hy);
        host().copy(x, xc);
        const Tensor gy = host_rand(x.shape(), t, 6);
        const Tensor hgx = cpu_like(xc), dgx = gpu_like(xc);
        host().unary_backward(op, xc, hy, gy, hgx, alpha);
        dev().unary_backward(op, to_gpu(xc), to_gpu(hy), to_gpu(gy), dgx, alpha);
        EXPECT_TRUE(close(dgx, hgx, tol(t), tol(t))) << "backward op " << int(op);
      }
    }
  }
}

TEST(CudaBackend, BinaryBroadcastAndWhereMatchCpu) {
  PX_REQUIRE_GPU();
  const BinaryOp ops[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::maximum,
                          BinaryOp::minimum, BinaryOp::eq, BinaryOp::ne, BinaryOp::lt, BinaryOp::le,
                          BinaryOp::gt, BinaryOp::ge};
  for (DType t : {DType::f32, DType::f64, DType::i64}) {
    const Tensor a = host_rand({4, 5, 6}, t, 8, 1.0, 5.0);
    const Tensor bb = host_rand({1, 5, 1}, t, 9, 1.0, 5.0);
    const Tensor b = bb.as_strided({4, 5, 6}, {0, 1, 0}, 0);  // broadcast by stride 0
    const Tensor da = to_gpu(a), dbb = to_gpu(bb);
    const Tensor db = dbb.as_strided({4, 5, 6}, {0, 1, 0}, 0);
    for (BinaryOp op : ops) {
      const DType out_t = is_comparison(op) ? DType::boolean : t;
      const Tensor ho = Tensor::empty({4, 5, 6}, out_t), d_o = gpu_empty({4, 5, 6}, out_t),
                   r_o = gpu_empty({4, 5, 6}, out_t);
      host().binary(op, a, b, ho);
      dev().binary(op, da, db, d_o);
      gpu::binary(op, da, db, r_o, Impl::reference);
      EXPECT_TRUE(close(d_o, ho, tol(t), tol(t))) << "op " << int(op) << " " << dtype_name(t);
      EXPECT_TRUE(same(d_o, r_o, 0, 0)) << "fast vs reference, op " << int(op);
    }
    const Tensor cond = Tensor::empty({4, 5, 6}, DType::boolean);
    host().binary(BinaryOp::gt, a, b, cond);
    const Tensor hw = cpu_like(a), dw = gpu_like(a);
    host().where(cond, a, b, hw);
    dev().where(to_gpu(cond), da, db, dw);
    EXPECT_TRUE(close(dw, hw, 0, 0)) << dtype_name(t);
  }
}

TEST(CudaBackend, ReductionsMatchCpuForEveryLayout) {
  PX_REQUIRE_GPU();
  struct Case {
    Shape x, out;
  };
  const std::vector<Case> cases = {{{6, 50, 7}, {6, 50, 1}}, {{6, 50, 7}, {1, 50, 7}}, {{6, 50, 7}, {6, 1, 7}},
                                   {{6, 50, 7}, {1, 1, 1}},  {{3, 10000}, {3, 1}},      {{20000, 3}, {1, 3}},
                                   {{6, 50, 7}, {6, 50, 7}}};
  for (DType t : kFloat) {
    for (const Case& c : cases) {
      const Tensor x = host_rand(c.x, t, 10);
      const Tensor dx = to_gpu(x);
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::argmax}) {
        int reduced = 0;
        for (size_t d = 0; d < c.x.size(); ++d) reduced += c.x[d] != c.out[d];
        if (op == ReduceOp::argmax && reduced > 1) continue;
        const DType out_t = op == ReduceOp::argmax ? DType::i64 : t;
        const Tensor ho = Tensor::empty(c.out, out_t), d_o = gpu_empty(c.out, out_t), r_o = gpu_empty(c.out, out_t);
        host().reduce(op, x, ho);
        dev().reduce(op, dx, d_o);
        gpu::reduce(op, dx, r_o, Impl::reference);
        const double r = op == ReduceOp::sum ? 10 * tol(t) : 0;
        EXPECT_TRUE(close(d_o, ho, r, r)) << "op " << int(op) << " x " << shape_str(c.x) << " -> " << shape_str(c.out);
        EXPECT_TRUE(same(d_o, r_o, r, r)) << "fast vs reference, op " << int(op) << " " << shape_str(c.x);
      }
    }
    // a strided (transposed) input
    const Tensor xb = host_rand({40, 30}, t, 11);
    const Tensor ho = Tensor::empty({30, 1}, t), d_o = gpu_empty({30, 1}, t);
    host().reduce(ReduceOp::sum, transposed(xb), ho);
    dev().reduce(ReduceOp::sum, transposed(to_gpu(xb)), d_o);
    EXPECT_TRUE(close(d_o, ho, 10 * tol(t), 10 * tol(t)));
  }
}

TEST(CudaBackend, GemmMatchesCpuAndReference) {
  PX_REQUIRE_GPU();
  struct Case {
    int64_t b, m, k, n;
  };
  for (DType t : kFloat) {
    for (const Case& c : {Case{1, 5, 7, 3}, Case{3, 33, 17, 65}, Case{4, 64, 128, 32}, Case{2, 1, 9, 1}}) {
      for (int variant = 0; variant < 4; ++variant) {
        // 0: plain; 1: a is a transposed view; 2: b is a transposed view; 3: a broadcast over the batch
        Tensor ha, hb, da, db;
        if (variant == 1) {
          const Tensor base = host_rand({c.b, c.k, c.m}, t, 12);
          ha = transposed(base);
          da = transposed(to_gpu(base));
        } else if (variant == 3) {
          const Tensor base = host_rand({1, c.m, c.k}, t, 12);
          ha = base.as_strided({c.b, c.m, c.k}, {0, c.k, 1}, 0);
          da = to_gpu(base).as_strided({c.b, c.m, c.k}, {0, c.k, 1}, 0);
        } else {
          ha = host_rand({c.b, c.m, c.k}, t, 12);
          da = to_gpu(ha);
        }
        if (variant == 2) {
          const Tensor base = host_rand({c.b, c.n, c.k}, t, 13);
          hb = transposed(base);
          db = transposed(to_gpu(base));
        } else {
          hb = host_rand({c.b, c.k, c.n}, t, 13);
          db = to_gpu(hb);
        }
        const Tensor c0 = host_rand({c.b, c.m, c.n}, t, 14);
        const Tensor hc = cpu_like(c0);
        host().copy(c0, hc);
        const Tensor dc = to_gpu(c0), rc = to_gpu(c0);
        host().gemm(ha, hb, hc, 0.75, 0.5);
        dev().gemm(da, db, dc, 0.75, 0.5);
        gpu::gemm_reference(da, db, rc, 0.75, 0.5);
        const double r = t == DType::f64 ? 1e-11 : 1e-4;
        EXPECT_TRUE(close(dc, hc, r, r)) << "variant " << variant << " M=" << c.m << " K=" << c.k << " N=" << c.n;
        EXPECT_TRUE(same(dc, rc, r, r)) << "cuBLAS vs reference, variant " << variant;
      }
    }
  }
  // 2-D operands and bf16 (f32 compute) against the reference kernel
  const Tensor a = to_gpu(host_rand({48, 40}, DType::bf16, 15)), b = to_gpu(host_rand({40, 24}, DType::bf16, 16));
  const Tensor c = gpu_empty({48, 24}, DType::bf16), r = gpu_empty({48, 24}, DType::bf16);
  dev().gemm(a, b, c, 1.0, 0.0);
  gpu::gemm_reference(a.as_strided({1, 48, 40}, {0, 40, 1}, 0), b.as_strided({1, 40, 24}, {0, 24, 1}, 0),
                      r.as_strided({1, 48, 24}, {48 * 24, 24, 1}, 0), 1.0, 0.0);
  EXPECT_TRUE(same(c, r, 1e-2, 1e-2));
}

TEST(CudaBackend, GemmEpilogueAddsBiasAndRelu) {
  PX_REQUIRE_GPU();
  const Tensor a = host_rand({1, 16, 32}, DType::f32, 17), b = host_rand({1, 32, 8}, DType::f32, 18);
  const Tensor bias = host_rand({8}, DType::f32, 19);
  const Tensor c = gpu_empty({1, 16, 8}, DType::f32), ref = gpu_empty({1, 16, 8}, DType::f32);
  gpu::gemm_epilogue(to_gpu(a), to_gpu(b), c, 1.0, 0.0, gpu::GemmEpilogue::bias_relu, to_gpu(bias));
  gpu::gemm_reference(to_gpu(a), to_gpu(b), ref, 1.0, 0.0);
  const Tensor h = to_host(ref);
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 8; ++j) {
      float& v = h.data<float>()[i * 8 + j];
      v = std::max(0.0f, v + bias.data<float>()[j]);
    }
  EXPECT_TRUE(close(c, h, 1e-4, 1e-4));
}

TEST(CudaBackend, SoftmaxForwardBackwardMatchCpu) {
  PX_REQUIRE_GPU();
  for (DType t : kFloat) {
    for (const Shape& s : {Shape{7, 33}, Shape{5, 3000}, Shape{2, 3, 1024}}) {
      for (bool log : {false, true}) {
        const Tensor x = host_rand(s, t, 20, -5.0, 5.0), gy = host_rand(s, t, 21);
        const Tensor hy = cpu_like(x), dy = gpu_like(x), ry = gpu_like(x);
        host().softmax(x, hy, log);
        dev().softmax(to_gpu(x), dy, log);
        gpu::softmax(to_gpu(x), ry, log, Impl::reference);
        EXPECT_TRUE(close(dy, hy, tol(t), tol(t))) << shape_str(s) << " log " << log;
        EXPECT_TRUE(same(dy, ry, tol(t), tol(t)));
        const Tensor hg = cpu_like(x), dg = gpu_like(x), rg = gpu_like(x);
        host().softmax_backward(hy, gy, hg, log);
        dev().softmax_backward(to_gpu(hy), to_gpu(gy), dg, log);
        gpu::softmax_backward(to_gpu(hy), to_gpu(gy), rg, log, Impl::reference);
        EXPECT_TRUE(close(dg, hg, 10 * tol(t), 10 * tol(t))) << shape_str(s) << " log " << log;
        EXPECT_TRUE(same(dg, rg, 10 * tol(t), 10 * tol(t)));
      }
    }
  }
}

TEST(CudaBackend, LayerNormForwardBackwardMatchCpu) {
  PX_REQUIRE_GPU();
  for (DType t : kFloat) {
    for (const Shape& s : {Shape{9, 40}, Shape{4, 2000}, Shape{300, 64}}) {
      for (bool affine : {true, false}) {
        const int64_t r = s[0], c = s[1];
        const Tensor x = host_rand(s, t, 22, -3.0, 4.0), gy = host_rand(s, t, 23);
        const Tensor w = affine ? host_rand({c}, t, 24) : Tensor(), b = affine ? host_rand({c}, t, 25) : Tensor();
        const Tensor dw = affine ? to_gpu(w) : Tensor(), db = affine ? to_gpu(b) : Tensor();
        const Tensor hy = cpu_like(x), hm = Tensor::empty({r}, t), hr = Tensor::empty({r}, t);
        const Tensor dy = gpu_like(x), dm = gpu_empty({r}, t), dr = gpu_empty({r}, t);
        const Tensor ry = gpu_like(x), rm = gpu_empty({r}, t), rr = gpu_empty({r}, t);
        host().layernorm(x, w, b, 1e-5, hy, hm, hr);
        dev().layernorm(to_gpu(x), dw, db, 1e-5, dy, dm, dr);
        gpu::layernorm(to_gpu(x), dw, db, 1e-5, ry, rm, rr, Impl::reference);
        EXPECT_TRUE(close(dy, hy, 10 * tol(t), 10 * tol(t))) << shape_str(s);
        EXPECT_TRUE(close(dm, hm, 10 * tol(t), 10 * tol(t)));
        EXPECT_TRUE(close(dr, hr, 10 * tol(t), 10 * tol(t)));
        EXPECT_TRUE(same(dy, ry, 10 * tol(t), 10 * tol(t)));

        const Tensor hgx = cpu_like(x), hgw = affine ? Tensor::empty({c}, t) : Tensor(),
                     hgb = affine ? Tensor::empty({c}, t) : Tensor();
        const Tensor dgx = gpu_like(x), dgw = affine ? gpu_empty({c}, t) : Tensor(),
                     dgb = affine ? gpu_empty({c}, t) : Tensor();
        const Tensor rgx = gpu_like(x), rgw = affine ? gpu_empty({c}, t) : Tensor(),
                     rgb = affine ? gpu_empty({c}, t) : Tensor();
        host().layernorm_backward(x, w, hm, hr, gy, hgx, hgw, hgb);
        dev().layernorm_backward(to_gpu(x), dw, dm, dr, to_gpu(gy), dgx, dgw, dgb);
        gpu::layernorm_backward(to_gpu(x), dw, dm, dr, to_gpu(gy), rgx, rgw, rgb, Impl::reference);
        EXPECT_TRUE(close(dgx, hgx, 20 * tol(t), 20 * tol(t))) << shape_str(s);
        EXPECT_TRUE(same(dgx, rgx, 20 * tol(t), 20 * tol(t)));
        if (affine) {
          EXPECT_TRUE(close(dgw, hgw, 50 * tol(t), 50 * tol(t))) << shape_str(s);
          EXPECT_TRUE(close(dgb, hgb, 50 * tol(t), 50 * tol(t))) << shape_str(s);
          EXPECT_TRUE(same(dgw, rgw, 50 * tol(t), 50 * tol(t)));
          EXPECT_TRUE(same(dgb, rgb, 50 * tol(t), 50 * tol(t)));
        }
      }
    }
  }
}

TEST(CudaBackend, IndexOpsMatchCpu) {
  PX_REQUIRE_GPU();
  for (DType t : kFloat) {
    for (const Shape& xs : {Shape{4, 6, 5}, Shape{3, 10, 40}}) {
      const Tensor x = host_rand(xs, t, 26), index = host_index({8}, xs[1], 27);
      const Tensor dx = to_gpu(x), di = to_gpu(index);
      const Shape os{xs[0], 8, xs[2]};
      const Tensor ho = Tensor::empty(os, t), d_o = gpu_empty(os, t), r_o = gpu_empty(os, t);
      host().index_select(x, 1, index, ho);
      dev().index_select(dx, 1, di, d_o);
      gpu::index_select(dx, 1, di, r_o, Impl::reference);
      EXPECT_TRUE(close(d_o, ho, 0, 0)) << shape_str(xs);
      EXPECT_TRUE(same(d_o, r_o, 0, 0));

      const Tensor src = host_rand(os, t, 28);
      const Tensor hacc = cpu_like(x);
      host().copy(x, hacc);
      const Tensor dacc = to_gpu(x), racc = to_gpu(x);
      host().index_add(hacc, 1, index, src);
      dev().index_add(dacc, 1, di, to_gpu(src));
      gpu::index_add(racc, 1, di, to_gpu(src), Impl::reference);
      EXPECT_TRUE(close(dacc, hacc, tol(t), tol(t))) << shape_str(xs);
      EXPECT_TRUE(same(dacc, racc, tol(t), tol(t)));
    }
    // gather / scatter_add along the last dim, with index as large as x outside dim or smaller
    const Tensor x = host_rand({4, 6, 5}, t, 29);
    for (const Shape& is : {Shape{4, 6, 3}, Shape{2, 6, 3}}) {
      const Tensor index = host_index(is, 5, 30);
      const Tensor ho = Tensor::empty(is, t), d_o = gpu_empty(is, t), r_o = gpu_empty(is, t);
      host().gather(x, 2, index, ho);
      dev().gather(to_gpu(x), 2, to_gpu(index), d_o);
      gpu::gather(to_gpu(x), 2, to_gpu(index), r_o, Impl::reference);
      EXPECT_TRUE(close(d_o, ho, 0, 0)) << shape_str(is);
      EXPECT_TRUE(same(d_o, r_o, 0, 0));

      const Tensor src = host_rand(is, t, 31);
      const Tensor hacc = cpu_like(x);
      host().copy(x, hacc);
      const Tensor dacc = to_gpu(x), racc = to_gpu(x);
      host().scatter_add(hacc, 2, index, src);
      dev().scatter_add(dacc, 2, to_gpu(index), to_gpu(src));
      gpu::scatter_add(racc, 2, to_gpu(index), to_gpu(src), Impl::reference);
      EXPECT_TRUE(close(dacc, hacc, tol(t), tol(t))) << shape_str(is);
      EXPECT_TRUE(same(dacc, racc, tol(t), tol(t)));
    }
  }
}

TEST(CudaBackend, CrossEntropyMatchesCpu) {
  PX_REQUIRE_GPU();
  constexpr int64_t kIgnore = -100;
  for (DType t : kFloat) {
    for (const Shape& s : {Shape{16, 10}, Shape{6, 5000}}) {
      for (double eps : {0.0, 0.1}) {
        const int64_t n = s[0], c = s[1];
        const Tensor logits = host_rand(s, t, 32, -4.0, 4.0);
        const Tensor target = host_index({n}, c, 33);
        target.data<int64_t>()[1] = kIgnore;
        target.data<int64_t>()[n - 1] = kIgnore;
        const Tensor dl = to_gpu(logits), dt = to_gpu(target);
        const Tensor hloss = Tensor::empty({n}, t), hlse = Tensor::empty({n}, t);
        const Tensor dloss = gpu_empty({n}, t), dlse = gpu_empty({n}, t);
        const Tensor rloss = gpu_empty({n}, t), rlse = gpu_empty({n}, t);
        host().cross_entropy(logits, target, kIgnore, eps, hloss, hlse);
        dev().cross_entropy(dl, dt, kIgnore, eps, dloss, dlse);
        gpu::cross_entropy(dl, dt, kIgnore, eps, rloss, rlse, Impl::reference);
        EXPECT_TRUE(close(dloss, hloss, 10 * tol(t), 10 * tol(t))) << shape_str(s) << " eps " << eps;
        EXPECT_TRUE(close(dlse, hlse, 10 * tol(t), 10 * tol(t)));
        EXPECT_TRUE(same(dloss, rloss, 10 * tol(t), 10 * tol(t)));

        for (bool scalar_grad : {false, true}) {
          const Tensor gloss = host_rand(scalar_grad ? Shape{1} : Shape{n}, t, 34);
          const Tensor hg = cpu_like(logits), dg = gpu_like(logits), rg = gpu_like(logits);
          host().cross_entropy_backward(logits, target, hlse, gloss, kIgnore, eps, hg);
          dev().cross_entropy_backward(dl, dt, dlse, to_gpu(gloss), kIgnore, eps, dg);
          gpu::cross_entropy_backward(dl, dt, dlse, to_gpu(gloss), kIgnore, eps, rg, Impl::reference);
          EXPECT_TRUE(close(dg, hg, 10 * tol(t), 10 * tol(t))) << shape_str(s) << " scalar grad " << scalar_grad;
          EXPECT_TRUE(same(dg, rg, 10 * tol(t), 10 * tol(t)));
        }
      }
    }
  }
}

TEST(CudaCachingAllocator, ReusesFreedBlocksAndEmptiesTheCache) {
  PX_REQUIRE_GPU();
  CudaCachingAllocator& a = cuda_caching_allocator();
  a.empty_cache();
  const CudaAllocatorStats s0 = a.stats();
  void* p = a.allocate(1000);
  EXPECT_EQ(a.stats().allocated_bytes, s0.allocated_bytes + 1024);
  a.deallocate(p, 1000);
  EXPECT_EQ(a.stats().allocated_bytes, s0.allocated_bytes);
  const uint64_t mallocs = a.stats().num_mallocs;
  void* q = a.allocate(900);  // same 1024-byte class: served from the cache
  EXPECT_EQ(q, p);
  EXPECT_EQ(a.stats().num_mallocs, mallocs);
  a.deallocate(q, 900);
  a.empty_cache();
  EXPECT_EQ(a.stats().reserved_bytes, s0.reserved_bytes);
  EXPECT_EQ(a.allocate(0), nullptr);
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

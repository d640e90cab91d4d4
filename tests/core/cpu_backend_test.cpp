// CpuBackend against the plain reference kernels (gemm, reduce, softmax, layernorm, cross-entropy) on
// random shapes and strided / transposed / broadcast views, plus direct checks of the other kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/reference_kernels.h"
#include "core/util/philox.h"

namespace px {
namespace {

using ref::load;
using ref::store;

CpuBackend& be() { return cpu_backend(); }

Tensor rand_tensor(const Shape& shape, DType dt, std::mt19937& rng, double lo = -2.0, double hi = 2.0) {
  Tensor t = Tensor::empty(shape, dt);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) store(t, i, is_floating(dt) ? u(rng) : std::floor(u(rng)));
  return t;
}

Tensor empty_like(const Tensor& t, DType dt) { return Tensor::empty(t.shape(), dt); }

// A strided view of logical `shape` with random contents: kind 0 contiguous, 1 the last two dims
// transposed in memory, 2 every dim stepping by 2 through a larger buffer, 3 a dim broadcast (stride 0).
Tensor make_view(const Shape& shape, DType dt, std::mt19937& rng, int kind) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (kind == 1 && nd >= 2) {
    Shape st = shape;
    std::swap(st[nd - 1], st[nd - 2]);
    Tensor base = rand_tensor(st, dt, rng);
    Shape strides = base.strides();
    std::swap(strides[nd - 1], strides[nd - 2]);
    return base.as_strided(shape, strides, 0);
  }
  if (kind == 2) {
    Shape big = shape;
    for (auto& s : big) s = 2 * s + 1;
    Tensor base = rand_tensor(big, dt, rng);
    Shape strides = base.strides();
    for (auto& s : strides) s *= 2;
    return base.as_strided(shape, strides, 1);
  }
  if (kind == 3 && nd >= 1) {
    const int64_t d = static_cast<int64_t>(rng() % nd);
    Shape small = shape;
    small[d] = 1;
    Tensor base = rand_tensor(small, dt, rng);
    Shape strides = base.strides();
    strides[d] = 0;
    return base.as_strided(shape, strides, 0);
  }
  return rand_tensor(shape, dt, rng);
}

::testing::AssertionResult close(const Tensor& a, const Tensor& e, double rtol, double atol) {
  if (a.shape() != e.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(a.shape()) << " vs " << shape_str(e.shape());
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = load(a, i), y = load(e, i);
    if (std::isnan(x) && std::isnan(y)) continue;
    if (!(std::abs(x - y) <= atol + rtol * std::abs(y)))
      return ::testing::AssertionFailure() << "element " << i << " of " << a.str() << ": " << x << " vs expected "
                                           << y;
  }
  return ::testing::AssertionSuccess();
}

double tol(DType dt) { return dt == DType::f64 ? 1e-10 : dt == DType::f32 ? 2e-5 : 1e-2; }

Shape random_shape(std::mt19937& rng, int nd, int64_t max_size) {
  Shape s(nd);
  for (auto& v : s) v = 1 + static_cast<int64_t>(rng() % max_size);
  return s;
}

// ---------------------------------------------------------------- copy / fill

TEST(CpuBackend, CopyConvertsEveryDtypePair) {
  const DType all[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                       DType::i32, DType::i64, DType::u8,   DType::boolean};
  std::mt19937 rng(1);
  for (DType s : all)
    for (DType d : all)
      for (int kind : {0, 1, 2}) {
        // small non-negative integers are exact in every dtype (bool: 0 / 1)
        Tensor src = make_view({5, 7}, s, rng, kind);
        for (int64_t i = 0; i < src.numel(); ++i) store(src, i, s == DType::boolean ? (i % 3 == 0) : (i * 7) % 11);
        Tensor dst = kind == 2 ? make_view({5, 7}, d, rng, 2) : Tensor::empty({5, 7}, d);
        be().copy(src, dst);
        for (int64_t i = 0; i < src.numel(); ++i) {
          const double want = d == DType::boolean ? (load(src, i) != 0) : load(src, i);
          ASSERT_EQ(load(dst, i), want) << dtype_name(s) << " -> " << dtype_name(d) << " kind " << kind << " i " << i;
        }
      }
}

TEST(CpuBackend, CopyRoundsToBf16AndF16NearestEven) {
  std::mt19937 rng(2);
  Tensor src = rand_tensor({1000}, DType::f32, rng, -1e4, 1e4);
  float* s = src.data<float>();
  s[0] = 1.0f + 1.0f / 256;  // exactly halfway between two bf16 values: rounds to even (1.0)
  s[1] = 1.0f + 3.0f / 256;  // halfway, rounds up to even
  Tensor b = Tensor::empty({1000}, DType::bf16), h = Tensor::empty({1000}, DType::f16);
  be().copy(src, b);
  be().copy(src, h);
  for (int64_t i = 0; i < 1000; ++i) {
    ASSERT_EQ(b.data<bf16>()[i].bits, to_bf16(s[i]).bits) << i;
    ASSERT_EQ(h.data<f16>()[i].bits, to_f16(s[i]).bits) << i;
  }
  EXPECT_EQ(from_bf16(b.data<bf16>()[0]), 1.0f);
  EXPECT_EQ(from_bf16(b.data<bf16>()[1]), 1.0f + 4.0f / 256);
  // and back to f32 exactly
  Tensor back = Tensor::empty({1000}, DType::f32);
  be().copy(b, back);
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(back.data<float>()[i], from_bf16(to_bf16(s[i])));
}

TEST(CpuBackend, CopyLargeContiguousAndStrided) {
  std::mt19937 rng(3);
  Tensor src = rand_tensor({300, 257}, DType::f32, rng);
  Tensor dst = Tensor::empty({300, 257}, DType::f32);
  be().copy(src, dst);
  EXPECT_TRUE(close(dst, src, 0, 0));
  Tensor t = src.as_strided({257, 300}, {1, 257}, 0);  // transposed view
  Tensor dt = Tensor::empty({257, 300}, DType::f64);
  be().copy(t, dt);
  EXPECT_TRUE(close(dt, t, 0, 0));
}

TEST(CpuBackend, CopyTransposedTilesIntoEitherLayout) {
  std::mt19937 rng(31);
  Tensor src = rand_tensor({3, 45, 70}, DType::f32, rng);
  Tensor t = src.as_strided({3, 70, 45}, {45 * 70, 1, 70}, 0);  // last two dims swapped
  Tensor dst = Tensor::empty({3, 70, 45}, DType::bf16);
  be().copy(t, dst);
  for (int64_t i = 0; i < dst.numel(); ++i) ASSERT_EQ(load(dst, i), from_bf16(to_bf16(load(t, i)))) << i;
  // contiguous source into a transposed destination view
  Tensor back = Tensor::empty({3, 45, 70}, DType::f32);
  Tensor back_t = back.as_strided({3, 70, 45}, {45 * 70, 1, 70}, 0);
  be().copy(t, back_t);
  EXPECT_TRUE(close(back, src, 0, 0));
}

TEST(CpuBackend, FillEveryDtypeAndStridedView) {
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8,
                  DType::boolean}) {
    Tensor base = Tensor::empty({6, 8}, d);
    be().fill(base, 0);
    Tensor view = base.as_strided({3, 4}, {16, 2}, 1);  // every other row and column
    be().fill(view, 3);
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t c = 0; c < 8; ++c) {
        const bool in = r % 2 == 0 && c % 2 == 1;
        const double want = in ? (d == DType::boolean ? 1 : 3) : 0;
        ASSERT_EQ(load(base, r * 8 + c), want) << dtype_name(d) << " " << r << "," << c;
      }
  }
}

// ---------------------------------------------------------------- random numbers

TEST(CpuBackend, UniformStatisticsAndCounterOffsets) {
  const int64_t n = 200000;
  Tensor a = Tensor::empty({n}, DType::f64), b = Tensor::empty({100}, DType::f64);
  be().uniform(a, 7, 1000, -1.0, 3.0);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = a.data<double>()[i];
    ASSERT_GE(v, -1.0);
    ASSERT_LT(v, 3.0);
    s += v;
    s2 += v * v;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 1.0, 0.02);
  EXPECT_NEAR(var, 16.0 / 12.0, 0.02);
  be().uniform(b, 7, 1050, -1.0, 3.0);  // element i of b draws counter 1050 + i = a's element 50 + i
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(b.data<double>()[i], a.data<double>()[50 + i]);
  EXPECT_EQ(a.data<double>()[0], -1.0 + 4.0 * philox_uniform(7, 1000));
}

TEST(CpuBackend, NormalStatisticsAndDeterminism) {
  const int64_t n = 200000;
  Tensor a = Tensor::empty({n}, DType::f32), b = Tensor::empty({n}, DType::f32);
  be().normal(a, 11, 0, 0.5, 2.0);
  be().normal(b, 11, 0, 0.5, 2.0);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = a.data<float>()[i];
    ASSERT_EQ(v, b.data<float>()[i]);
    s += v;
    s2 += v * v;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.02);
  EXPECT_NEAR(std::sqrt(var), 2.0, 0.02);
  EXPECT_FLOAT_EQ(a.data<float>()[3], static_cast<float>(0.5 + 2.0 * philox_normal(11, 3)));
}

TEST(CpuBackend, DropoutMaskRegeneratesAndKeepsOneMinusP) {
  const int64_t n = 100003;
  const double p = 0.3;
  std::mt19937 rng(4);
  Tensor x = rand_tensor({n}, DType::f32, rng, 0.5, 1.5);
  Tensor y = Tensor::empty({n}, DType::f32), g = Tensor::empty({n}, DType::f32), ones = Tensor::empty({n}, DType::f32);
  be().fill(ones, 1.0);
  be().dropout(x, y, p, 42, 77);
  be().dropout(ones, g, p, 42, 77);  // the backward pass: same seed and offset, same mask
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float yv = y.data<float>()[i], gv = g.data<float>()[i];
    const bool keep = philox_uniform_f32(42, 77 + i) >= p;
    ASSERT_EQ(yv != 0, keep) << i;
    ASSERT_EQ(gv != 0, keep) << i;
    if (keep) {
      ++kept;
      ASSERT_FLOAT_EQ(yv, x.data<float>()[i] / (1 - p));
    }
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 1 - p, 0.01);
  be().dropout(x, y, 0.0, 1, 0);
  EXPECT_TRUE(close(y, x, 0, 0));
}

// ---------------------------------------------------------------- unary

const UnaryOp kUnaryOps[] = {UnaryOp::neg,     UnaryOp::exp,        UnaryOp::log,        UnaryOp::sqrt,
                             UnaryOp::relu,    UnaryOp::gelu,       UnaryOp::tanh,       UnaryOp::sigmoid,
                             UnaryOp::add_scalar, UnaryOp::mul_scalar, UnaryOp::pow};

TEST(CpuBackend, UnaryMatchesFormulasOnStridedInputs) {
  std::mt19937 rng(5);
  for (DType dt : {DType::f32, DType::f64})
    for (UnaryOp op : kUnaryOps)
      for (double alpha : {2.0, 0.5, -1.5})
        for (int kind : {0, 1, 2, 3}) {
          const Shape shape = kind == 0 ? Shape{70, 513} : Shape{9, 17};
          Tensor x = make_view(shape, dt, rng, kind);
          if (op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::pow) {  // positive domain
            Tensor pos = rand_tensor(shape, dt, rng, 0.1, 3.0);
            x = pos;
          }
          Tensor y = empty_like(x, dt), want = empty_like(x, DType::f64);
          be().unary(op, x, y, alpha);
          ref::unary(op, x, want, alpha);
          ASSERT_TRUE(close(y, want, dt == DType::f32 ? 1e-5 : 1e-12, dt == DType::f32 ? 1e-6 : 1e-14))
              << "op " << static_cast<int>(op) << " " << dtype_name(dt) << " kind " << kind << " alpha " << alpha;
        }
}

TEST(CpuBackend, ExpF32IsAccurateAcrossTheRangeAndKeepsSpecials) {
  const int64_t n = 400001;
  Tensor x = Tensor::empty({n}, DType::f32), y = Tensor::empty({n}, DType::f32);
  for (int64_t i = 0; i < n; ++i) x.data<float>()[i] = static_cast<float>(-87.0 + 175.5 * i / (n - 1));
  float* xs = x.data<float>();
  xs[0] = INFINITY, xs[1] = -INFINITY, xs[2] = NAN, xs[3] = 100.0f, xs[4] = -100.0f, xs[5] = 0.0f;
  be().unary(UnaryOp::exp, x, y, 0);
  const float* ys = y.data<float>();
  EXPECT_EQ(ys[0], INFINITY);
  EXPECT_EQ(ys[1], 0.0f);
  EXPECT_TRUE(std::isnan(ys[2]));
  EXPECT_EQ(ys[3], INFINITY);
  EXPECT_EQ(ys[4], 0.0f);
  EXPECT_EQ(ys[5], 1.0f);
  for (int64_t i = 6; i < n; ++i) {
    const double want = std::exp(static_cast<double>(xs[i]));
    ASSERT_LE(std::abs(ys[i] - want), 3e-7 * want) << "x = " << xs[i];
  }
}

// f32 GELU uses a polynomial erf (1.5e-7 in exact arithmetic, ~4e-7 after f32 rounding);
// check it against the exact form in f64.
TEST(CpuBackend, GeluF32MatchesExactErfForm) {
  const int64_t n = 200001;
  Tensor x = Tensor::empty({n}, DType::f32), y = Tensor::empty({n}, DType::f32);
  Tensor gy = Tensor::empty({n}, DType::f32), gx = Tensor::empty({n}, DType::f32);
  for (int64_t i = 0; i < n; ++i) {
    x.data<float>()[i] = static_cast<float>(-10.0 + 20.0 * i / (n - 1));
    gy.data<float>()[i] = 1.0f;
  }
  be().unary(UnaryOp::gelu, x, y, 0);
  be().unary_backward(UnaryOp::gelu, x, y, gy, gx, 0);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x.data<float>()[i];
    const double cdf = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0)));
    const double want = v * cdf, want_grad = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    ASSERT_LE(std::abs(y.data<float>()[i] - want), 2.5e-7 * std::abs(v) + 1e-7 * std::abs(want)) << "x = " << v;
    ASSERT_LE(std::abs(gx.data<float>()[i] - want_grad), 3e-7 * (1.0 + std::abs(v))) << "x = " << v;
  }
}

TEST(CpuBackend, UnaryBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(6);
  for (UnaryOp op : kUnaryOps)
    for (double alpha : {2.0, 0.5, -1.5, 3.0}) {
      const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::pow;
      Tensor x = rand_tensor({13, 29}, DType::f64, rng, positive ? 0.2 : -3.0, 3.0);
      if (op == UnaryOp::relu)  // keep away from the kink
        for (int64_t i = 0; i < x.numel(); ++i)
          if (std::abs(load(x, i)) < 1e-3) store(x, i, 0.5);
      Tensor gy = rand_tensor({13, 29}, DType::f64, rng);
      Tensor y = Tensor::empty({13, 29}, DType::f64), gx = Tensor::empty({13, 29}, DType::f64);
      be().unary(op, x, y, alpha);
      be().unary_backward(op, x, y, gy, gx, alpha);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const double xv = load(x, i), h = 1e-6;
        const double d = (ref::unary_value(op, xv + h, alpha) - ref::unary_value(op, xv - h, alpha)) / (2 * h);
        ASSERT_NEAR(load(gx, i), load(gy, i) * d, 1e-6 * (1 + std::abs(load(gy, i) * d)))
            << "op " << static_cast<int>(op) << " alpha " << alpha << " x " << xv;
      }
    }
}

// ---------------------------------------------------------------- binary / where

TEST(CpuBackend, BinaryWithBroadcastAndTransposedOperands) {
  const BinaryOp ops[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::maximum,
                          BinaryOp::minimum, BinaryOp::eq, BinaryOp::ne, BinaryOp::lt, BinaryOp::le,
                          BinaryOp::gt, BinaryOp::ge};
  std::mt19937 rng(7);
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64})
    for (BinaryOp op : ops) {
      if (op == BinaryOp::div && !is_floating(dt)) continue;
      for (int ka = 0; ka < 4; ++ka)
        for (int kb = 0; kb < 4; ++kb) {
          const Shape shape = (ka + kb) % 5 == 0 ? Shape{3, 40, 301} : Shape{4, 5, 6};
          Tensor a = make_view(shape, dt, rng, ka), b = make_view(shape, dt, rng, kb);
          if (op == BinaryOp::eq || op == BinaryOp::ne) be().copy(a.as_strided({1}, {1}, a.offset()),
                                                                  b.as_strided({1}, {1}, b.offset()));
          const DType od = is_comparison(op) ? DType::boolean : dt;
          Tensor out = Tensor::empty(shape, od);
          be().binary(op, a, b, out);
          for (int64_t i = 0; i < out.numel(); ++i) {
            double want = ref::binary_value(op, load(a, i), load(b, i));
            if (!is_floating(dt) && !is_comparison(op)) want = static_cast<double>(static_cast<int64_t>(want));
            ASSERT_NEAR(load(out, i), want, dt == DType::f32 ? 1e-6 * (1 + std::abs(want)) : 1e-12)
                << "op " << static_cast<int>(op) << " " << dtype_name(dt) << " kinds " << ka << kb << " i " << i;
          }
        }
    }
}

TEST(CpuBackend, BinaryMaximumPropagatesNan) {
  Tensor a = Tensor::empty({2}, DType::f32), b = Tensor::empty({2}, DType::f32), o = Tensor::empty({2}, DType::f32);
  a.data<float>()[0] = NAN, a.data<float>()[1] = 1;
  b.data<float>()[0] = 1, b.data<float>()[1] = NAN;
  be().binary(BinaryOp::maximum, a, b, o);
  EXPECT_TRUE(std::isnan(o.data<float>()[0]) && std::isnan(o.data<float>()[1]));
}

TEST(CpuBackend, WhereSelectsPerElement) {
  std::mt19937 rng(8);
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    Tensor cond = Tensor::empty({31, 17}, DType::boolean);
    for (int64_t i = 0; i < cond.numel(); ++i) cond.data<bool>()[i] = rng() % 2;
    Tensor a = make_view({31, 17}, dt, rng, 1), b = make_view({31, 17}, dt, rng, 3);
    Tensor out = Tensor::empty({31, 17}, dt);
    be().where(cond, a, b, out);
    for (int64_t i = 0; i < out.numel(); ++i)
      ASSERT_EQ(load(out, i), cond.data<bool>()[i] ? load(a, i) : load(b, i)) << dtype_name(dt) << " " << i;
  }
}

// ---------------------------------------------------------------- reduce

TEST(CpuBackend, ReduceMatchesReferenceOnRandomShapesAndViews) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 120; ++trial) {
    const int nd = 1 + trial % 4;
    const Shape shape = random_shape(rng, nd, nd <= 2 ? 70 : 9);
    const DType dt = std::vector<DType>{DType::f32, DType::f64, DType::i32, DType::i64}[trial % 4];
    Tensor x = make_view(shape, dt, rng, (trial / 4) % 4);
    Shape oshape = shape;
    const unsigned mask = rng();
    for (int d = 0; d < nd; ++d)
      if (mask & (1u << d)) oshape[d] = 1;
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
      Tensor out = Tensor::empty(oshape, dt), want = Tensor::empty(oshape, DType::f64);
      be().reduce(op, x, out);
      ref::reduce(op, x, want);
      ASSERT_TRUE(close(out, want, tol(dt), dt == DType::f32 ? 1e-4 : 1e-10))
          << "op " << static_cast<int>(op) << " x " << x.str() << " strides " << shape_str(x.strides()) << " out "
          << shape_str(oshape);
    }
  }
}

TEST(CpuBackend, ReduceRowColumnAndGenericFastPathsAtScale) {
  std::mt19937 rng(10);
  struct Case {
    Shape x, out;
    int kind;
  };
  const Case cases[] = {{{300, 517}, {300, 1}, 0},    {{2000, 129}, {1, 129}, 0},  {{40, 50, 60}, {1, 50, 1}, 0},
                        {{300, 517}, {1, 517}, 1},    {{64, 7, 300}, {64, 1, 300}, 0}, {{1, 100000}, {1, 1}, 0},
                        {{100000, 3}, {1, 3}, 0},     {{257, 259}, {257, 1}, 1}};
  for (const Case& c : cases)
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x = make_view(c.x, dt, rng, c.kind);
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
        Tensor out = Tensor::empty(c.out, dt), want = Tensor::empty(c.out, DType::f64);
        be().reduce(op, x, out);
        ref::reduce(op, x, want);
        ASSERT_TRUE(close(out, want, tol(dt), dt == DType::f32 ? 1e-3 : 1e-9))
            << "op " << static_cast<int>(op) << " " << x.str() << " -> " << shape_str(c.out);
      }
    }
}

TEST(CpuBackend, ArgmaxFirstIndexOfMax) {
  std::mt19937 rng(11);
  for (int kind : {0, 1, 2})
    for (int d = 0; d < 3; ++d) {
      Tensor x = make_view({6, 7, 8}, DType::f32, rng, kind);
      for (int64_t i = 0; i < x.numel(); i += 5) store(x, i, 3.0);  // ties: first index wins
      Shape os = {6, 7, 8};
      os[d] = 1;
      Tensor out = Tensor::empty(os, DType::i64), want = Tensor::empty(os, DType::i64);
      be().reduce(ReduceOp::argmax, x, out);
      ref::reduce(ReduceOp::argmax, x, want);
      ASSERT_TRUE(close(out, want, 0, 0)) << "dim " << d << " kind " << kind;
    }
}

TEST(CpuBackend, ReduceWithoutReducedDimsCopies) {
  std::mt19937 rng(12);
  Tensor x = make_view({4, 1, 5}, DType::f32, rng, 1);
  Tensor out = Tensor::empty({4, 1, 5}, DType::f32);
  be().reduce(ReduceOp::sum, x, out);
  EXPECT_TRUE(close(out, x, 0, 0));
}

// ---------------------------------------------------------------- gemm

TEST(CpuBackend, GemmMatchesReferenceWithTransposesAndBroadcastBatches) {
  std::mt19937 rng(13);
  for (int trial = 0; trial < 48; ++trial) {
    const DType dt = std::vector<DType>{DType::f32, DType::f64, DType::bf16, DType::f16}[trial % 4];
    const int64_t bsz = 1 + rng() % 3, m = 1 + rng() % 37, k = 1 + rng() % 41, n = 1 + rng() % 33;
    const bool ta = trial & 4, tb = trial & 8, ba = trial & 16, bb = trial & 32;
    auto operand = [&](int64_t r, int64_t c, bool trans, bool bcast) {
      Tensor base = trans ? rand_tensor({bcast ? 1 : bsz, c, r}, dt, rng) : rand_tensor({bcast ? 1 : bsz, r, c}, dt, rng);
      const Shape st = base.strides();
      return base.as_strided({bsz, r, c}, {bcast ? 0 : st[0], trans ? st[2] : st[1], trans ? st[1] : st[2]}, 0);
    };
    Tensor a = operand(m, k, ta, ba), b = operand(k, n, tb, bb);
    Tensor c = rand_tensor({bsz, m, n}, dt, rng), want = Tensor::empty({bsz, m, n}, DType::f64);
    be().copy(c, want);
    const double alpha = trial % 3 == 0 ? 1.0 : 0.7, beta = trial % 5 == 0 ? 0.0 : (trial % 2 ? 1.0 : -0.5);
    be().gemm(a, b, c, alpha, beta);
    ref::gemm(a, b, want, alpha, beta);
    const double rt = dt == DType::f64 ? 1e-10 : dt == DType::f32 ? 1e-5 : 2e-2;
    ASSERT_TRUE(close(c, want, rt, rt * 10)) << "trial " << trial << " " << dtype_name(dt) << " B" << bsz << " M"
                                             << m << " K" << k << " N" << n << " ta " << ta << " tb " << tb
                                             << " ba " << ba << " bb " << bb;
  }
}

TEST(CpuBackend, GemmTwoDimsAndSliceOfLargerMatrix) {
  std::mt19937 rng(14);
  Tensor big = rand_tensor({50, 64}, DType::f32, rng);
  Tensor a = big.as_strided({20, 30}, {64, 1}, 3);  // a column slice: ld 64
  Tensor b = rand_tensor({30, 10}, DType::f32, rng);
  Tensor c = Tensor::empty({20, 10}, DType::f32), want = Tensor::empty({20, 10}, DType::f64);
  be().gemm(a, b, c, 1.0, 0.0);
  ref::gemm(a, b, want, 1.0, 0.0);
  EXPECT_TRUE(close(c, want, 1e-5, 1e-5));
}

TEST(CpuBackend, GemmBetaZeroIgnoresNanInC) {
  std::mt19937 rng(15);
  Tensor a = rand_tensor({1, 4, 3}, DType::f32, rng), b = rand_tensor({1, 3, 5}, DType::f32, rng);
  Tensor c = Tensor::empty({1, 4, 5}, DType::f32), want = Tensor::empty({1, 4, 5}, DType::f64);
  be().fill(c, NAN);
  be().gemm(a, b, c, 2.0, 0.0);
  ref::gemm(a, b, want, 2.0, 0.0);
  EXPECT_TRUE(close(c, want, 1e-5, 1e-5));
}

TEST(CpuBackendDeathTest, GemmRejectsOperandWithoutUnitStride) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::mt19937 rng(16);
  Tensor base = rand_tensor({8, 8}, DType::f32, rng);
  Tensor a = base.as_strided({1, 3, 3}, {0, 16, 2}, 0), b = rand_tensor({1, 3, 3}, DType::f32, rng);
  Tensor c = Tensor::empty({1, 3, 3}, DType::f32);
  EXPECT_DEATH(be().gemm(a, b, c, 1.0, 0.0), "no unit stride");
}

// ---------------------------------------------------------------- softmax / layernorm / cross-entropy

TEST(CpuBackend, SoftmaxForwardBackwardMatchReference) {
  std::mt19937 rng(17);
  const Shape shapes[] = {{1, 1}, {3, 7}, {17, 129}, {5, 3, 1000}, {600, 65}};
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : shapes)
      for (bool log : {false, true}) {
        Tensor x = rand_tensor(s, dt, rng, -6, 6), y = Tensor::empty(s, dt), want = Tensor::empty(s, DType::f64);
        be().softmax(x, y, log);
        ref::softmax(x, want, log);
        ASSERT_TRUE(close(y, want, tol(dt), tol(dt))) << shape_str(s) << " log " << log;
        Tensor gy = rand_tensor(s, dt, rng), gx = Tensor::empty(s, dt), gwant = Tensor::empty(s, DType::f64);
        be().softmax_backward(y, gy, gx, log);
        ref::softmax_backward(y, gy, gwant, log);
        ASSERT_TRUE(close(gx, gwant, tol(dt), tol(dt))) << "backward " << shape_str(s) << " log " << log;
      }
}

TEST(CpuBackend, SoftmaxFullyMaskedRowIsStable) {
  Tensor x = Tensor::empty({2, 4}, DType::f32), y = Tensor::empty({2, 4}, DType::f32);
  be().fill(x, -INFINITY);
  x.data<float>()[4] = 0;  // row 1 has one finite entry
  be().softmax(x, y, false);
  EXPECT_EQ(y.data<float>()[4], 1.0f);
  EXPECT_EQ(y.data<float>()[5], 0.0f);
}

TEST(CpuBackend, LayernormForwardBackwardMatchReference) {
  std::mt19937 rng(18);
  const Shape shapes[] = {{1, 1}, {3, 7}, {33, 129}, {4, 5, 512}, {700, 64}};
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : shapes)
      for (int affine = 0; affine < 4; ++affine) {
        const int64_t c = s.back(), r = shape_numel(s) / c;
        Tensor x = rand_tensor(s, dt, rng, -3, 5);
        Tensor w = affine & 1 ? rand_tensor({c}, dt, rng) : Tensor();
        Tensor b = affine & 2 ? rand_tensor({c}, dt, rng) : Tensor();
        Tensor y = Tensor::empty(s, dt), mean = Tensor::empty({r}, dt), rstd = Tensor::empty({r}, dt);
        Tensor ywant = Tensor::empty(s, DType::f64), mwant = Tensor::empty({r}, DType::f64),
               rwant = Tensor::empty({r}, DType::f64);
        be().layernorm(x, w, b, 1e-5, y, mean, rstd);
        ref::layernorm(x, w, b, 1e-5, ywant, mwant, rwant);
        ASSERT_TRUE(close(y, ywant, tol(dt), tol(dt))) << shape_str(s) << " affine " << affine;
        ASSERT_TRUE(close(mean, mwant, tol(dt), tol(dt)));
        ASSERT_TRUE(close(rstd, rwant, tol(dt), tol(dt)));
        Tensor gy = rand_tensor(s, dt, rng), gx = Tensor::empty(s, dt), gw = Tensor::empty({c}, dt),
               gb = Tensor::empty({c}, dt);
        Tensor gxw = Tensor::empty(s, DType::f64), gww = Tensor::empty({c}, DType::f64),
               gbw = Tensor::empty({c}, DType::f64);
        be().layernorm_backward(x, w, mean, rstd, gy, gx, gw, gb);
        ref::layernorm_backward(x, w, mwant, rwant, gy, gxw, gww, gbw);
        const double t = dt == DType::f32 ? 2e-4 : 1e-9;
        ASSERT_TRUE(close(gx, gxw, t, t)) << "gx " << shape_str(s) << " affine " << affine;
        ASSERT_TRUE(close(gw, gww, t, t)) << "gw " << shape_str(s);
        ASSERT_TRUE(close(gb, gbw, t, t)) << "gb " << shape_str(s);
      }
}

TEST(CpuBackend, CrossEntropyForwardBackwardMatchReference) {
  std::mt19937 rng(19);
  const int64_t ignore = -100;
  for (DType dt : {DType::f32, DType::f64})
    for (double eps : {0.0, 0.1})
      for (auto [n, c] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 3}, {37, 101}, {300, 1000}}) {
        Tensor logits = rand_tensor({n, c}, dt, rng, -8, 8);
        Tensor target = Tensor::empty({n}, DType::i64);
        for (int64_t i = 0; i < n; ++i) target.data<int64_t>()[i] = i % 4 == 3 ? ignore : rng() % c;
        Tensor loss = Tensor::empty({n}, dt), lse = Tensor::empty({n}, DType::f32);
        Tensor lw = Tensor::empty({n}, DType::f64), sw = Tensor::empty({n}, DType::f64);
        be().cross_entropy(logits, target, ignore, eps, loss, lse);
        ref::cross_entropy(logits, target, ignore, eps, lw, sw);
        ASSERT_TRUE(close(loss, lw, tol(dt), tol(dt))) << "loss N" << n << " C" << c << " eps " << eps;
        ASSERT_TRUE(close(lse, sw, 2e-5, 2e-5)) << "lse N" << n << " C" << c;
        Tensor gloss = rand_tensor({n}, dt, rng), g = Tensor::empty({n, c}, dt), gw = Tensor::empty({n, c}, DType::f64);
        be().cross_entropy_backward(logits, target, lse, gloss, ignore, eps, g);
        ref::cross_entropy_backward(logits, target, lse, gloss, ignore, eps, gw);
        ASSERT_TRUE(close(g, gw, tol(dt), tol(dt))) << "glogits N" << n << " C" << c << " eps " << eps;
      }
}

// ---------------------------------------------------------------- index kernels

TEST(CpuBackend, IndexSelectAndIndexAlongEveryDim) {
  std::mt19937 rng(20);
  const Shape xs = {5, 6, 7};
  for (int64_t dim = 0; dim < 3; ++dim) {
    const int64_t len = 9;
    Tensor index = Tensor::empty({len}, DType::i64);
    for (int64_t l = 0; l < len; ++l) index.data<int64_t>()[l] = rng() % xs[dim];  // duplicates likely
    Tensor x = rand_tensor(xs, DType::f32, rng);
    Shape os = xs;
    os[dim] = len;
    Tensor out = Tensor::empty(os, DType::f32);
    be().index_select(x, dim, index, out);
    Tensor acc = rand_tensor(xs, DType::f64, rng), acc0 = Tensor::empty(xs, DType::f64);
    be().copy(acc, acc0);
    Tensor src = rand_tensor(os, DType::f64, rng);
    be().index_add(acc, dim, index, src);
    std::vector<double> want(acc0.numel());
    for (int64_t i = 0; i < acc0.numel(); ++i) want[i] = load(acc0, i);
    for (int64_t i = 0; i < os[0]; ++i)
      for (int64_t j = 0; j < os[1]; ++j)
        for (int64_t k = 0; k < os[2]; ++k) {
          int64_t c[3] = {i, j, k};
          c[dim] = index.data<int64_t>()[c[dim]];
          const int64_t xi = (c[0] * xs[1] + c[1]) * xs[2] + c[2], oi = (i * os[1] + j) * os[2] + k;
          ASSERT_EQ(load(out, oi), load(x, xi)) << "index_select dim " << dim;
          want[xi] += load(src, oi);
        }
    for (int64_t i = 0; i < acc.numel(); ++i) ASSERT_NEAR(load(acc, i), want[i], 1e-12) << "index_add dim " << dim;
  }
}

TEST(CpuBackend, IndexAddEmbeddingGradientWithDuplicatesAtScale) {
  std::mt19937 rng(21);
  const int64_t vocab = 50, hidden = 1024, tokens = 400;
  Tensor index = Tensor::empty({tokens}, DType::i64);
  for (int64_t l = 0; l < tokens; ++l) index.data<int64_t>()[l] = rng() % vocab;
  Tensor src = rand_tensor({tokens, hidden}, DType::f32, rng);
  Tensor out = Tensor::empty({vocab, hidden}, DType::f32);
  be().fill(out, 0);
  be().index_add(out, 0, index, src);
  std::vector<double> want(vocab * hidden, 0.0);
  for (int64_t l = 0; l < tokens; ++l)
    for (int64_t h = 0; h < hidden; ++h) want[index.data<int64_t>()[l] * hidden + h] += src.data<float>()[l * hidden + h];
  for (int64_t i = 0; i < vocab * hidden; ++i) ASSERT_NEAR(out.data<float>()[i], want[i], 1e-4) << i;
}

TEST(CpuBackend, GatherAndScatterAddAlongEveryDim) {
  std::mt19937 rng(22);
  const Shape xs = {4, 5, 6};
  for (int64_t dim = 0; dim < 3; ++dim)
    for (bool smaller : {false, true}) {
      Shape is = xs;
      is[dim] = 7;
      if (smaller) is[(dim + 1) % 3] -= 2;  // index smaller than x in another dim
      Tensor index = Tensor::empty(is, DType::i64);
      for (int64_t i = 0; i < index.numel(); ++i) index.data<int64_t>()[i] = rng() % xs[dim];
      Tensor x = rand_tensor(xs, DType::f64, rng), out = Tensor::empty(is, DType::f64);
      be().gather(x, dim, index, out);
      Tensor acc = rand_tensor(xs, DType::f32, rng), acc0 = Tensor::empty(xs, DType::f64);
      be().copy(acc, acc0);
      Tensor src = rand_tensor(is, DType::f32, rng);
      be().scatter_add(acc, dim, index, src);
      std::vector<double> want(acc0.numel());
      for (int64_t i = 0; i < acc0.numel(); ++i) want[i] = load(acc0, i);
      for (int64_t i = 0; i < is[0]; ++i)
        for (int64_t j = 0; j < is[1]; ++j)
          for (int64_t k = 0; k < is[2]; ++k) {
            const int64_t ii = (i * is[1] + j) * is[2] + k;
            int64_t c[3] = {i, j, k};
            c[dim] = index.data<int64_t>()[ii];
            const int64_t xi = (c[0] * xs[1] + c[1]) * xs[2] + c[2];
            ASSERT_EQ(load(out, ii), load(x, xi)) << "gather dim " << dim;
            want[xi] += load(src, ii);
          }
      for (int64_t i = 0; i < acc.numel(); ++i)
        ASSERT_NEAR(load(acc, i), want[i], 1e-5) << "scatter_add dim " << dim << " smaller " << smaller;
    }
}

TEST(CpuBackend, GatherOfBf16AndScatterAddAtScale) {
  std::mt19937 rng(23);
  const int64_t n = 3000, c = 64;
  Tensor x = rand_tensor({n, c}, DType::bf16, rng), index = Tensor::empty({n, 3}, DType::i64);
  for (int64_t i = 0; i < index.numel(); ++i) index.data<int64_t>()[i] = rng() % c;
  Tensor out = Tensor::empty({n, 3}, DType::bf16);
  be().gather(x, 1, index, out);
  for (int64_t i = 0; i < n * 3; ++i) ASSERT_EQ(load(out, i), load(x, (i / 3) * c + index.data<int64_t>()[i]));
  Tensor acc = Tensor::empty({n, c}, DType::f64), src = rand_tensor({n, 3}, DType::f64, rng);
  be().fill(acc, 0);
  be().scatter_add(acc, 1, index, src);
  std::vector<double> want(n * c, 0.0);
  for (int64_t i = 0; i < n * 3; ++i) want[(i / 3) * c + index.data<int64_t>()[i]] += load(src, i);
  for (int64_t i = 0; i < n * c; ++i) ASSERT_NEAR(load(acc, i), want[i], 1e-12);
}

// ---------------------------------------------------------------- threads

TEST(CpuBackend, ThreadSettings) {
  const char* saved = std::getenv("PARALLAX_NUM_THREADS");
  const std::string keep = saved ? saved : "";
  setenv("PARALLAX_NUM_THREADS", "3", 1);
  EXPECT_EQ(default_num_threads(), 3);
  unsetenv("PARALLAX_NUM_THREADS");
  EXPECT_EQ(default_num_threads(1000000), 1);  // never below one
  EXPECT_GE(default_num_threads(), 1);
  EXPECT_GE(default_num_threads(1), default_num_threads(2));
  if (saved) setenv("PARALLAX_NUM_THREADS", keep.c_str(), 1);
  const int before = num_threads();
  set_num_threads(2);
  EXPECT_EQ(num_threads(), 2);
  set_num_threads(before);
}

}  // namespace
}  // namespace px

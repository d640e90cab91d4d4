// Finite-difference gradient checks of the vision ops in f64: conv2d (kernels 1, 3, 7, stride, padding, dilation,
// non-square, bias on and off, chunked im2col), max_pool2d, interpolate_nearest, batch_norm, frozen_batch_norm.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;

struct ConvCase {
  std::string name;
  Shape x, w;  // (N, Cin, H, W), (Cout, Cin, kh, kw)
  Conv2dOptions o;
};

std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> v;
  v.push_back({"1x1 pointwise", {2, 3, 4, 5}, {4, 3, 1, 1}, {}});
  v.push_back({"1x1 stride 2 (downsample)", {2, 3, 5, 6}, {2, 3, 1, 1}, {.stride = 2}});
  v.push_back({"3x3 pad 1", {2, 2, 5, 4}, {3, 2, 3, 3}, {.padding = 1}});
  v.push_back({"3x3 stride 2 pad 1", {1, 2, 7, 6}, {2, 2, 3, 3}, {.stride = 2, .padding = 1}});
  v.push_back({"3x3 dilation 2 pad 2", {1, 2, 7, 8}, {2, 2, 3, 3}, {.padding = 2, .dilation = 2}});
  v.push_back({"3x3 unpadded", {2, 1, 5, 6}, {2, 1, 3, 3}, {}});
  v.push_back({"7x7 stride 2 pad 3 (stem)", {1, 3, 9, 8}, {2, 3, 7, 7}, {.stride = 2, .padding = 3}});
  ConvCase hw{"3x2 stride (2, 1) pad (1, 0) dilation (1, 2)", {2, 2, 6, 7}, {2, 2, 3, 2}, {}};
  hw.o.stride_hw = {{2, 1}};
  hw.o.padding_hw = {{1, 0}};
  hw.o.dilation_hw = {{1, 2}};
  v.push_back(hw);
  return v;
}

TEST(GradcheckConv2d, KernelsStridesPaddingDilationWithAndWithoutBias) {
  uint64_t seed = 100;
  for (const ConvCase& c : conv_cases()) {
    const Tensor x = uniform64(c.x, ++seed), w = uniform64(c.w, ++seed), b = uniform64({c.w[0]}, ++seed);
    const Conv2dOptions o = c.o;
    EXPECT_TRUE(gradcheck([o](const Inputs& v) { return conv2d(v[0], v[1], v[2], o); }, {x, w, b})) << c.name;
    EXPECT_TRUE(gradcheck([o](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), o); }, {x, w}))
        << c.name << " without bias";
  }
}

TEST(GradcheckConv2d, StridedInputsAndOneImagePerChunk) {
  Conv2dOptions one_image;
  one_image.padding = 1;
  one_image.max_col_bytes = 1;  // a chunk of one image: the loops over chunks and the gw accumulation across them
  const auto conv = [one_image](const Inputs& v) { return conv2d(v[0], v[1], v[2], one_image); };
  EXPECT_TRUE(gradcheck(conv, {uniform64({3, 2, 4, 5}, 1), uniform64({3, 2, 3, 3}, 2), uniform64({3}, 3)}));
  EXPECT_TRUE(gradcheck(conv, {transposed64({3, 2, 5, 4}, 4), narrowed64({3, 2, 3, 3}, 0, 5), uniform64({3}, 6)}));
  Conv2dOptions two_images = one_image;  // chunks of 2 and 1 images: side by side in one GEMM, then alone
  two_images.max_col_bytes = 2 * 18 * 20 * 8;
  EXPECT_TRUE(gradcheck([two_images](const Inputs& v) { return conv2d(v[0], v[1], v[2], two_images); },
                        {uniform64({3, 2, 4, 5}, 9), uniform64({3, 2, 3, 3}, 10), uniform64({3}, 11)}));
  Conv2dOptions pointwise;
  pointwise.max_col_bytes = 1;
  EXPECT_TRUE(gradcheck([pointwise](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), pointwise); },
                        {uniform64({3, 2, 3, 4}, 7), uniform64({4, 2, 1, 1}, 8)}));
}

TEST(Conv2d, ChunkedEqualsWholeBatchAndShapesFollowTorch) {
  const Tensor x = uniform64({5, 3, 11, 9}, 20), w = uniform64({4, 3, 3, 3}, 21), b = uniform64({4}, 22);
  Conv2dOptions whole{.stride = 2, .padding = 1}, chunked = whole;
  chunked.max_col_bytes = 2 * 27 * 30 * 8;  // two images' col per chunk: chunks of 2, 2, 1
  const Tensor y = conv2d(x, w, b, whole);
  EXPECT_EQ(y.shape(), (Shape{5, 4, 6, 5}));
  EXPECT_ALL_CLOSE(conv2d(x, w, b, chunked), y, 0, 0);
  // an empty batch gives an empty output, and zero gradients for the weight and bias
  Tensor wl = clone(w).detach().set_requires_grad(), bl = clone(b).detach().set_requires_grad();
  const Tensor empty = conv2d(uniform64({0, 3, 11, 9}, 23), wl, bl, whole);
  EXPECT_EQ(empty.shape(), (Shape{0, 4, 6, 5}));
  backward(sum(empty));
  EXPECT_ALL_CLOSE(wl.grad(), zeros({4, 3, 3, 3}, DType::f64), 0, 0);
  EXPECT_ALL_CLOSE(bl.grad(), zeros({4}, DType::f64), 0, 0);
}

TEST(GradcheckMaxPool2d, WindowsWithoutTies) {
  struct Pool {
    Shape x;
    int64_t kernel, stride, padding;
  };
  uint64_t seed = 200;
  for (const Pool& p : {Pool{{2, 3, 7, 6}, 3, 2, 1}, Pool{{1, 2, 6, 8}, 2, 2, 0}, Pool{{2, 1, 5, 4}, 3, 1, 1},
                        Pool{{1, 2, 9, 5}, 3, 3, 0}, Pool{{1, 1, 4, 4}, 1, 1, 0}}) {
    const auto pool = [p](const Inputs& v) { return max_pool2d(v[0], p.kernel, p.stride, p.padding); };
    EXPECT_TRUE(gradcheck(pool, {distinct64(p.x, ++seed)})) << shape_str(p.x) << " kernel " << p.kernel;
  }
  // a transposed input, all values negative (the padding must act as -inf, not 0)
  const Tensor neg = distinct64({3, 2, 6, 5}, 210);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return max_pool2d(add(v[0], -10.0), 3, 2, 1); },
                        {transpose(neg, 2, 3)}));
}

TEST(GradcheckInterpolateNearest, UpAndDownNonIntegerRatios) {
  for (auto [h, w] : {std::pair<int64_t, int64_t>{7, 10}, {2, 3}, {5, 4}, {3, 3}}) {
    const auto up = [h = h, w = w](const Inputs& v) { return interpolate_nearest(v[0], h, w); };
    EXPECT_TRUE(gradcheck(up, {uniform64({2, 3, 5, 4}, 220 + h)})) << h << "x" << w;
    EXPECT_TRUE(gradcheck(up, {transposed64({2, 4, 5}, 230 + h)})) << h << "x" << w << " (N, H, W)";
  }
}

TEST(GradcheckBatchNorm, BatchStatisticsWithAndWithoutAffine) {
  const auto bn = [](bool w, bool b) {
    return [w, b](const Inputs& v) {
      return batch_norm(v[0], w ? v[1] : Tensor(), b ? v[2] : Tensor(), Tensor(), Tensor(), /*training=*/true, 0.1,
                        1e-3);
    };
  };
  const Tensor w = uniform64({3}, 301, 0.5, 1.5), b = uniform64({3}, 302);
  for (const Tensor& x : {uniform64({2, 3, 4, 5}, 303, -2, 2), transposed64({3, 3, 5, 4}, 304, -2, 2),
                          uniform64({6, 3}, 305, -2, 2), uniform64({4, 3, 7}, 306, -2, 2)}) {
    EXPECT_TRUE(gradcheck(bn(true, true), {x, w, b})) << x.str();
    EXPECT_TRUE(gradcheck(bn(false, false), {x, w, b})) << x.str() << " without affine";
    EXPECT_TRUE(gradcheck(bn(true, false), {x, w, b})) << x.str() << " without bias";
  }
}

TEST(GradcheckBatchNorm, RunningStatisticsAndFrozen) {
  const Tensor rm = uniform64({4}, 311), rv = uniform64({4}, 312, 0.5, 2.0);
  const Tensor w = uniform64({4}, 313, 0.5, 1.5), b = uniform64({4}, 314);
  const auto eval = [rm, rv](const Inputs& v) { return batch_norm(v[0], v[1], v[2], rm, rv, /*training=*/false); };
  const auto frozen = [w, b, rm, rv](const Inputs& v) { return frozen_batch_norm(v[0], w, b, rm, rv); };
  for (const Tensor& x : {uniform64({2, 4, 3, 5}, 315, -2, 2), transposed64({1, 4, 5, 3}, 316, -2, 2)}) {
    EXPECT_TRUE(gradcheck(eval, {x, w, b})) << x.str();
    EXPECT_TRUE(gradcheck(frozen, {x})) << x.str();
    // frozen batch norm is eval batch norm with fixed buffers
    EXPECT_ALL_CLOSE(frozen_batch_norm(x, w, b, rm, rv), batch_norm(x, w, b, rm, rv, false), 1e-14, 1e-14);
  }
}

}  // namespace
}  // namespace px::test

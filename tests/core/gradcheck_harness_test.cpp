// Tests of the gradcheck harness itself: a hand-written op with a right, a wrong and a missing
// backward, strided and expanded inputs, and non-differentiable inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/node.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

// y = c * x^2 elementwise (contiguous f64), c read from `c` without a gradient for it;
// backward returns scale * 2 c x * gy (scale 1 is right). record = false builds no graph.
Tensor square(const Tensor& x, double scale, bool record = true, const Tensor& c = Tensor()) {
  const double cv = c.defined() ? host_values(c)[0] : 1.0;
  const std::vector<double> xv = host_values(x);
  Tensor y = Tensor::empty(x.shape(), DType::f64);
  for (size_t i = 0; i < xv.size(); ++i) y.data<double>()[i] = cv * xv[i] * xv[i];
  if (record && autograd::any_requires_grad({&x})) {
    autograd::attach(y, "Square", {x}, [saved = autograd::SavedTensor(x), k = scale * cv](const Tensor& gy) {
      const Tensor xs = saved.unpack("Square");
      const std::vector<double> xv = host_values(xs), gv = host_values(gy);
      Tensor gx = Tensor::empty(xs.shape(), DType::f64);
      for (size_t i = 0; i < xv.size(); ++i) gx.data<double>()[i] = k * 2 * xv[i] * gv[i];
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

TEST(GradcheckHarness, PassesRightGradient) {
  auto fn = [](const std::vector<Tensor>& v) { return square(v[0], 1.0); };
  EXPECT_TRUE(gradcheck(fn, {uniform64({3, 4}, 1)}));
  EXPECT_TRUE(gradcheck(fn, {transposed64({3, 4}, 2)}));
  EXPECT_TRUE(gradcheck(fn, {narrowed64({3, 4}, 0, 3)}));
  EXPECT_TRUE(gradcheck(fn, {expanded64({3, 4}, 1, 4)}));  // aliases' grads are summed
  EXPECT_TRUE(gradcheck(fn, {uniform64({}, 5)}));
}

TEST(GradcheckHarness, CatchesWrongGradient) {
  auto fn = [](const std::vector<Tensor>& v) { return square(v[0], 1.01); };
  const ::testing::AssertionResult r = gradcheck(fn, {uniform64({2, 3}, 6, 0.5, 1.0)});
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("input 0"), std::string::npos) << r.message();
}

TEST(GradcheckHarness, CatchesMissingGraph) {
  auto fn = [](const std::vector<Tensor>& v) { return square(v[0], 1.0, /*record=*/false); };
  const ::testing::AssertionResult r = gradcheck(fn, {uniform64({2, 3}, 7)});
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("does not require grad"), std::string::npos) << r.message();
}

TEST(GradcheckHarness, SkipsNonDifferentiableInputs) {
  // The second input scales the output but the op gives it no gradient: checked, that is a
  // failure; marked nondiff, it is neither perturbed nor checked.
  auto fn = [](const std::vector<Tensor>& v) { return square(v[0], 1.0, true, v[1]); };
  const std::vector<Tensor> inputs = {uniform64({4}, 8), uniform64({1}, 9, 1.0, 2.0)};
  EXPECT_FALSE(gradcheck(fn, inputs));
  GradcheckOptions opts;
  opts.nondiff = {1};
  EXPECT_TRUE(gradcheck(fn, inputs, opts));
  // Integer inputs are never differentiable.
  auto fn_int = [](const std::vector<Tensor>& v) { return square(v[0], 1.0); };
  EXPECT_TRUE(gradcheck(fn_int, {uniform64({4}, 10), int_tensor({1, 2}, {2})}));
}

TEST(GradcheckHarness, BuildersMakeTheLayoutsTheySay) {
  const Tensor t = transposed64({3, 4}, 1);
  EXPECT_EQ(t.shape(), (Shape{3, 4}));
  EXPECT_FALSE(t.is_contiguous());
  const Tensor n = narrowed64({3, 4}, 1, 1);
  EXPECT_EQ(n.shape(), (Shape{3, 4}));
  EXPECT_FALSE(n.is_contiguous());
  const Tensor e = expanded64({3, 4}, 0, 1);
  EXPECT_EQ(e.stride(0), 0);
  const std::vector<double> ev = host_values(e);
  EXPECT_EQ(ev[1], ev[5]);
  const std::vector<double> d = host_values(distinct64({2, 5}, 3));
  for (size_t i = 0; i < d.size(); ++i)
    for (size_t j = i + 1; j < d.size(); ++j) EXPECT_GT(std::abs(d[i] - d[j]), 0.05);
}

}  // namespace
}  // namespace px::test

// Finite-difference gradient checks of core/ops/elementwise.h, indexing.h's masked_fill/where and
// factory.h's differentiable copies, on broadcast, strided and expanded f64 inputs.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;
using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;

struct BinaryCase {
  const char* name;
  BinaryFn fn;
  bool b_nonzero;  // the right operand is a divisor
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, false},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, false},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, false},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, true},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, false},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, false},
  };
  return cases;
}

// Every binary op on the operand pair built by make(b_nonzero).
void check_all_binary(const std::function<Inputs(bool)>& make, const std::string& what) {
  for (const BinaryCase& c : binary_cases()) {
    auto fn = [&](const Inputs& v) { return c.fn(v[0], v[1]); };
    EXPECT_TRUE(gradcheck(fn, make(c.b_nonzero))) << c.name << " on " << what;
  }
}

Tensor operand(const Shape& shape, uint64_t seed, bool nonzero) {
  return nonzero ? away_from_zero64(shape, seed, 0.5, 1.5) : uniform64(shape, seed);
}

void check_shapes(const Shape& a, const Shape& b) {
  check_all_binary(
      [&](bool nz) {
        return Inputs{uniform64(a, 1), operand(b, 2, nz)};
      },
      shape_str(a) + " op " + shape_str(b));
}

TEST(GradcheckElementwise, BinarySameShape) { check_shapes({3, 4}, {3, 4}); }
TEST(GradcheckElementwise, BinaryBroadcastRight) {
  check_shapes({2, 3, 4}, {4});
  check_shapes({2, 3, 4}, {3, 1});
  check_shapes({2, 3}, {});
}
TEST(GradcheckElementwise, BinaryBroadcastLeft) {
  check_shapes({4}, {2, 3, 4});
  check_shapes({1, 3, 1}, {2, 3, 4});
  check_shapes({}, {2, 3});
}
TEST(GradcheckElementwise, BinaryBroadcastBothWays) {
  check_shapes({3, 1, 4}, {2, 1});
  check_shapes({2, 1}, {1, 3});
}

TEST(GradcheckElementwise, BinaryStridedOperands) {
  check_all_binary(
      [](bool nz) {
        return Inputs{transposed64({3, 4}, 3), nz ? narrowed64({3, 4}, 1, 4, 0.5, 1.5) : narrowed64({3, 4}, 1, 4)};
      },
      "transposed op narrowed");
  check_all_binary(
      [](bool nz) {
        return Inputs{expanded64({3, 4}, 0, 5), operand({3, 4}, 6, nz)};
      },
      "expanded op contiguous");
  check_all_binary(
      [](bool nz) {
        return Inputs{transposed64({2, 4, 3}, 7), nz ? expanded64({4, 3}, 1, 8, 0.5, 1.5) : expanded64({4, 3}, 1, 8)};
      },
      "transposed op expanded, broadcast");
}

TEST(GradcheckElementwise, SameTensorBothOperands) {
  const Tensor x = away_from_zero64({3, 4}, 9);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return add(v[0], v[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mul(v[0], v[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return div(v[0], mul(v[0], v[0])); }, {x}));
}

TEST(GradcheckElementwise, ScalarOps) {
  const Tensor x = uniform64({3, 4}, 10);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return add(v[0], 2.5); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mul(v[0], -1.5); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return v[0] - 0.25; }, {transposed64({3, 4}, 11)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return v[0] / 4.0; }, {transposed64({3, 4}, 12)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return 3.0 * v[0]; }, {expanded64({3, 4}, 1, 13)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mul(v[0], 0.0); }, {x}));
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> fn;
  std::function<Tensor(const Shape&, uint64_t)> make;  // inputs in the op's smooth domain
};

Tensor positive(const Shape& s, uint64_t seed) { return uniform64(s, seed, 0.5, 2.0); }
Tensor wide(const Shape& s, uint64_t seed) { return uniform64(s, seed, -3.0, 3.0); }
Tensor nonzero(const Shape& s, uint64_t seed) { return away_from_zero64(s, seed, 0.2, 2.0); }

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, wide},
      {"operator-", [](const Tensor& x) { return -x; }, wide},
      {"exp", [](const Tensor& x) { return exp(x); }, wide},
      {"log", [](const Tensor& x) { return log(x); }, positive},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, positive},
      {"pow 2", [](const Tensor& x) { return pow(x, 2.0); }, wide},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }, wide},
      {"pow 1", [](const Tensor& x) { return pow(x, 1.0); }, wide},
      {"pow 0.5", [](const Tensor& x) { return pow(x, 0.5); }, positive},
      {"pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, positive},
      {"pow 2.7", [](const Tensor& x) { return pow(x, 2.7); }, positive},
      {"relu", [](const Tensor& x) { return relu(x); }, nonzero},
      {"gelu", [](const Tensor& x) { return gelu(x); }, wide},
      {"tanh", [](const Tensor& x) { return tanh(x); }, wide},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, wide},
  };
  return cases;
}

TEST(GradcheckElementwise, UnaryContiguous) {
  for (const UnaryCase& c : unary_cases())
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return c.fn(v[0]); }, {c.make({3, 5}, 20)})) << c.name;
}

TEST(GradcheckElementwise, UnaryStrided) {
  for (const UnaryCase& c : unary_cases()) {
    auto fn = [&](const Inputs& v) { return c.fn(v[0]); };
    // Transposed layout: the same values read through swapped strides.
    const Tensor base = c.make({5, 3}, 21);
    const Tensor t = base.as_strided({3, 5}, {1, 3}, 0);
    EXPECT_TRUE(gradcheck(fn, {t})) << c.name << " transposed";
    const Tensor e = c.make({1, 4}, 22).as_strided({3, 4}, {0, 1}, 0);
    EXPECT_TRUE(gradcheck(fn, {e})) << c.name << " expanded";
    EXPECT_TRUE(gradcheck(fn, {c.make({}, 23)})) << c.name << " 0-d";
  }
}

TEST(GradcheckElementwise, UnaryChain) {
  auto fn = [](const Inputs& v) { return tanh(mul(gelu(v[0]), sigmoid(exp(v[0])))); };
  EXPECT_TRUE(gradcheck(fn, {uniform64({2, 3, 4}, 24)}));
}

TEST(GradcheckElementwise, SharedGradientAcrossBranches) {
  // add() hands the same gradient tensor to both branches: a backward that wrote into its
  // incoming gradient would corrupt the other branch, in whichever order they run.
  for (const UnaryCase& c : unary_cases()) {
    auto left = [&](const Inputs& v) { return add(c.fn(v[0]), mul(exp(v[1]), v[1])); };
    auto right = [&](const Inputs& v) { return add(mul(exp(v[1]), v[1]), c.fn(v[0])); };
    const Inputs in = {c.make({2, 3}, 25), uniform64({2, 3}, 26)};
    EXPECT_TRUE(gradcheck(left, in)) << c.name;
    EXPECT_TRUE(gradcheck(right, in)) << c.name;
  }
  auto many = [](const Inputs& v) {
    const Tensor x = v[0];
    return add(add(softmax(x), log_softmax(x)), add(layer_norm(x, Tensor(), Tensor()), matmul(x, transpose(x, 0, 1))));
  };
  EXPECT_TRUE(gradcheck(many, {uniform64({3, 3}, 27)}));
}

TEST(GradcheckElementwise, ToDtypeRoundTripThroughF32) {
  // The gradient comes back as f64 through an f32 hop; differences need a step above f32 rounding.
  GradcheckOptions opts;
  opts.eps = 1e-2;
  opts.rtol = 1e-4;
  opts.atol = 1e-5;
  auto fn = [](const Inputs& v) { return to_dtype(mul(to_dtype(v[0], DType::f32), 2.0), DType::f64); };
  EXPECT_TRUE(gradcheck(fn, {uniform64({3, 4}, 28)}, opts));
}

TEST(GradcheckElementwise, MaskedFill) {
  const Tensor x = uniform64({3, 4}, 30);
  const Tensor full_mask = bool_tensor({1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1}, {3, 4});
  const Tensor row_mask = bool_tensor({0, 1, 0, 1}, {1, 4});
  const Tensor col_mask = bool_tensor({1, 0, 0}, {3, 1});
  auto fn = [](const Inputs& v) { return masked_fill(v[0], v[1], 7.0); };
  EXPECT_TRUE(gradcheck(fn, {x, full_mask}));
  EXPECT_TRUE(gradcheck(fn, {x, row_mask}));
  EXPECT_TRUE(gradcheck(fn, {transposed64({3, 4}, 31), col_mask}));
  auto fn_inf = [](const Inputs& v) { return softmax(masked_fill(v[0], v[1], -1e9)); };
  EXPECT_TRUE(gradcheck(fn_inf, {x, row_mask}));
}

TEST(GradcheckElementwise, Where) {
  const Tensor cond = bool_tensor({1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1}, {3, 4});
  auto fn = [](const Inputs& v) { return where(v[0], v[1], v[2]); };
  EXPECT_TRUE(gradcheck(fn, {cond, uniform64({3, 4}, 32), uniform64({3, 4}, 33)}));
  EXPECT_TRUE(gradcheck(fn, {cond, uniform64({3, 1}, 34), uniform64({4}, 35)}));  // a, b broadcast
  EXPECT_TRUE(gradcheck(fn, {bool_tensor({0, 1, 1, 0}, {4}), transposed64({3, 4}, 36), uniform64({3, 4}, 37)}));
  EXPECT_TRUE(gradcheck(fn, {bool_tensor({0, 1}, {2, 1, 1}), uniform64({3, 4}, 38), uniform64({}, 39)}));
}

TEST(GradcheckElementwise, DifferentiableCopies) {
  auto to64 = [](const Inputs& v) { return to_dtype(v[0], DType::f64); };
  auto cl = [](const Inputs& v) { return clone(v[0]); };
  for (const Tensor& x : {uniform64({3, 4}, 40), transposed64({3, 4}, 41), expanded64({3, 4}, 0, 42)}) {
    EXPECT_TRUE(gradcheck(to64, {x}));
    EXPECT_TRUE(gradcheck(cl, {x}));
  }
  // A copy is a new tensor: the op that follows must not see it alias the input.
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mul(clone(v[0]), v[0]); }, {uniform64({5}, 43)}));
}

// Ties split the gradient in halves (torch.maximum / torch.minimum); the winner takes all of it otherwise.
TEST(GradcheckElementwise, MaximumMinimumTies) {
  Tensor a = from_vector(std::vector<double>{1, 2, 3}, {3}, DType::f64);
  Tensor b = from_vector(std::vector<double>{1, 5, 0}, {3}, DType::f64);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  backward(sum(maximum(a, b)) + sum(minimum(a, b)) * 10.0);
  EXPECT_EQ(host_values(a.grad()), (std::vector<double>{5.5, 10, 1}));
  EXPECT_EQ(host_values(b.grad()), (std::vector<double>{5.5, 1, 10}));
}

}  // namespace
}  // namespace px::test

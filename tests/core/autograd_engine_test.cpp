// Tests of core/autograd: graph shapes (diamonds, shared subexpressions, long chains), gradient
// accumulation, retain_graph, saved-tensor version checks, no_grad, detach and grad-ready hooks.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/autograd/node.h"
#include "core/ops/ops.h"
#include "core/util/error.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

Tensor leaf(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Tensor t = uniform64(shape, seed, lo, hi);
  t.set_requires_grad(true);
  return t;
}

Tensor f64(const std::vector<double>& values, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f64);
  std::copy(values.begin(), values.end(), t.data<double>());
  return t;
}

void expect_values(const Tensor& t, const std::vector<double>& expected, double tol = 1e-12) {
  ASSERT_TRUE(t.defined());
  const std::vector<double> v = host_values(t);
  ASSERT_EQ(v.size(), expected.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], expected[i], tol) << "element " << i;
}

// ---- graph shapes ----

TEST(AutogradEngine, Diamond) {
  // c = exp(x) * (3 x): dc/dx = exp(x) * 3x + exp(x) * 3.
  Tensor x = leaf({4}, 1);
  Tensor a = exp(x), b = mul(x, 3.0);
  backward(sum(mul(a, b)));
  const std::vector<double> xv = host_values(x);
  std::vector<double> expected;
  for (double v : xv) expected.push_back(std::exp(v) * 3 * v + std::exp(v) * 3);
  expect_values(x.grad(), expected);
}

TEST(AutogradEngine, DiamondOfDiamonds) {
  // y_{k+1} = 0.5 y_k + 0.5 y_k: two paths per level, 2^5 paths in all, each worth 2^-5.
  Tensor x = leaf({3}, 2, 0.5, 0.9);
  Tensor y = x;
  for (int i = 0; i < 5; ++i) y = add(mul(y, 0.5), mul(y, 0.5));  // y unchanged, 2 paths per level
  backward(sum(y));
  expect_values(x.grad(), {1, 1, 1});
}

TEST(AutogradEngine, SharedSubexpressionUsedManyTimes) {
  Tensor x = leaf({5}, 3);
  Tensor s = mul(x, x);  // used 10 times
  Tensor total = s;
  for (int i = 1; i < 10; ++i) total = add(total, s);
  backward(sum(total));
  std::vector<double> expected;
  for (double v : host_values(x)) expected.push_back(10 * 2 * v);
  expect_values(x.grad(), expected);

  Tensor w = leaf({2}, 4);  // one leaf feeding 100 ops
  Tensor acc = mul(w, 1.0);
  for (int k = 2; k <= 100; ++k) acc = add(acc, mul(w, double(k)));
  backward(sum(acc));
  expect_values(w.grad(), {5050, 5050}, 1e-9);
}

TEST(AutogradEngine, MultipleRoots) {
  Tensor x = leaf({3}, 5);
  Tensor y1 = sum(mul(x, 2.0)), y2 = sum(mul(x, x));
  backward({y1, y2});
  std::vector<double> expected;
  for (double v : host_values(x)) expected.push_back(2 + 2 * v);
  expect_values(x.grad(), expected);
}

TEST(AutogradEngine, RootThatIsAlsoAnInteriorNode) {
  Tensor x = leaf({2}, 6);
  Tensor y = mul(x, 3.0);
  Tensor z = mul(y, 2.0);
  backward({z, y}, {f64({1, 1}, {2}), f64({1, 1}, {2})});  // dz/dx + dy/dx = 6 + 3
  expect_values(x.grad(), {9, 9});
}

TEST(AutogradEngine, LeafAsRoot) {
  Tensor x = leaf({}, 7);
  backward(x);
  expect_values(x.grad(), {1});
}

TEST(AutogradEngine, GradOnlyFlowsToInputsThatRequireIt) {
  Tensor x = leaf({3}, 8);
  Tensor c = uniform64({3}, 9);
  Tensor unused = leaf({3}, 10);
  backward(sum(mul(x, c)));
  expect_values(x.grad(), host_values(c));
  EXPECT_FALSE(c.grad().defined());
  EXPECT_FALSE(unused.grad().defined());
}

// ---- accumulation and retain_graph ----

TEST(AutogradEngine, AccumulatesAcrossBackwardCalls) {
  Tensor x = leaf({3}, 11);
  backward(sum(mul(x, 2.0)));
  backward(sum(mul(x, 3.0)));  // a new graph
  expect_values(x.grad(), {5, 5, 5});
}

TEST(AutogradEngine, RetainGraphAllowsASecondBackward) {
  Tensor x = leaf({3}, 12);
  Tensor loss = sum(mul(exp(x), x));
  backward(loss, Tensor(), /*retain_graph=*/true);
  const std::vector<double> once = host_values(x.grad());
  backward(loss, Tensor(), /*retain_graph=*/true);
  backward(loss);
  std::vector<double> thrice;
  for (double v : once) thrice.push_back(3 * v);
  expect_values(x.grad(), thrice);
}

TEST(AutogradEngine, SecondBackwardWithoutRetainGraphThrows) {
  Tensor x = leaf({3}, 13);
  Tensor loss = sum(mul(x, x));
  backward(loss);
  EXPECT_THROW(backward(loss), AutogradError);
  EXPECT_TRUE(grad_enabled());  // the engine's NoGradGuard unwound
  // The graph of a fresh forward is fine again.
  backward(sum(mul(x, x)));
}

TEST(AutogradEngine, BackwardWithoutRetainGraphFreesSavedTensors) {
  Tensor x = leaf({3}, 14);
  Tensor c = uniform64({3}, 15);
  std::weak_ptr<Storage> c_storage = c.storage();
  Tensor loss = sum(mul(x, c));  // mul saves c for dx
  c = Tensor();
  ASSERT_FALSE(c_storage.expired()) << "mul should have saved its other operand";
  backward(loss, Tensor(), /*retain_graph=*/true);
  EXPECT_FALSE(c_storage.expired()) << "retain_graph keeps saved tensors";
  backward(loss);
  EXPECT_TRUE(c_storage.expired()) << "saved tensors outlive a backward without retain_graph";
}

// ---- in-place modification of saved tensors ----

TEST(AutogradEngine, InPlaceAddOnSavedOperandThrows) {
  Tensor x = leaf({3}, 16);
  Tensor c = uniform64({3}, 17);
  Tensor loss = sum(mul(x, c));  // saves c
  add_(c, ones({3}, DType::f64));
  EXPECT_THROW(backward(loss), AutogradError);
  EXPECT_TRUE(grad_enabled());
}

TEST(AutogradEngine, InPlaceMulOnSavedLeafUnderNoGradThrows) {
  // Like an optimizer step between forward and backward: mul saves w to give x its gradient.
  Tensor x = leaf({3}, 18), w = leaf({3}, 19);
  Tensor loss = sum(mul(x, w));
  {
    NoGradGuard no_grad;
    mul_(w, 0.5);
  }
  EXPECT_THROW(backward(loss), AutogradError);
}

TEST(AutogradEngine, InPlaceFillOnSavedOutputThroughAViewThrows) {
  Tensor x = leaf({2, 3}, 20);
  Tensor y = exp(x);  // saves its output
  Tensor loss = sum(y);
  Tensor alias = y.detach().as_strided({3}, {1}, 3);  // second row, same storage
  fill_(alias, 0.0);
  EXPECT_THROW(backward(loss), AutogradError);
}

TEST(AutogradEngine, InPlaceBeforeForwardIsFine) {
  Tensor x = leaf({3}, 21);
  Tensor c = uniform64({3}, 22);
  add_(c, ones({3}, DType::f64));
  Tensor loss = sum(mul(x, c));  // saved after the change
  backward(loss);
  expect_values(x.grad(), host_values(c));
}

TEST(AutogradEngine, InPlaceOnATensorThatRequiresGradNeedsNoGrad) {
  Tensor w = leaf({3}, 23);
  EXPECT_THROW(add_(w, ones({3}, DType::f64)), AutogradError);
  EXPECT_THROW(mul_(w, 2.0), AutogradError);
  EXPECT_THROW(fill_(w, 0.0), AutogradError);
  EXPECT_THROW(fill_(mul(w, 2.0), 0.0), AutogradError);  // a non-leaf too
  const std::vector<double> before = host_values(w);
  {
    NoGradGuard no_grad;
    mul_(w, 2.0);
  }
  expect_values(w, {2 * before[0], 2 * before[1], 2 * before[2]});
}

TEST(AutogradEngine, BackwardLeavesTheGivenGradientAlone) {
  Tensor x = leaf({3}, 24);
  const Tensor g = f64({1, 2, 3}, {3});
  backward(x, g);  // the leaf is the root: its grad must be a copy of g
  backward(mul(x, 1.0), g);
  expect_values(g, {1, 2, 3});
  expect_values(x.grad(), {2, 4, 6});
  Tensor y = exp(x);
  backward(add(y, y), g);
  expect_values(g, {1, 2, 3});
}

// ---- grad mode, requires_grad, detach ----

TEST(AutogradEngine, NoGradRecordsNothing) {
  Tensor x = leaf({3}, 23);
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(grad_enabled());
    Tensor y = exp(mul(x, x));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_TRUE(y.is_leaf());
    {
      NoGradGuard nested;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_TRUE(grad_enabled());
  Tensor y = mul(x, x);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
}

TEST(AutogradEngine, GradModeIsPerThread) {
  Tensor x = leaf({3}, 25);
  NoGradGuard no_grad;
  bool other_enabled = false, other_requires = false;
  std::thread t([&] {
    other_enabled = grad_enabled();
    other_requires = mul(x, x).requires_grad();
  });
  t.join();
  EXPECT_TRUE(other_enabled);
  EXPECT_TRUE(other_requires);
  EXPECT_FALSE(mul(x, x).requires_grad());
}

TEST(AutogradEngine, RequiresGradPropagates) {
  Tensor x = leaf({3}, 24);
  Tensor c = uniform64({3}, 25);
  EXPECT_FALSE(c.requires_grad());
  EXPECT_TRUE(add(x, c).requires_grad());
  EXPECT_TRUE(add(c, x).requires_grad());
  EXPECT_FALSE(add(c, c).requires_grad());
  EXPECT_EQ(add(c, c).grad_fn(), nullptr);
  EXPECT_TRUE(transpose(reshape(x, {3, 1}), 0, 1).requires_grad());
  EXPECT_TRUE(sum(x).requires_grad());
  EXPECT_FALSE(argmax(x, 0).requires_grad());
}

TEST(AutogradEngine, DetachCutsTheGraph) {
  Tensor x = leaf({3}, 26);
  Tensor y = mul(x, x);
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_EQ(d.raw_data(), y.raw_data());
  const uint64_t v = y.version();
  d.bump_version();
  EXPECT_EQ(y.version(), v + 1);  // one version counter per storage

  Tensor x2 = leaf({3}, 27);
  backward(sum(mul(x2, x2.detach())));  // d/dx (x * const x) = x, not 2x
  expect_values(x2.grad(), host_values(x2));
}

TEST(AutogradEngine, SetRequiresGradOnlyOnFloatingLeaves) {
  Tensor x = leaf({3}, 28);
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.set_requires_grad(true), AutogradError);
  EXPECT_THROW(y.set_requires_grad(false), AutogradError);
  Tensor ids = int_tensor({1, 2}, {2});
  EXPECT_THROW(ids.set_requires_grad(true), AutogradError);
  EXPECT_NO_THROW(y.detach().set_requires_grad(true));
}

TEST(AutogradEngine, BackwardArgumentErrors) {
  Tensor x = leaf({3}, 29);
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(backward(y), AutogradError);                  // non-scalar root, no gradient
  EXPECT_THROW(backward(uniform64({}, 30)), AutogradError);  // does not require grad
  backward(y, f64({1, 2, 3}, {3}));                          // explicit gradient
  expect_values(x.grad(), {2, 4, 6});
}

// ---- grad-ready hooks ----

TEST(AutogradEngine, GradReadyHookFiresOncePerBackwardWithAccumulatedGrad) {
  Tensor x = leaf({2}, 31);
  std::vector<std::vector<double>> seen;
  x.register_grad_ready_hook([&](const Tensor& g) { seen.push_back(host_values(g)); });
  backward(sum(add(mul(x, 2.0), mul(x, 3.0))));  // two uses, one hook call with 5
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<double>{5, 5}));
  backward(sum(mul(x, 4.0)));  // the second backward: the hook sees the accumulated 9
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], (std::vector<double>{9, 9}));
}

TEST(AutogradEngine, GradReadyHooksRunInReverseOrderOfUse) {
  // A stack of layers h = tanh(h W_i + b_i): the last layer's parameters are ready first.
  const int layers = 4;
  std::vector<Tensor> weights, biases;
  std::vector<std::string> order;
  for (int i = 0; i < layers; ++i) {
    weights.push_back(leaf({3, 3}, 40 + i));
    biases.push_back(leaf({3}, 50 + i));
    weights.back().register_grad_ready_hook([&order, i](const Tensor&) { order.push_back("W" + std::to_string(i)); });
    biases.back().register_grad_ready_hook([&order, i](const Tensor&) { order.push_back("b" + std::to_string(i)); });
  }
  Tensor h = uniform64({2, 3}, 60);
  for (int i = 0; i < layers; ++i) h = tanh(add(matmul(h, weights[i]), biases[i]));
  backward(sum(h));
  const std::vector<std::string> expected = {"b3", "W3", "b2", "W2", "b1", "W1", "b0", "W0"};
  EXPECT_EQ(order, expected);
}

TEST(AutogradEngine, HookOrderWithLeavesUsedInSequence) {
  Tensor a = leaf({2}, 61), b = leaf({2}, 62), c = leaf({2}, 63);
  std::vector<char> order;
  a.register_grad_ready_hook([&](const Tensor&) { order.push_back('a'); });
  b.register_grad_ready_hook([&](const Tensor&) { order.push_back('b'); });
  c.register_grad_ready_hook([&](const Tensor&) { order.push_back('c'); });
  Tensor h = mul(a, 2.0);
  h = add(h, b);
  h = mul(h, c);
  backward(sum(h));
  EXPECT_EQ(order, (std::vector<char>{'c', 'b', 'a'}));
}

// Identity whose backward appends `name` to `log`: marks when the engine reaches a point.
Tensor tag(const Tensor& x, std::vector<std::string>* log, const std::string& name) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = clone(x);
  }
  if (autograd::any_requires_grad({&x}))
    autograd::attach(y, "Tag", {x}, [log, name](const Tensor& g) {
      log->push_back(name);
      return std::vector<Tensor>{g};
    });
  return y;
}

TEST(AutogradEngine, GradReadyHooksFireAsSoonAsReadyEvenWhenAnOldGraphIsAlive) {
  // Data parallel starts each all-reduce from the hook, so a layer's hooks must fire before the
  // engine moves on to earlier layers -- also in a second step while the first step's loss (and
  // with it the leaves' AccumulateGrad nodes) is still alive.
  const int layers = 3;
  std::vector<std::string> log;
  std::vector<Tensor> weights, biases;
  for (int i = 0; i < layers; ++i) {
    weights.push_back(leaf({3, 3}, 80 + i));
    biases.push_back(leaf({3}, 90 + i));
    weights.back().register_grad_ready_hook([&log, i](const Tensor&) { log.push_back("W" + std::to_string(i)); });
    biases.back().register_grad_ready_hook([&log, i](const Tensor&) { log.push_back("b" + std::to_string(i)); });
  }
  auto forward = [&] {
    Tensor h = uniform64({2, 3}, 99);
    for (int i = 0; i < layers; ++i)
      h = tanh(add(matmul(tag(h, &log, "t" + std::to_string(i)), weights[i]), biases[i]));
    return sum(h);
  };
  const std::vector<std::string> expected = {"b2", "W2", "t2", "b1", "W1", "t1", "b0", "W0"};
  Tensor first = forward();
  backward(first);
  EXPECT_EQ(log, expected) << "first step";
  log.clear();
  Tensor second = forward();  // `first` still holds the old graph
  backward(second);
  EXPECT_EQ(log, expected) << "second step, previous graph alive";
}

// ---- graph lifetime ----

using OpFn = std::function<Tensor(const Tensor& x)>;

// Every differentiable op, applied to a (3, 4) input that requires grad.
std::vector<std::pair<std::string, OpFn>> all_ops() {
  const Tensor c = uniform64({3, 4}, 100, 0.5, 1.5);
  const Tensor mask = bool_tensor({1, 0, 0, 1}, {4});
  return {
      {"add", [c](const Tensor& x) { return add(x, c); }},
      {"sub", [c](const Tensor& x) { return sub(c, x); }},
      {"mul", [](const Tensor& x) { return mul(x, x); }},
      {"div", [c](const Tensor& x) { return div(x, c); }},
      {"add scalar", [](const Tensor& x) { return add(x, 1.0); }},
      {"mul scalar", [](const Tensor& x) { return mul(x, 2.0); }},
      {"neg", [](const Tensor& x) { return neg(x); }},
      {"exp", [](const Tensor& x) { return exp(x); }},
      {"log", [](const Tensor& x) { return log(x); }},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }},
      {"pow", [](const Tensor& x) { return pow(x, 3.0); }},
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"sum", [](const Tensor& x) { return sum(x, {1}); }},
      {"mean", [](const Tensor& x) { return mean(x); }},
      {"max", [](const Tensor& x) { return max(x, {0}, true); }},
      {"sum_to",
       [](const Tensor& x) {
         return sum_to(x, {1, 4});
       }},
      {"matmul", [](const Tensor& x) { return matmul(x, transpose(x, 0, 1)); }},
      {"linear", [](const Tensor& x) { return linear(x, x, reshape(narrow(x, 1, 0, 1), {3})); }},
      {"softmax", [](const Tensor& x) { return softmax(x); }},
      {"log_softmax", [](const Tensor& x) { return log_softmax(x); }},
      {"layer_norm", [](const Tensor& x) { return layer_norm(x, reshape(narrow(x, 0, 0, 1), {4}), Tensor()); }},
      {"embedding",
       [](const Tensor& x) {
         return embedding(x, int_tensor({2, 0, 2}, {3}));
       }},
      {"dropout",
       [](const Tensor& x) {
         Generator g(1);
         return dropout(x, 0.5, true, g);
       }},
      {"masked_fill", [mask](const Tensor& x) { return masked_fill(x, mask, 0.0); }},
      {"where", [mask, c](const Tensor& x) { return where(mask, x, c); }},
      {"index_select",
       [](const Tensor& x) {
         return index_select(x, 1, int_tensor({3, 3}, {2}));
       }},
      {"gather",
       [](const Tensor& x) {
         return gather(x, 1, int_tensor({0, 1, 2}, {3, 1}));
       }},
      {"cat",
       [](const Tensor& x) {
         return cat({x, x}, 0);
       }},
      {"stack",
       [](const Tensor& x) {
         return stack({x, x}, 1);
       }},
      {"split", [](const Tensor& x) { return split(x, 2, 1)[1]; }},
      {"reshape", [](const Tensor& x) { return reshape(x, {12}); }},
      {"reshape copy", [](const Tensor& x) { return reshape(transpose(x, 0, 1), {12}); }},
      {"transpose", [](const Tensor& x) { return transpose(x, 0, 1); }},
      {"permute",
       [](const Tensor& x) {
         return permute(x, {1, 0});
       }},
      {"narrow", [](const Tensor& x) { return narrow(x, 0, 1, 2); }},
      {"expand",
       [](const Tensor& x) {
         return expand(x, {2, 3, 4});
       }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, 1); }},
      {"squeeze", [](const Tensor& x) { return squeeze(unsqueeze(x, 0), 0); }},
      {"contiguous", [](const Tensor& x) { return contiguous(transpose(x, 0, 1)); }},
      {"to_dtype", [](const Tensor& x) { return to_dtype(x, DType::f64); }},
      {"clone", [](const Tensor& x) { return clone(x); }},
      {"cross_entropy",
       [](const Tensor& x) {
         return cross_entropy(x, int_tensor({1, -100, 3}, {3}), -100, 0.1);
       }},
  };
}

TEST(AutogradEngine, OpsLeaveNoReferenceCycles) {
  // An op that captured its output (not a detached SavedTensor) in its backward closure would
  // keep output -> grad_fn -> closure -> output alive forever.
  for (const auto& [name, op] : all_ops()) {
    for (bool run_backward : {false, true}) {
      Tensor x = leaf({3, 4}, 101, 0.5, 1.5);
      std::weak_ptr<TensorImpl> out_impl;
      std::weak_ptr<autograd::Node> node;
      {
        Tensor y = op(x);
        ASSERT_TRUE(y.requires_grad()) << name;
        out_impl = y.impl_ptr();
        node = y.grad_fn();
        if (run_backward) backward(y, ones(y.shape(), DType::f64));
      }
      EXPECT_TRUE(out_impl.expired()) << name << (run_backward ? " after backward" : "") << ": output leaked";
      EXPECT_TRUE(node.expired()) << name << (run_backward ? " after backward" : "") << ": graph leaked";
    }
  }
}

// ---- long chains ----

Tensor chain(const Tensor& x, int n) {
  Tensor y = x;
  for (int i = 0; i < n; ++i) y = add(mul(y, 1.0001), 0.0);
  return y;
}

// Backward through, then destruction of, a chain of 2n nodes: both iterative, no stack overflow.
void check_long_chain(int n) {
  const auto start = std::chrono::steady_clock::now();
  Tensor x = leaf({4}, 70);
  {
    Tensor y = chain(x, n);
    backward(sum(y));
  }  // y, and with it the graph, dies here
  const double expected = std::pow(1.0001, n);
  expect_values(x.grad(), std::vector<double>(4, expected), 1e-9 * expected);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::testing::Test::RecordProperty("seconds", std::to_string(seconds));
}

TEST(AutogradEngine, Chain10kOps) { check_long_chain(10000); }
TEST(AutogradEngine, Chain100kOps) { check_long_chain(100000); }  // ~1.6 s on a loaded 2-core box

TEST(AutogradEngine, LongChainDestroyedWithoutBackward) {
  Tensor x = leaf({4}, 71);
  { Tensor y = chain(x, 100000); }
  {
    Tensor y = chain(x, 10000);
    backward(sum(y), Tensor(), /*retain_graph=*/true);
  }  // retained graph, then destroyed
  SUCCEED();
}

}  // namespace
}  // namespace px::test

// core/nn against PyTorch (tests/oracle/gen_nn.py): Linear, LayerNorm, Embedding and FeedForward loaded
// with torch's weights through load_state_dict, forward and backward compared; init statistics; dropout modes.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "core/nn/dropout.h"
#include "core/nn/embedding.h"
#include "core/nn/feed_forward.h"
#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/util/error.h"
#include "tests/common/compare.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

const PxtFile& oracle() {
  static const PxtFile file("nn.pxt");
  return file;
}

// Entries "<case>.sd.<key>" as a state dict keyed by <key>.
nn::StateDict torch_state(const std::string& c) {
  nn::StateDict sd;
  const std::string prefix = c + ".sd.";
  for (const auto& [key, t] : oracle().all())
    if (key.rfind(prefix, 0) == 0) sd.emplace(key.substr(prefix.size()), t);
  return sd;
}

// x (from the oracle) as a fresh leaf that requires grad.
Tensor input(const std::string& c) { return clone(oracle().get(c + ".x")).set_requires_grad(true); }

// Runs forward with the oracle's input, backward with its upstream gradient, and compares y, dx and
// every parameter gradient.
template <typename M>
void check_case(M& module, const std::string& c, bool float_input = true, double tol = 1e-5) {
  const PxtFile& f = oracle();
  module.load_state_dict(torch_state(c));
  module.zero_grad();
  Tensor x = float_input ? input(c) : f.get(c + ".x");
  Tensor y = module.forward(x);
  EXPECT_ALL_CLOSE(y, f.get(c + ".y"), tol, tol) << c;
  backward(y, f.get(c + ".gy"));
  if (float_input) EXPECT_ALL_CLOSE(x.grad(), f.get(c + ".gx"), tol, tol) << c;
  for (const auto& [name, p] : module.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << c << " " << name;
    EXPECT_ALL_CLOSE(p.grad(), f.get(c + ".grad." + name), tol, tol) << c << " " << name;
  }
}

TEST(NnVsTorch, Linear) {
  Generator gen(1);
  nn::Linear lin(5, 3, gen);
  check_case(lin, "linear");
  nn::Linear nobias(4, 6, gen, /*bias=*/false);
  EXPECT_FALSE(nobias.bias().defined());
  EXPECT_EQ(nobias.named_parameters().size(), 1u);
  check_case(nobias, "linear_nobias");
}

TEST(NnVsTorch, LayerNorm) {
  nn::LayerNorm ln(6);
  check_case(ln, "layernorm");
  nn::LayerNorm plain(5, 1e-3, /*elementwise_affine=*/false);
  EXPECT_TRUE(plain.parameters().empty());
  check_case(plain, "layernorm_plain");
}

TEST(NnVsTorch, Embedding) {
  Generator gen(2);
  nn::Embedding emb(10, 4, gen);
  check_case(emb, "embedding", /*float_input=*/false);
}

TEST(NnVsTorch, FeedForwardEvalGeluAndRelu) {
  Generator gen(3);
  nn::FeedForward gelu_ff(6, 12, nn::Activation::gelu, 0.1, gen);
  gelu_ff.eval();
  check_case(gelu_ff, "ff_gelu");
  nn::FeedForward relu_ff(6, 10, nn::Activation::relu, 0.3, gen);
  relu_ff.eval();
  check_case(relu_ff, "ff_relu");
  // Parameter names follow torch's module.
  std::vector<std::string> names;
  for (const auto& [name, p] : relu_ff.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(relu_ff.fc1().weight().shape(), (Shape{10, 6}));
}

TEST(NnVsTorch, FeedForwardTrainingUsesDropout) {
  Generator init(4), drop(5);
  nn::FeedForward ff(6, 32, nn::Activation::relu, 0.5, init, drop);
  const Tensor x = randn({4, 6}, init);
  ff.eval();
  const Tensor y_eval = ff(x);
  EXPECT_ALL_CLOSE(ff(x), y_eval, 0, 0);  // eval is deterministic
  EXPECT_EQ(drop.offset(), 0u);  // and draws nothing
  ff.train();
  const Tensor y_train = ff(x);
  EXPECT_EQ(drop.offset(), 4u * 32u);  // one counter per hidden element
  EXPECT_FALSE(all_close(y_train, y_eval, 1e-3, 1e-3));
}

TEST(NnInit, LinearIsUniformWithinOneOverSqrtIn) {
  Generator gen(6);
  nn::Linear lin(64, 256, gen);
  const double bound = 1.0 / 8.0;
  for (const Tensor& t : {lin.weight(), lin.bias()}) {
    const std::vector<double> v = to_vector(t);
    double mean = 0, sq = 0, lo = 1, hi = -1;
    for (double e : v) {
      mean += e;
      sq += e * e;
      lo = std::min(lo, e);
      hi = std::max(hi, e);
    }
    mean /= v.size();
    const double var = sq / v.size() - mean * mean;
    EXPECT_GE(lo, -bound);
    EXPECT_LE(hi, bound);
    if (v.size() > 1000) {  // the weight: U(-b, b) has mean 0 and variance b^2 / 3
      EXPECT_NEAR(mean, 0.0, 0.01);
      EXPECT_NEAR(var, bound * bound / 3, 0.05 * bound * bound / 3);
      EXPECT_GT(hi, 0.99 * bound);
    }
  }
  EXPECT_TRUE(lin.weight().requires_grad() && lin.weight().is_leaf());
  // Same seed, same weights.
  Generator again(6);
  nn::Linear twin(64, 256, again);
  EXPECT_ALL_CLOSE(twin.weight(), lin.weight(), 0, 0);
}

TEST(NnInit, EmbeddingIsStandardNormal) {
  Generator gen(7);
  nn::Embedding emb(500, 40, gen);
  const std::vector<double> v = to_vector(emb.weight());
  double mean = 0, sq = 0;
  for (double e : v) {
    mean += e;
    sq += e * e;
  }
  mean /= v.size();
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(sq / v.size() - mean * mean, 1.0, 0.03);
}

TEST(NnInit, LayerNormIsIdentityAffine) {
  nn::LayerNorm ln(8);
  EXPECT_ALL_CLOSE(ln.weight(), ones({8}), 0, 0);
  EXPECT_ALL_CLOSE(ln.bias(), zeros({8}), 0, 0);
}

TEST(NnDropout, InvalidProbabilityIsAConfigError) {
  Generator gen(8);
  EXPECT_THROW(nn::Dropout(1.0, gen), ConfigError);
  EXPECT_THROW(nn::Dropout(-0.1, gen), ConfigError);
  EXPECT_THROW(nn::parse_activation("swish"), ConfigError);
  EXPECT_EQ(nn::parse_activation("gelu"), nn::Activation::gelu);
}

}  // namespace
}  // namespace px::test

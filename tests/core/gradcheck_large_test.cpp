// Finite-difference gradient checks on shapes large enough (> 32768 elements, long rows) to reach
// the CPU kernels' vectorised and OpenMP-threaded paths; differences on a random sample of elements.
#include <gtest/gtest.h>

#include <vector>

#include "core/ops/ops.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;

const Shape kBig = {128, 320};  // 40960 elements

GradcheckOptions sampled(size_t n = 24) {
  GradcheckOptions o;
  o.max_checked = n;
  return o;
}

TEST(GradcheckLarge, Unary) {
  const std::vector<std::pair<const char*, GradFn>> ops = {
      {"exp", [](const Inputs& v) { return exp(v[0]); }},
      {"log", [](const Inputs& v) { return log(add(mul(v[0], v[0]), 0.5)); }},
      {"sqrt", [](const Inputs& v) { return sqrt(add(mul(v[0], v[0]), 0.5)); }},
      {"pow", [](const Inputs& v) { return pow(v[0], 3.0); }},
      {"relu", [](const Inputs& v) { return relu(v[0]); }},
      {"gelu", [](const Inputs& v) { return gelu(v[0]); }},
      {"tanh", [](const Inputs& v) { return tanh(v[0]); }},
      {"sigmoid", [](const Inputs& v) { return sigmoid(v[0]); }},
      {"scalar", [](const Inputs& v) { return add(mul(neg(v[0]), 1.5), 0.5); }},
  };
  for (const auto& [name, fn] : ops) {
    EXPECT_TRUE(gradcheck(fn, {away_from_zero64(kBig, 1, 0.05, 2.0)}, sampled(12))) << name;
    EXPECT_TRUE(gradcheck(fn, {transposed64(kBig, 2, -2, 2)}, sampled(12))) << name << " transposed";
  }
}

TEST(GradcheckLarge, BinaryBroadcast) {
  auto fn = [](const Inputs& v) { return div(sub(mul(v[0], v[1]), v[2]), v[3]); };
  EXPECT_TRUE(gradcheck(
      fn, {uniform64(kBig, 3), uniform64({320}, 4), transposed64(kBig, 5), away_from_zero64({128, 1}, 6, 0.5, 1.5)},
      sampled()));
}

TEST(GradcheckLarge, Reductions) {
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{}, {0}, {1}}) {
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return sum(v[0], dims); }, {uniform64(kBig, 7)}, sampled()));
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return mean(v[0], dims, true); }, {transposed64(kBig, 8)}, sampled()));
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return max(v[0], dims); }, {distinct64(kBig, 9, 1e-3)}, sampled()));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return sum_to(v[0], {1, 320}); }, {uniform64(kBig, 10)}, sampled()));
}

TEST(GradcheckLarge, SoftmaxLayerNorm) {
  const Tensor x = uniform64(kBig, 11, -3, 3);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return softmax(v[0]); }, {x}, sampled()));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return log_softmax(v[0]); }, {transposed64(kBig, 12, -3, 3)}, sampled()));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); },
                        {x, uniform64({320}, 13, 0.5, 1.5), uniform64({320}, 14)}, sampled()));
}

TEST(GradcheckLarge, MatmulLinear) {
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return matmul(v[0], v[1]); },
                        {uniform64({4, 64, 96}, 15), transposed64({96, 80}, 16)}, sampled()));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return linear(v[0], v[1], v[2]); },
                        {uniform64({2, 64, 96}, 17), uniform64({80, 96}, 18), uniform64({80}, 19)}, sampled()));
}

TEST(GradcheckLarge, EmbeddingIndexingLoss) {
  std::vector<int64_t> ids(2048), rows(600), targets(512);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7919) % 1000);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>((i * 31) % 128);
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = i % 9 == 0 ? -100 : static_cast<int64_t>((i * 13) % 80);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return embedding(v[0], v[1]); },
                        {uniform64({1000, 48}, 20), int_tensor(ids, {32, 64})}, sampled()));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return index_select(v[0], 0, v[1]); },
                        {uniform64(kBig, 21), int_tensor(rows, {600})}, sampled()));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return cross_entropy(v[0], v[1], -100, 0.1); },
                        {uniform64({512, 80}, 22, -3, 3), int_tensor(targets, {512})}, sampled()));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return cross_entropy(v[0], v[1], -100, 0.1, Reduction::none); },
                        {transposed64({512, 80}, 23, -3, 3), int_tensor(targets, {512})}, sampled()));
}

TEST(GradcheckLarge, Dropout) {
  auto drop = [](const Inputs& v) {
    Generator gen(99);
    return dropout(v[0], 0.3, true, gen);
  };
  EXPECT_TRUE(gradcheck(drop, {uniform64(kBig, 24)}, sampled(48)));
}

}  // namespace
}  // namespace px::test

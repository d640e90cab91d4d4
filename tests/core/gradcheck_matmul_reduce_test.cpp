// Finite-difference gradient checks of core/ops/matmul.h (matmul, linear) and core/ops/reduce.h
// (sum, mean, max, sum_to) over dims, keepdim, batch broadcasting and strided operands.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;

Tensor mm(const Inputs& v) { return matmul(v[0], v[1]); }

TEST(GradcheckMatmul, TwoD) {
  EXPECT_TRUE(gradcheck(mm, {uniform64({3, 4}, 1), uniform64({4, 5}, 2)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({1, 4}, 3), uniform64({4, 1}, 4)}));
}

TEST(GradcheckMatmul, TransposedAndNarrowedOperands) {
  EXPECT_TRUE(gradcheck(mm, {transposed64({3, 4}, 5), uniform64({4, 5}, 6)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({3, 4}, 7), transposed64({4, 5}, 8)}));
  EXPECT_TRUE(gradcheck(mm, {transposed64({3, 4}, 9), transposed64({4, 5}, 10)}));
  EXPECT_TRUE(gradcheck(mm, {narrowed64({3, 4}, 1, 11), narrowed64({4, 5}, 0, 12)}));
}

TEST(GradcheckMatmul, Batched) {
  EXPECT_TRUE(gradcheck(mm, {uniform64({2, 3, 4}, 13), uniform64({2, 4, 5}, 14)}));
  EXPECT_TRUE(gradcheck(mm, {transposed64({2, 3, 4}, 15), transposed64({2, 4, 5}, 16)}));
}

TEST(GradcheckMatmul, BroadcastBatch) {
  EXPECT_TRUE(gradcheck(mm, {uniform64({2, 3, 4}, 17), uniform64({4, 5}, 18)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({3, 4}, 19), uniform64({2, 4, 5}, 20)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({2, 1, 3, 4}, 21), uniform64({3, 4, 2}, 22)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({1, 2, 3}, 23), uniform64({2, 3, 2}, 24)}));
  EXPECT_TRUE(gradcheck(mm, {expanded64({2, 3, 4}, 0, 25), uniform64({2, 4, 5}, 26)}));  // batch stride 0
  EXPECT_TRUE(gradcheck(mm, {transposed64({2, 3, 4}, 27), uniform64({4, 5}, 28)}));  // strided a, 2-D b
  EXPECT_TRUE(gradcheck(mm, {uniform64({2, 1, 3, 4}, 29), uniform64({1, 3, 4, 2}, 30)}));  // both ways
}

TEST(GradcheckMatmul, VectorOperands) {
  EXPECT_TRUE(gradcheck(mm, {uniform64({4}, 27), uniform64({4, 5}, 28)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({3, 4}, 29), uniform64({4}, 30)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({2, 3, 4}, 33), uniform64({4}, 34)}));
  EXPECT_TRUE(gradcheck(mm, {uniform64({4}, 35), uniform64({2, 4, 3}, 36)}));
}

TEST(GradcheckMatmul, VectorDotVector) {  // (K) @ (K) -> 0-d, like torch.matmul
  EXPECT_TRUE(gradcheck(mm, {uniform64({4}, 31), uniform64({4}, 32)}));
}

TEST(GradcheckMatmul, Linear) {
  auto lin = [](const Inputs& v) { return linear(v[0], v[1], v[2]); };
  auto lin_nobias = [](const Inputs& v) { return linear(v[0], v[1]); };
  EXPECT_TRUE(gradcheck(lin, {uniform64({3, 4}, 35), uniform64({5, 4}, 36), uniform64({5}, 37)}));
  EXPECT_TRUE(gradcheck(lin, {uniform64({2, 3, 4}, 38), uniform64({5, 4}, 39), uniform64({5}, 40)}));
  EXPECT_TRUE(gradcheck(lin, {transposed64({3, 4}, 41), transposed64({5, 4}, 42), narrowed64({5}, 0, 43)}));
  EXPECT_TRUE(gradcheck(lin, {uniform64({4}, 44), uniform64({5, 4}, 45), uniform64({5}, 46)}));
  EXPECT_TRUE(gradcheck(lin_nobias, {uniform64({3, 4}, 47), uniform64({5, 4}, 48)}));
  EXPECT_TRUE(gradcheck(lin_nobias, {uniform64({2, 2, 3, 4}, 49), transposed64({2, 4}, 50)}));
}

struct ReduceCase {
  std::vector<int64_t> dims;
  bool keepdim;
};

std::string str(const ReduceCase& c) {
  std::string s = "dims {";
  for (int64_t d : c.dims) s += std::to_string(d) + ",";
  return s + "} keepdim " + (c.keepdim ? "true" : "false");
}

const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> cases = {
      {{}, false}, {{}, true},      {{0}, false},   {{1}, true},      {{-1}, false},
      {{2}, true}, {{0, 2}, false}, {{0, 2}, true}, {{-1, 0}, false}, {{0, 1, 2}, true},
  };
  return cases;
}

TEST(GradcheckReduce, Sum) {
  for (const ReduceCase& c : reduce_cases()) {
    auto fn = [&](const Inputs& v) { return sum(v[0], c.dims, c.keepdim); };
    EXPECT_TRUE(gradcheck(fn, {uniform64({2, 3, 4}, 60)})) << str(c);
    EXPECT_TRUE(gradcheck(fn, {transposed64({2, 3, 4}, 61)})) << str(c) << " transposed";
    EXPECT_TRUE(gradcheck(fn, {expanded64({2, 3, 4}, 1, 62)})) << str(c) << " expanded";
  }
}

TEST(GradcheckReduce, Mean) {
  for (const ReduceCase& c : reduce_cases()) {
    auto fn = [&](const Inputs& v) { return mean(v[0], c.dims, c.keepdim); };
    EXPECT_TRUE(gradcheck(fn, {uniform64({2, 3, 4}, 63)})) << str(c);
    EXPECT_TRUE(gradcheck(fn, {narrowed64({2, 3, 4}, 2, 64)})) << str(c) << " narrowed";
  }
}

TEST(GradcheckReduce, MaxWithoutTies) {
  for (const ReduceCase& c : reduce_cases()) {
    auto fn = [&](const Inputs& v) { return max(v[0], c.dims, c.keepdim); };
    EXPECT_TRUE(gradcheck(fn, {distinct64({2, 3, 4}, 65)})) << str(c);
    const Tensor t = distinct64({2, 4, 3}, 66).as_strided({2, 3, 4}, {12, 1, 3}, 0);
    EXPECT_TRUE(gradcheck(fn, {t})) << str(c) << " transposed";
  }
}

TEST(GradcheckReduce, OneDimAndScalarInputs) {
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return sum(v[0]); }, {uniform64({7}, 67)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mean(v[0], {0}, true); }, {uniform64({7}, 68)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return max(v[0], {0}); }, {distinct64({7}, 69)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return sum(v[0]); }, {uniform64({}, 70)}));
}

TEST(GradcheckReduce, SumTo) {
  const std::vector<Shape> targets = {{2, 3, 4}, {3, 4}, {4}, {3, 1}, {1, 4}, {2, 1, 4}, {1, 1, 1}, {}};
  for (const Shape& s : targets) {
    auto fn = [&](const Inputs& v) { return sum_to(v[0], s); };
    EXPECT_TRUE(gradcheck(fn, {uniform64({2, 3, 4}, 71)})) << shape_str(s);
    EXPECT_TRUE(gradcheck(fn, {transposed64({2, 3, 4}, 72)})) << shape_str(s) << " transposed";
  }
}

}  // namespace
}  // namespace px::test

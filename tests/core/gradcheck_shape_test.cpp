// Finite-difference gradient checks of the shape ops: views (reshape, transpose, permute, narrow,
// expand, unsqueeze, squeeze, contiguous), cat/stack/split and index_select/gather.
#include <gtest/gtest.h>

#include <vector>

#include "core/ops/ops.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;

// Each view op on a contiguous, a transposed and an expanded input; mul by a constant after the
// view makes the output a fresh tensor whatever the view returns.
void check_view(const GradFn& fn, const Shape& shape, const char* what) {
  EXPECT_TRUE(gradcheck(fn, {uniform64(shape, 1)})) << what << " contiguous";
  EXPECT_TRUE(gradcheck(fn, {transposed64(shape, 2)})) << what << " transposed";
  EXPECT_TRUE(gradcheck(fn, {expanded64(shape, 0, 3)})) << what << " expanded";
  EXPECT_TRUE(gradcheck([&](const Inputs& v) { return mul(fn(v), 2.0); }, {uniform64(shape, 4)}))
      << what << " then mul";
}

TEST(GradcheckView, Reshape) {
  check_view([](const Inputs& v) { return reshape(v[0], {6, 4}); }, {2, 3, 4}, "reshape (6, 4)");
  check_view([](const Inputs& v) { return reshape(v[0], {4, -1}); }, {2, 3, 4}, "reshape (4, -1)");
  check_view([](const Inputs& v) { return reshape(v[0], {24}); }, {2, 3, 4}, "reshape (24)");
  check_view([](const Inputs& v) { return reshape(v[0], {2, 1, 12}); }, {2, 3, 4}, "reshape (2, 1, 12)");
}

TEST(GradcheckView, TransposePermute) {
  check_view([](const Inputs& v) { return transpose(v[0], 0, 2); }, {2, 3, 4}, "transpose 0 2");
  check_view([](const Inputs& v) { return transpose(v[0], -1, -2); }, {2, 3, 4}, "transpose -1 -2");
  check_view([](const Inputs& v) { return permute(v[0], {2, 0, 1}); }, {2, 3, 4}, "permute 2 0 1");
  check_view([](const Inputs& v) { return permute(v[0], {0, 1, 2}); }, {2, 3, 4}, "permute identity");
}

TEST(GradcheckView, Narrow) {
  check_view([](const Inputs& v) { return narrow(v[0], 1, 1, 2); }, {2, 3, 4}, "narrow 1 1 2");
  check_view([](const Inputs& v) { return narrow(v[0], -1, 0, 1); }, {2, 3, 4}, "narrow -1 0 1");
  check_view([](const Inputs& v) { return narrow(narrow(v[0], 2, 1, 3), 0, 1, 1); }, {2, 3, 4}, "narrow twice");
}

TEST(GradcheckView, Expand) {
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return expand(v[0], {2, 3, 5}); }, {uniform64({3, 1}, 5)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return expand(v[0], {-1, 4}); }, {uniform64({3, 1}, 6)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return expand(v[0], {4, 3}); }, {uniform64({3}, 7)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return expand(v[0], {2, 3}); }, {uniform64({}, 8)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return expand(v[0], {2, 4, 3}); }, {transposed64({1, 3}, 9)}));
  EXPECT_TRUE(gradcheck(
      [](const Inputs& v) {
        return mul(expand(v[0], {3, 4}), v[1]);
      },
      {uniform64({1, 4}, 10), uniform64({3, 4}, 11)}));
}

TEST(GradcheckView, UnsqueezeSqueeze) {
  check_view([](const Inputs& v) { return unsqueeze(v[0], 0); }, {3, 4}, "unsqueeze 0");
  check_view([](const Inputs& v) { return unsqueeze(v[0], 1); }, {3, 4}, "unsqueeze 1");
  check_view([](const Inputs& v) { return unsqueeze(v[0], -1); }, {3, 4}, "unsqueeze -1");
  check_view([](const Inputs& v) { return squeeze(v[0], 1); }, {3, 1, 4}, "squeeze 1");
  check_view([](const Inputs& v) { return squeeze(v[0], -1); }, {3, 4, 1}, "squeeze -1");
  check_view([](const Inputs& v) { return squeeze(unsqueeze(v[0], 2), 2); }, {3, 4}, "unsqueeze squeeze");
}

TEST(GradcheckView, Contiguous) {
  check_view([](const Inputs& v) { return contiguous(v[0]); }, {3, 4}, "contiguous");
  check_view([](const Inputs& v) { return contiguous(transpose(v[0], 0, 1)); }, {3, 4}, "contiguous transpose");
}

TEST(GradcheckView, ViewChainIntoOps) {
  auto fn = [](const Inputs& v) {
    const Tensor t = permute(reshape(v[0], {2, 3, 2, 2}), {0, 2, 1, 3});  // (2, 2, 3, 2)
    return matmul(narrow(t, 2, 1, 2), transpose(v[1], 0, 1));             // (2, 2, 2, 2) @ (2, 4)
  };
  EXPECT_TRUE(gradcheck(fn, {uniform64({2, 3, 4}, 12), uniform64({4, 2}, 13)}));
}

TEST(GradcheckJoin, Cat) {
  auto cat0 = [](const Inputs& v) { return cat({v[0], v[1]}, 0); };
  auto cat1 = [](const Inputs& v) { return cat({v[0], v[1], v[2]}, 1); };
  auto catl = [](const Inputs& v) { return cat({v[0], v[1]}, -1); };
  EXPECT_TRUE(gradcheck(cat0, {uniform64({2, 3}, 20), uniform64({4, 3}, 21)}));
  EXPECT_TRUE(gradcheck(cat1, {uniform64({2, 3}, 22), uniform64({2, 1}, 23), uniform64({2, 2}, 24)}));
  EXPECT_TRUE(gradcheck(cat1, {transposed64({2, 3}, 25), expanded64({2, 1}, 0, 26), narrowed64({2, 2}, 1, 27)}));
  EXPECT_TRUE(gradcheck(catl, {uniform64({2, 2, 3}, 28), transposed64({2, 2, 2}, 29)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return cat({v[0]}, 0); }, {uniform64({3}, 30)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return cat({v[0], v[0]}, 0); }, {uniform64({3}, 31)}));
}

TEST(GradcheckJoin, Stack) {
  for (int64_t dim : {0, 1, 2, -1}) {
    auto fn = [dim](const Inputs& v) { return stack({v[0], v[1], v[2]}, dim); };
    EXPECT_TRUE(gradcheck(fn, {uniform64({2, 3}, 32), uniform64({2, 3}, 33), uniform64({2, 3}, 34)})) << dim;
    EXPECT_TRUE(gradcheck(fn, {transposed64({2, 3}, 35), expanded64({2, 3}, 1, 36), uniform64({2, 3}, 37)})) << dim;
  }
}

TEST(GradcheckJoin, Split) {
  auto weighted = [](const Inputs& v) {  // sum_i (i + 1) * sum(piece_i): every piece, its own weight
    const std::vector<Tensor> pieces = split(v[0], 3, 1);
    EXPECT_EQ(pieces.size(), 3u);
    Tensor total = sum(pieces[0]);
    for (size_t i = 1; i < pieces.size(); ++i) total = add(total, mul(sum(pieces[i]), double(i + 1)));
    return total;
  };
  EXPECT_TRUE(gradcheck(weighted, {uniform64({2, 7}, 40)}));
  EXPECT_TRUE(gradcheck(weighted, {transposed64({2, 7}, 41)}));
  // Only one piece used: the others get zero gradient.
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return split(v[0], 2, 0)[1]; }, {uniform64({5, 3}, 42)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return split(v[0], 2, 0)[2]; }, {uniform64({5, 3}, 43)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return cat(split(v[0], 2, -1), -1); }, {uniform64({3, 5}, 44)}));
}

TEST(GradcheckIndexing, IndexSelect) {
  auto fn = [](int64_t dim) { return [dim](const Inputs& v) { return index_select(v[0], dim, v[1]); }; };
  EXPECT_TRUE(gradcheck(fn(0), {uniform64({5, 3}, 50), int_tensor({4, 0, 4, 2}, {4})}));
  EXPECT_TRUE(gradcheck(fn(1), {uniform64({5, 3}, 51), int_tensor({2, 2, 0}, {3})}));
  EXPECT_TRUE(gradcheck(fn(1), {uniform64({2, 4, 3}, 52), int_tensor({3, 1, 3, 3, 0}, {5})}));
  EXPECT_TRUE(gradcheck(fn(-1), {transposed64({5, 3}, 53), int_tensor({1, 1}, {2})}));
  EXPECT_TRUE(gradcheck(fn(0), {expanded64({5, 3}, 1, 54), int_tensor({0, 3}, {2})}));
}

TEST(GradcheckIndexing, Gather) {
  auto fn = [](int64_t dim) { return [dim](const Inputs& v) { return gather(v[0], dim, v[1]); }; };
  EXPECT_TRUE(gradcheck(fn(1), {uniform64({3, 4}, 60), int_tensor({0, 3, 3, 1, 2, 2}, {3, 2})}));
  EXPECT_TRUE(gradcheck(fn(0), {uniform64({3, 4}, 61), int_tensor({2, 0, 1, 2, 2, 2, 0, 0}, {2, 4})}));
  EXPECT_TRUE(gradcheck(fn(-1), {transposed64({3, 4}, 62), int_tensor({1, 1, 1, 0, 3, 2}, {3, 2})}));
  EXPECT_TRUE(gradcheck(fn(2), {uniform64({2, 2, 3}, 63), int_tensor({0, 2, 1, 1, 2, 2, 0, 0}, {2, 2, 2})}));
}

TEST(GradcheckIndexing, StridedIndexAndMaskTensors) {
  const Tensor idx = int_tensor({0, 1, 2, 3, 3, 0}, {2, 3}).as_strided({3, 2}, {1, 3}, 0);  // transposed
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return gather(v[0], 1, v[1]); }, {uniform64({3, 4}, 64), idx}));
  const Tensor every_other = int_tensor({0, 9, 2, 9, 3, 9}, {6}).as_strided({3}, {2}, 0);
  EXPECT_TRUE(
      gradcheck([](const Inputs& v) { return index_select(v[0], 0, v[1]); }, {uniform64({4, 3}, 65), every_other}));
  const Tensor mask = bool_tensor({1, 0, 0, 1, 1, 0}, {2, 3}).as_strided({3, 2}, {1, 3}, 0);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return masked_fill(v[0], v[1], 2.0); }, {uniform64({3, 2}, 66), mask}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return where(v[1], v[0], v[2]); },
                        {uniform64({3, 2}, 67), mask, uniform64({3, 2}, 68)}));
}

TEST(GradcheckEmpty, ZeroSizedTensors) {
  EXPECT_TRUE(gradcheck(
      [](const Inputs& v) {
        return cat({v[0], v[1]}, 0);
      },
      {uniform64({2, 3}, 70), uniform64({0, 3}, 71)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return narrow(v[0], 0, 1, 0); }, {uniform64({2, 3}, 72)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return sum(v[0], {0}); }, {uniform64({0, 3}, 73)}));
  EXPECT_TRUE(
      gradcheck([](const Inputs& v) { return matmul(v[0], v[1]); }, {uniform64({2, 0}, 74), uniform64({0, 3}, 75)}));
}

}  // namespace
}  // namespace px::test

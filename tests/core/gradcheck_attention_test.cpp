// scaled_dot_product_attention: its hand-written backward against finite differences in f64 (masks, causal
// with more keys than queries, strided inputs, dropout), and its forward against the composition of ops.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops/ops.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;

// B = 2, H = 2, T = 3, S = 4, dh = 3; row b keeps keys 0..3-b.
Tensor padding_mask() { return bool_tensor({0, 0, 0, 0, 0, 0, 1, 1}, {2, 4}); }

TEST(GradcheckAttention, PlainAndMasked) {
  const Tensor q = uniform64({2, 2, 3, 3}, 1), k = uniform64({2, 2, 4, 3}, 2), v = uniform64({2, 2, 4, 3}, 3);
  EXPECT_TRUE(gradcheck([](const Inputs& t) { return scaled_dot_product_attention(t[0], t[1], t[2]); }, {q, k, v}));
  const Tensor mask = padding_mask();
  EXPECT_TRUE(gradcheck([&](const Inputs& t) { return scaled_dot_product_attention(t[0], t[1], t[2], mask); },
                        {q, k, v}));
}

TEST(GradcheckAttention, CausalSquareAndAfterCachedKeys) {
  const Tensor q = uniform64({2, 2, 4, 3}, 4), k = uniform64({2, 2, 4, 3}, 5), v = uniform64({2, 2, 4, 3}, 6);
  const Tensor mask = padding_mask();
  EXPECT_TRUE(gradcheck([&](const Inputs& t) { return scaled_dot_product_attention(t[0], t[1], t[2], mask, true); },
                        {q, k, v}));
  // Two queries after two cached positions: query i sees keys 0..i + 2.
  const Tensor q2 = uniform64({2, 2, 2, 3}, 7);
  EXPECT_TRUE(gradcheck([](const Inputs& t) { return scaled_dot_product_attention(t[0], t[1], t[2], Tensor(), true); },
                        {q2, k, v}));
}

TEST(GradcheckAttention, StridedInputs) {
  const Tensor q = transposed64({2, 2, 3, 3}, 8), k = narrowed64({2, 2, 4, 3}, 3, 9), v = transposed64({2, 2, 4, 3}, 10);
  EXPECT_TRUE(gradcheck([](const Inputs& t) { return scaled_dot_product_attention(t[0], t[1], t[2]); }, {q, k, v}));
}

TEST(GradcheckAttention, DropoutWithARepeatedMask) {
  const Tensor q = uniform64({2, 2, 3, 3}, 11), k = uniform64({2, 2, 4, 3}, 12), v = uniform64({2, 2, 4, 3}, 13);
  const Tensor mask = padding_mask();
  EXPECT_TRUE(gradcheck(
      [&](const Inputs& t) {
        Generator gen(21);  // the same mask at every evaluation
        return scaled_dot_product_attention(t[0], t[1], t[2], mask, false, {0.3, &gen});
      },
      {q, k, v}));
}

// The op equals matmul, masked_fill, softmax, dropout, matmul bit for bit, and draws what px::dropout draws.
TEST(Attention, ForwardIsTheCompositionOfOps) {
  const Tensor q = uniform64({2, 2, 4, 3}, 14), k = uniform64({2, 2, 4, 3}, 15), v = uniform64({2, 2, 4, 3}, 16);
  const Tensor mask = padding_mask();
  Generator op_gen(5), composed_gen(5);
  const Tensor out = scaled_dot_product_attention(q, k, v, mask, true, {0.25, &op_gen});
  constexpr double kMasked = -std::numeric_limits<double>::infinity();
  Tensor scores = matmul(q, transpose(k, 2, 3)) * (1.0 / std::sqrt(3.0));
  scores = masked_fill(scores, reshape(mask, {2, 1, 1, 4}), kMasked);
  const Tensor causal = gt(reshape(arange(4, DType::i64), {1, 4}), reshape(arange(4, DType::i64), {4, 1}));
  scores = masked_fill(scores, causal, kMasked);
  const Tensor expected = matmul(dropout(softmax(scores), 0.25, true, composed_gen), v);
  EXPECT_EQ(host_values(out), host_values(expected));
  EXPECT_EQ(op_gen.take(0), composed_gen.take(0));
}

}  // namespace
}  // namespace px::test

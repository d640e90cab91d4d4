// The topk op (beam search's selection) on the CPU: its order (value descending, ties by lower position, NaN
// first), leading dims and strided inputs, k = 1 against argmax, and the whole row against a full sort.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/ops/ops.h"

namespace px {
namespace {

std::vector<int64_t> as_ids(const Tensor& t) {
  std::vector<int64_t> ids;
  for (double v : to_vector(t)) ids.push_back(static_cast<int64_t>(v));
  return ids;
}

TEST(TopK, DescendingWithTiesByLowerPosition) {
  const Tensor x = from_vector(std::vector<double>{1, 5, 3, 5, -2, 3, 5, 0}, {2, 4});
  const TopK best = topk(x, 3);
  EXPECT_EQ(best.values.shape(), (Shape{2, 3}));
  EXPECT_EQ(best.values.dtype(), DType::f32);
  EXPECT_EQ(best.indices.dtype(), DType::i64);
  EXPECT_EQ(to_vector(best.values), (std::vector<double>{5, 5, 3, 5, 3, 0}));
  EXPECT_EQ(as_ids(best.indices), (std::vector<int64_t>{1, 3, 2, 2, 1, 3}));
}

TEST(TopK, NanRanksFirstAndMinusInfinityLast) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const Tensor x = from_vector(std::vector<double>{-inf, 2, nan, -inf, 7, nan}, {1, 6}, DType::f64);
  const TopK best = topk(x, 6);
  const std::vector<double> v = to_vector(best.values);
  EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]));
  EXPECT_EQ((std::vector<double>{v[2], v[3], v[4], v[5]}), (std::vector<double>{7, 2, -inf, -inf}));
  EXPECT_EQ(as_ids(best.indices), (std::vector<int64_t>{2, 5, 4, 1, 0, 3}));
}

// Leading dims are rows; a transposed (strided) input gives what its contiguous copy gives; k = 1 is argmax and
// k = C a stable descending sort.
TEST(TopK, LeadingDimsStridedInputsArgmaxAndFullSort) {
  Generator gen(7);
  const Tensor stored = rand({5, 2, 3, 9}, gen, -1, 1);  // (5, 2, 3, 9)
  const Tensor x = transpose(stored, 0, 2);                // (3, 2, 5, 9) strided
  const TopK best = topk(x, 4);
  ASSERT_EQ(best.values.shape(), (Shape{3, 2, 5, 4}));
  const TopK from_copy = topk(contiguous(x), 4);
  EXPECT_EQ(to_vector(best.values), to_vector(from_copy.values));
  EXPECT_EQ(as_ids(best.indices), as_ids(from_copy.indices));
  EXPECT_EQ(as_ids(reshape(topk(x, 1).indices, {3, 2, 5})), as_ids(argmax(x, -1)));

  const std::vector<double> rows = to_vector(contiguous(x));
  const TopK all = topk(x, 9);
  const std::vector<double> values = to_vector(all.values);
  const std::vector<int64_t> ids = as_ids(all.indices);
  for (size_t r = 0; r < rows.size() / 9; ++r) {
    std::vector<int64_t> order(9);
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return rows[r * 9 + a] > rows[r * 9 + b]; });
    for (size_t j = 0; j < 9; ++j) {
      EXPECT_EQ(ids[r * 9 + j], order[j]) << "row " << r << " place " << j;
      EXPECT_EQ(values[r * 9 + j], rows[r * 9 + order[j]]) << "row " << r << " place " << j;
    }
  }
}

TEST(TopK, HalfPrecisionKeepsItsDtypeAndRanksItsRoundedValues) {
  // 1.0 and 1.001 round to the same bf16 value: a tie, broken by the lower position.
  const Tensor x = from_vector(std::vector<double>{1.001, 0.5, 1.0, 2.0}, {1, 4}, DType::bf16);
  const TopK best = topk(x, 3);
  EXPECT_EQ(best.values.dtype(), DType::bf16);
  EXPECT_EQ(to_vector(best.values), (std::vector<double>{2.0, 1.0, 1.0}));
  EXPECT_EQ(as_ids(best.indices), (std::vector<int64_t>{3, 0, 2}));
}

}  // namespace
}  // namespace px

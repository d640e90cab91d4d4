// PyTorch oracle for core/ops/embedding.h, indexing.h, join.h and dropout.h (identity cases vs torch; the
// random mask is checked for consistency between forward and backward instead).
#include "tests/core/ops_vs_torch.h"

#include <cmath>

#include "core/util/error.h"

namespace px::test {
namespace {

class SelectVsTorch : public ::testing::TestWithParam<Layout> {
 protected:
  PxtFile file_{"ops_select.pxt"};
};

TEST_P(SelectVsTorch, Embedding) {
  expect_op_matches_torch(file_, "embedding", GetParam(), [](OracleRun& r) { return embedding(r.in("w"), r.in("ids")); });
}

TEST_P(SelectVsTorch, MaskedFillAndWhere) {
  expect_op_matches_torch(file_, "masked_fill", GetParam(),
                          [](OracleRun& r) { return masked_fill(r.in("x"), r.in("mask"), r.num("value")); });
  expect_op_matches_torch(file_, "masked_fill_softmax", GetParam(),
                          [](OracleRun& r) { return softmax(masked_fill(r.in("x"), r.in("mask"), r.num("value"))); });
  expect_op_matches_torch(file_, "where", GetParam(),
                          [](OracleRun& r) { return where(r.in("cond"), r.in("a"), r.in("b")); });
}

TEST_P(SelectVsTorch, IndexSelectAndGather) {
  expect_op_matches_torch(file_, "index_select", GetParam(),
                          [](OracleRun& r) { return index_select(r.in("x"), r.integer("dim"), r.in("index")); });
  expect_op_matches_torch(file_, "gather", GetParam(),
                          [](OracleRun& r) { return gather(r.in("x"), r.integer("dim"), r.in("index")); });
}

TEST_P(SelectVsTorch, GatherWithIndexSmallerThanInput) {
  expect_op_matches_torch(file_, "gather_smaller_index", GetParam(),
                          [](OracleRun& r) { return gather(r.in("x"), r.integer("dim"), r.in("index")); });
}

TEST_P(SelectVsTorch, CatStackSplit) {
  expect_op_matches_torch(file_, "cat", GetParam(), [](OracleRun& r) { return cat(r.ins("x"), r.integer("dim")); });
  expect_op_matches_torch(file_, "stack", GetParam(), [](OracleRun& r) { return stack(r.ins("x"), r.integer("dim")); });
  expect_op_matches_torch(file_, "split", GetParam(),
                          [](OracleRun& r) { return split(r.in("x"), r.integer("size"), r.integer("dim")); });
}

TEST_P(SelectVsTorch, DropoutIdentity) {
  expect_op_matches_torch(file_, "dropout", GetParam(), [](OracleRun& r) {
    Generator gen;
    return dropout(r.in("x"), r.num("p"), r.flag("training"), gen);
  });
}

INSTANTIATE_TEST_SUITE_P(Layouts, SelectVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

TEST(SelectVsTorch, EmbeddingRejectsOutOfRangeIds) {
  const PxtFile file("ops_select.pxt");
  const Tensor& w = file.get("embedding/0/f64/in/w");
  EXPECT_THROW(embedding(w, from_vector(std::vector<int64_t>{0, w.size(0)}, {2})), Error);
  EXPECT_THROW(embedding(w, from_vector(std::vector<int64_t>{-1}, {1})), Error);
}

// Where y != 0 the element was kept: y = x * scale and grad = gy * scale; elsewhere grad = 0. The same
// generator state gives the same mask again, the advanced state a different one.
TEST(SelectVsTorch, DropoutBackwardRegeneratesTheMask) {
  const PxtFile file("ops_select.pxt");
  for (const char* dt : {"f32", "f64"}) {
    const std::string prefix = std::string("dropout_mask/0/") + dt + "/";
    SCOPED_TRACE(prefix);
    OracleRun run(file, prefix, Layout::contiguous);
    const Tensor x = run.in("x"), gy = file.get(prefix + "gy/0");
    const double p = run.num("p"), scale = 1.0 / (1.0 - p), tol = atol_for(x.dtype());
    Generator gen(7);
    const Tensor y = dropout(x, p, /*training=*/true, gen);
    EXPECT_EQ(gen.offset(), static_cast<uint64_t>(x.numel()));
    backward(y, gy);
    const std::vector<double> xs = to_vector(x), ys = to_vector(y), gys = to_vector(gy), gs = to_vector(x.grad());
    int64_t dropped = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (ys[i] == 0) {
        ++dropped;
        EXPECT_EQ(gs[i], 0) << "element " << i;
      } else {
        EXPECT_NEAR(ys[i], xs[i] * scale, tol * (1 + std::abs(ys[i]))) << "element " << i;
        EXPECT_NEAR(gs[i], gys[i] * scale, tol * (1 + std::abs(gs[i]))) << "element " << i;
      }
    }
    const double n = static_cast<double>(xs.size()), rate = dropped / n;
    EXPECT_NEAR(rate, p, 6 * std::sqrt(p * (1 - p) / n)) << dropped << " of " << n << " dropped";

    Generator again(7);
    EXPECT_TRUE(all_close(dropout(x.detach(), p, true, again), y, 0, 0, "same seed and offset"));
    EXPECT_FALSE(all_close(dropout(x.detach(), p, true, again), y, 0, 0, "advanced offset"));
  }
}

}  // namespace
}  // namespace px::test

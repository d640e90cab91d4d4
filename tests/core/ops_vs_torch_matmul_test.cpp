// PyTorch oracle for core/ops/matmul.h: matmul (2-D, batched, broadcast batch, 1-D promotion, transposed
// operands) and linear (with and without bias, 3-D input), forward and backward in f32 and f64.
#include "tests/core/ops_vs_torch.h"

namespace px::test {
namespace {

class MatmulVsTorch : public ::testing::TestWithParam<Layout> {
 protected:
  PxtFile file_{"ops_matmul.pxt"};
};

TEST_P(MatmulVsTorch, Matmul) {
  expect_op_matches_torch(file_, "matmul", GetParam(), [](OracleRun& r) { return matmul(r.in("a"), r.in("b")); });
}

TEST_P(MatmulVsTorch, MatmulOfTwoVectors) {
  expect_op_matches_torch(file_, "matmul_dot", GetParam(), [](OracleRun& r) { return matmul(r.in("a"), r.in("b")); });
}

TEST_P(MatmulVsTorch, MatmulOfTransposedViews) {
  expect_op_matches_torch(file_, "matmul_at", GetParam(),
                          [](OracleRun& r) { return matmul(transpose(r.in("a"), -1, -2), r.in("b")); });
  expect_op_matches_torch(file_, "matmul_bt", GetParam(),
                          [](OracleRun& r) { return matmul(r.in("a"), transpose(r.in("b"), -1, -2)); });
}

TEST_P(MatmulVsTorch, Linear) {
  expect_op_matches_torch(file_, "linear", GetParam(), [](OracleRun& r) {
    return linear(r.in("x"), r.in("w"), r.has("b") ? r.in("b") : Tensor());
  });
}

TEST_P(MatmulVsTorch, LinearOfAVector) {
  expect_op_matches_torch(file_, "linear_vec", GetParam(),
                          [](OracleRun& r) { return linear(r.in("x"), r.in("w"), r.in("b")); });
}

INSTANTIATE_TEST_SUITE_P(Layouts, MatmulVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

}  // namespace
}  // namespace px::test

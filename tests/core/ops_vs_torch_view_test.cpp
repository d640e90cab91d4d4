// PyTorch oracle for core/ops/view.h: transpose, permute, narrow, expand, reshape (view and copy),
// unsqueeze, squeeze and contiguous, each consumed by a following op, forward and backward.
#include "tests/core/ops_vs_torch.h"

namespace px::test {
namespace {

class ViewVsTorch : public ::testing::TestWithParam<Layout> {
 protected:
  PxtFile file_{"ops_view.pxt"};
};

// Each case multiplies the view by a weight of its shape, so the next op reads the view's strides.
TEST_P(ViewVsTorch, ViewThenMul) {
  const std::pair<const char*, std::function<Tensor(OracleRun&, const Tensor&)>> views[] = {
      {"transpose", [](OracleRun& r, const Tensor& x) { return transpose(x, r.integer("dim0"), r.integer("dim1")); }},
      {"permute", [](OracleRun& r, const Tensor& x) { return permute(x, r.ints("dims")); }},
      {"narrow",
       [](OracleRun& r, const Tensor& x) { return narrow(x, r.integer("dim"), r.integer("start"), r.integer("length")); }},
      {"expand", [](OracleRun& r, const Tensor& x) { return expand(x, r.ints("shape")); }},
      {"reshape", [](OracleRun& r, const Tensor& x) { return reshape(x, r.ints("shape")); }},
      {"reshape_t", [](OracleRun& r, const Tensor& x) { return reshape(transpose(x, 0, 1), r.ints("shape")); }},
      {"unsqueeze", [](OracleRun& r, const Tensor& x) { return unsqueeze(x, r.integer("dim")); }},
      {"squeeze", [](OracleRun& r, const Tensor& x) { return squeeze(x, r.integer("dim")); }},
      {"contiguous_t",
       [](OracleRun&, const Tensor& x) {
         Tensor c = contiguous(transpose(x, 0, 1));
         EXPECT_TRUE(c.is_contiguous());
         return c;
       }},
  };
  for (const auto& [name, view] : views)
    expect_op_matches_torch(file_, name, GetParam(),
                            [&view = view](OracleRun& r) { return mul(view(r, r.in("x")), r.in("w")); });
}

TEST_P(ViewVsTorch, ViewThenOtherOps) {
  expect_op_matches_torch(file_, "transpose_add", GetParam(), [](OracleRun& r) {
    return add(transpose(r.in("x"), r.integer("dim0"), r.integer("dim1")), r.in("b"));
  });
  expect_op_matches_torch(file_, "expand_sum", GetParam(),
                          [](OracleRun& r) { return sum(expand(r.in("x"), r.ints("shape")), r.ints("dims")); });
  expect_op_matches_torch(file_, "permute_softmax", GetParam(),
                          [](OracleRun& r) { return softmax(permute(r.in("x"), r.ints("dims"))); });
  expect_op_matches_torch(file_, "narrow_matmul", GetParam(), [](OracleRun& r) {
    return matmul(narrow(r.in("x"), r.integer("dim"), r.integer("start"), r.integer("length")), r.in("b"));
  });
}

INSTANTIATE_TEST_SUITE_P(Layouts, ViewVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

}  // namespace
}  // namespace px::test

// PyTorch oracle for core/ops/reduce.h, softmax.h, layernorm.h and loss.h: sum/mean/max (keepdim, all dims,
// ties), argmax, sum_to, softmax, log_softmax, layer_norm (with/without affine) and cross_entropy.
#include "tests/core/ops_vs_torch.h"

namespace px::test {
namespace {

class ReduceVsTorch : public ::testing::TestWithParam<Layout> {
 protected:
  PxtFile file_{"ops_reduce.pxt"};
};

using Reduce = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);

TEST_P(ReduceVsTorch, SumMeanMax) {
  const std::pair<const char*, Reduce> ops[] = {{"sum", sum}, {"mean", mean}, {"max", max}};
  for (const auto& [name, fn] : ops)
    expect_op_matches_torch(file_, name, GetParam(),
                            [fn = fn](OracleRun& r) { return fn(r.in("x"), r.ints("dims"), r.flag("keepdim")); });
}

TEST_P(ReduceVsTorch, Argmax) {
  expect_op_matches_torch(file_, "argmax", GetParam(),
                          [](OracleRun& r) { return argmax(r.in("x"), r.integer("dim"), r.flag("keepdim")); });
}

TEST_P(ReduceVsTorch, SumTo) {
  expect_op_matches_torch(file_, "sum_to", GetParam(), [](OracleRun& r) { return sum_to(r.in("x"), r.ints("shape")); });
}

TEST_P(ReduceVsTorch, Softmax) {
  expect_op_matches_torch(file_, "softmax", GetParam(), [](OracleRun& r) { return softmax(r.in("x")); });
  expect_op_matches_torch(file_, "log_softmax", GetParam(), [](OracleRun& r) { return log_softmax(r.in("x")); });
}

TEST_P(ReduceVsTorch, LayerNorm) {
  expect_op_matches_torch(file_, "layer_norm", GetParam(), [](OracleRun& r) {
    return layer_norm(r.in("x"), r.has("w") ? r.in("w") : Tensor(), r.has("b") ? r.in("b") : Tensor(), r.num("eps"));
  });
}

TEST_P(ReduceVsTorch, CrossEntropy) {
  const PxtFile file("ops_loss.pxt");
  const Reduction reductions[] = {Reduction::none, Reduction::mean, Reduction::sum};  // gen_ops.py's codes
  expect_op_matches_torch(file, "cross_entropy", GetParam(), [&](OracleRun& r) {
    return cross_entropy(r.in("logits"), r.in("target"), r.integer("ignore_index"), r.num("label_smoothing"),
                         reductions[r.integer("reduction")]);
  });
}

INSTANTIATE_TEST_SUITE_P(Layouts, ReduceVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

}  // namespace
}  // namespace px::test

// PyTorch oracle for core/ops/elementwise.h (binary ops with broadcasting, scalar ops, unary math,
// comparisons) and the differentiable copies of factory.h (to_dtype, clone), in f32 and f64.
#include "tests/core/ops_vs_torch.h"

namespace px::test {
namespace {

class ElementwiseVsTorch : public ::testing::TestWithParam<Layout> {
 protected:
  PxtFile file_{"ops_elementwise.pxt"};
};

using Binary = Tensor (*)(const Tensor&, const Tensor&);
using Unary = Tensor (*)(const Tensor&);

TEST_P(ElementwiseVsTorch, BinaryWithBroadcasting) {
  const std::pair<const char*, Binary> ops[] = {{"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}};
  for (const auto& [name, fn] : ops)
    expect_op_matches_torch(file_, name, GetParam(), [fn = fn](OracleRun& r) { return fn(r.in("a"), r.in("b")); });
}

TEST_P(ElementwiseVsTorch, Scalar) {
  expect_op_matches_torch(file_, "add_scalar", GetParam(), [](OracleRun& r) { return add(r.in("x"), r.num("s")); });
  expect_op_matches_torch(file_, "mul_scalar", GetParam(), [](OracleRun& r) { return mul(r.in("x"), r.num("s")); });
}

TEST_P(ElementwiseVsTorch, Unary) {
  const std::pair<const char*, Unary> ops[] = {{"neg", neg},   {"exp", exp},         {"log", log},
                                               {"sqrt", sqrt}, {"relu", relu},       {"gelu", gelu},
                                               {"tanh", tanh}, {"sigmoid", sigmoid}};
  for (const auto& [name, fn] : ops)
    expect_op_matches_torch(file_, name, GetParam(), [fn = fn](OracleRun& r) { return fn(r.in("x")); });
}

TEST_P(ElementwiseVsTorch, Pow) {
  expect_op_matches_torch(file_, "pow", GetParam(), [](OracleRun& r) { return pow(r.in("x"), r.num("e")); });
}

TEST_P(ElementwiseVsTorch, Comparisons) {
  const std::pair<const char*, Binary> ops[] = {{"eq", eq}, {"ne", ne}, {"lt", lt}, {"le", le}, {"gt", gt}, {"ge", ge}};
  for (const auto& [name, fn] : ops)
    expect_op_matches_torch(file_, name, GetParam(), [fn = fn](OracleRun& r) { return fn(r.in("a"), r.in("b")); });
}

TEST_P(ElementwiseVsTorch, ToDtypeAndClone) {
  expect_op_matches_torch(file_, "to_dtype", GetParam(), [](OracleRun& r) {
    return to_dtype(r.in("x"), static_cast<DType>(r.integer("dtype")));
  });
  expect_op_matches_torch(file_, "clone", GetParam(), [](OracleRun& r) { return mul(clone(r.in("x")), r.in("w")); });
}

INSTANTIATE_TEST_SUITE_P(Layouts, ElementwiseVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

}  // namespace
}  // namespace px::test

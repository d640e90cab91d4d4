// PyTorch oracle for the vision ops (core/ops/conv.h): conv2d with and without bias over pointwise, strided,
// padded, dilated, 7x7 and non-square windows, forward and every gradient, f32 and f64.
#include "tests/core/ops_vs_torch.h"

namespace px::test {
namespace {

class VisionVsTorch : public ::testing::TestWithParam<Layout> {
 protected:
  PxtFile file_{"ops_vision.pxt"};
};

// A (h, w) pair of parameter `name`.
std::array<int64_t, 2> pair_of(const OracleRun& r, const std::string& name) {
  const std::vector<int64_t> v = r.ints(name);
  return {v.at(0), v.at(1)};
}

TEST_P(VisionVsTorch, Conv2d) {
  expect_op_matches_torch(file_, "conv2d", GetParam(), [](OracleRun& r) {
    Conv2dOptions o;
    o.stride_hw = pair_of(r, "stride");
    o.padding_hw = pair_of(r, "padding");
    o.dilation_hw = pair_of(r, "dilation");
    return conv2d(r.in("x"), r.in("w"), r.has("b") ? r.in("b") : Tensor(), o);
  });
}

INSTANTIATE_TEST_SUITE_P(Layouts, VisionVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

}  // namespace
}  // namespace px::test

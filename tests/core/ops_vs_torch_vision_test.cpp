// PyTorch oracle for the vision ops (conv.h, pool.h, batchnorm.h): conv2d (1x1, strided, padded, dilated, 7x7,
// non-square, bias or not), max_pool2d with ties, nearest interpolation of floats and bool masks, batch_norm.
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

TEST_P(VisionVsTorch, MaxPool2d) {
  expect_op_matches_torch(file_, "max_pool2d", GetParam(), [](OracleRun& r) {
    return max_pool2d(r.in("x"), r.integer("kernel"), r.integer("stride"), r.integer("padding"));
  });
}

TEST_P(VisionVsTorch, InterpolateNearest) {
  expect_op_matches_torch(file_, "interpolate_nearest", GetParam(), [](OracleRun& r) {
    const std::vector<int64_t> size = r.ints("size");
    return interpolate_nearest(r.in("x"), size.at(0), size.at(1));
  });
  expect_op_matches_torch(file_, "interpolate_mask", GetParam(), [](OracleRun& r) {
    const std::vector<int64_t> size = r.ints("size");
    return interpolate_nearest(r.in("mask"), size.at(0), size.at(1));
  });
}

TEST_P(VisionVsTorch, BatchNormWithBatchStatistics) {
  expect_op_matches_torch(file_, "batch_norm", GetParam(), [](OracleRun& r) {
    return batch_norm(r.in("x"), r.has("w") ? r.in("w") : Tensor(), r.has("b") ? r.in("b") : Tensor(), Tensor(),
                      Tensor(), /*training=*/true, 0.1, r.num("eps"));
  });
}

INSTANTIATE_TEST_SUITE_P(Layouts, VisionVsTorch, ::testing::Values(Layout::contiguous, Layout::transposed),
                         layout_name);

}  // namespace
}  // namespace px::test

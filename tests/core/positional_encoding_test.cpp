// DETR's 2D sine positions against the reference's PositionEmbeddingSine (tests/oracle/gen_detr.py, f64), and their
// defining properties on a hand-made mask.
#include <gtest/gtest.h>

#include <cmath>

#include "core/nn/positional_encoding.h"
#include "core/ops/ops.h"
#include "tests/common/gradcheck.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

TEST(SinePositions2d, MatchReferenceOnPaddedMasks) {
  const PxtFile file("detr_positions.pxt");
  for (int i = 0; i < 3; ++i) {
    const Tensor& mask = file.get("mask" + std::to_string(i));
    const Tensor& expected = file.get("pos" + std::to_string(i));
    const Tensor pos = nn::sine_position_encoding_2d(mask, expected.size(2) / 2, DType::f64);
    ASSERT_EQ(pos.shape(), expected.shape()) << "case " << i;
    const std::vector<double> got = host_values(pos), want = host_values(expected);
    for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-12) << "case " << i << " element " << k;
  }
}

// One image of 2 x 3 pixels with its last column padded: y counts rows (1, 2) normalised by 2, x counts columns
// (1, 2) normalised by 2, so the bottom-right unpadded pixel sits at 2 pi in both halves.
TEST(SinePositions2d, HalvesAndNormalisation) {
  const Tensor mask = bool_tensor({0, 0, 1, 0, 0, 1}, {1, 2, 3});
  const Tensor pos = nn::sine_position_encoding_2d(mask, 4, DType::f64);  // (1, 6, 8)
  const std::vector<double> v = host_values(pos);
  const double two_pi = 2 * 3.14159265358979323846, eps = 1e-6;
  const auto at = [&](int i, int j, int c) { return v[(i * 3 + j) * 8 + c]; };
  // channel 0 = sin(y), 1 = cos(y), 2 = sin(y / 100), 3 = cos(y / 100) (T^(2/4) = 100); then x.
  const double y_top = 1 / (2 + eps) * two_pi, x_mid = 2 / (2 + eps) * two_pi;
  EXPECT_NEAR(at(0, 1, 0), std::sin(y_top), 1e-12);
  EXPECT_NEAR(at(0, 1, 1), std::cos(y_top), 1e-12);
  EXPECT_NEAR(at(0, 1, 2), std::sin(y_top / 100), 1e-12);
  EXPECT_NEAR(at(0, 1, 4), std::sin(x_mid), 1e-12);
  EXPECT_NEAR(at(0, 1, 7), std::cos(x_mid / 100), 1e-12);
  // The padded column continues neither count: x there equals its left neighbour's.
  EXPECT_NEAR(at(1, 2, 4), at(1, 1, 4), 1e-12);
}

}  // namespace
}  // namespace px::test

// Tensor comparison for tests: elementwise |a - e| <= atol + rtol * |e| with a report of the worst element.
#include "tests/common/compare.h"

#include <cmath>

#include "core/ops/factory.h"

namespace px::test {

::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                                     const std::string& what) {
  if (!actual.defined() || !expected.defined())
    return ::testing::AssertionFailure() << what << ": undefined tensor";
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(actual.shape()) << " vs expected "
                                         << shape_str(expected.shape());
  const std::vector<double> a = to_vector(actual), e = to_vector(expected);
  double worst = -1;
  size_t worst_i = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - e[i]) - (atol + rtol * std::abs(e[i]));
    const bool bad = std::isnan(a[i]) != std::isnan(e[i]) || excess > 0;
    if (bad && (worst < 0 || excess > worst || std::isnan(a[i]))) {
      worst = std::isnan(excess) ? 1e300 : excess;
      worst_i = i;
    }
  }
  if (worst < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": element " << worst_i << " is " << a[worst_i]
                                       << ", expected " << e[worst_i] << " (rtol " << rtol << ", atol " << atol
                                       << ", shape " << shape_str(actual.shape()) << ")";
}

}  // namespace px::test

// scaled_dot_product_attention against PyTorch (tests/oracle/gen_attention.py, f64): the output and the
// gradients of q, k and v, with a key padding mask, and causal with fewer queries than keys.
#include <string>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "tests/common/compare.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

// f64 against torch's f64: the same products summed in different orders.
constexpr double kTol = 1e-12;

void check_case(const std::string& c, bool causal) {
  SCOPED_TRACE(c);
  const PxtFile file("attention.pxt");
  const auto leaf = [&](const std::string& name) { return clone(file.get(c + "." + name)).set_requires_grad(true); };
  const Tensor q = leaf("q"), k = leaf("k"), v = leaf("v");
  const Tensor y = scaled_dot_product_attention(q, k, v, file.get(c + ".mask"), causal);
  EXPECT_ALL_CLOSE(y, file.get(c + ".y"), kTol, kTol);
  backward(y, file.get(c + ".gy"));
  EXPECT_TRUE(all_close(q.grad(), file.get(c + ".gq"), kTol, kTol, "dq"));
  EXPECT_TRUE(all_close(k.grad(), file.get(c + ".gk"), kTol, kTol, "dk"));
  EXPECT_TRUE(all_close(v.grad(), file.get(c + ".gv"), kTol, kTol, "dv"));
}

TEST(SdpaVsTorch, KeyPaddingMask) { check_case("sdpa_pad", /*causal=*/false); }

TEST(SdpaVsTorch, CausalAfterCachedKeysWithPadding) { check_case("sdpa_causal_pad", /*causal=*/true); }

}  // namespace
}  // namespace px::test

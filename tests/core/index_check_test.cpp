// Id range checks: check_host_indices' messages (the ops' own), host ids checked inside a HostCheckedIndicesGuard
// too, the guard's nesting, and on a GPU no host sync for guarded device ids (skipped without a GPU).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/embedding.h"
#include "core/ops/factory.h"
#include "core/ops/index_check.h"
#include "core/util/error.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckHostIndices, AcceptsIdsInRangeAndNamesTheFirstBadOne) {
  EXPECT_NO_THROW(check_host_indices(from_vector(std::vector<int64_t>{0, 4, 2}, {3}), 5, "batch"));
  EXPECT_NO_THROW(check_host_indices(from_vector(std::vector<int64_t>{0, 4}, {1, 2}, DType::i32), 5, "batch"));
  EXPECT_EQ(error_of([] { check_host_indices(from_vector(std::vector<int64_t>{1, 5, -1}, {3}), 5, "batch: target"); }),
            "batch: target: index 5 out of range [0, 5)");
  EXPECT_EQ(error_of([] { check_host_indices(from_vector(std::vector<int64_t>{-3}, {1}, DType::i32), 5, "src"); }),
            "src: index -3 out of range [0, 5)");
}

TEST(HostCheckedIndicesGuard, HostIdsAreStillCheckedAndTheGuardNests) {
  EXPECT_TRUE(device_index_checks_enabled());
  const Tensor weight = zeros({5, 2});
  const Tensor bad = from_vector(std::vector<int64_t>{9}, {1});
  {
    HostCheckedIndicesGuard outer;
    EXPECT_FALSE(device_index_checks_enabled());
    {
      HostCheckedIndicesGuard inner;
      EXPECT_FALSE(device_index_checks_enabled());
    }
    EXPECT_FALSE(device_index_checks_enabled());
    EXPECT_EQ(error_of([&] { embedding(weight, bad); }), "embedding: index 9 out of range [0, 5)");
  }
  EXPECT_TRUE(device_index_checks_enabled());
  EXPECT_EQ(error_of([&] { embedding(weight, bad); }), "embedding: index 9 out of range [0, 5)");
}

#ifdef PARALLAX_WITH_CUDA
TEST(HostCheckedIndicesGuard, GuardedDeviceIdsAreNotReadBack) {
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const Tensor weight = zeros({5, 2}, DType::f32, cuda(0));
  const Tensor ids = to_device(from_vector(std::vector<int64_t>{1, 4, 0}, {3}), cuda(0));
  const Tensor bad = to_device(from_vector(std::vector<int64_t>{7}, {1}), cuda(0));
  EXPECT_EQ(error_of([&] { embedding(weight, bad); }), "embedding: index 7 out of range [0, 5)");
  HostCheckedIndicesGuard host_checked;
  const uint64_t before = cuda_host_syncs();
  const Tensor rows = embedding(weight, ids);  // (3, 2)
  EXPECT_EQ(cuda_host_syncs(), before) << "the guarded ids were read back";
  EXPECT_EQ(rows.shape(), (Shape{3, 2}));
}
#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

// The CUDA caching allocator: freed blocks are reused from their size class and empty_cache returns them.
// Skips (one line saying why) where there is no CUDA build or no GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/backend/backend.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/caching_allocator.h"
#endif

namespace px {
namespace {

#ifdef PARALLAX_WITH_CUDA

TEST(CudaCachingAllocator, ReusesFreedBlocksAndEmptiesTheCache) {
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  CudaCachingAllocator& a = cuda_caching_allocator();
  a.empty_cache();
  const CudaAllocatorStats s0 = a.stats();
  void* p = a.allocate(1000);
  EXPECT_EQ(a.stats().allocated_bytes, s0.allocated_bytes + 1024);
  a.deallocate(p, 1000);
  EXPECT_EQ(a.stats().allocated_bytes, s0.allocated_bytes);
  const uint64_t mallocs = a.stats().num_mallocs;
  void* q = a.allocate(900);  // same 1024-byte class: served from the cache
  EXPECT_EQ(q, p);
  EXPECT_EQ(a.stats().num_mallocs, mallocs);
  a.deallocate(q, 900);
  a.empty_cache();
  EXPECT_EQ(a.stats().reserved_bytes, s0.reserved_bytes);
  EXPECT_EQ(a.allocate(0), nullptr);
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

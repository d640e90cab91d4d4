// Pinned host tensors (Tensor::empty_pinned) and their asynchronous copies to the GPU: pinned where a GPU is, no
// host sync for the copy, blocks kept until their copies ran, events ordering streams. GPU cases skip in one line.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/stream.h"
#include "core/ops/ops.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/pinned_allocator.h"
#endif

namespace px {
namespace {

// Host memory either way; page-locked exactly where the GPU backend is up.
TEST(PinnedMemory, IsAContiguousHostTensorPinnedWhereAGpuIs) {
  const bool gpu = cuda_available();
  const Tensor t = Tensor::empty_pinned({3, 5}, DType::i64);  // (3, 5)
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.shape(), Shape({3, 5}));
  EXPECT_EQ(t.is_pinned(), gpu);
  EXPECT_FALSE(Tensor::empty({3, 5}, DType::i64).is_pinned());
  for (int64_t i = 0; i < 15; ++i) t.data<int64_t>()[i] = i;
  EXPECT_EQ(to_vector(t)[14], 14.0);
  EXPECT_EQ(Tensor::empty_pinned({0, 1}, DType::i64).numel(), 0);
}

TEST(PinnedMemory, StreamCallsAreNoOpsOnTheHost) {
  CopyStreamGuard guard(cpu());
  StreamEvent e = StreamEvent::record(cpu());
  EXPECT_TRUE(e.empty());
  e.block_current_stream();
  record_stream_use(Tensor::empty({2}));
}

#ifdef PARALLAX_WITH_CUDA

#define PX_SKIP_WITHOUT_GPU() \
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why

// A pinned (n) i64 tensor holding first, first + 1, ...
Tensor pinned_iota(int64_t n, int64_t first) {
  Tensor t = Tensor::empty_pinned({n}, DType::i64);
  for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = first + i;
  return t;
}

TEST(PinnedMemoryGpu, PinnedTensorsReportPinned) {
  PX_SKIP_WITHOUT_GPU();
  const Tensor t = Tensor::empty_pinned({4, 7}, DType::f32);
  EXPECT_TRUE(t.is_pinned());
  EXPECT_TRUE(transpose(t, 0, 1).is_pinned()) << "a view shares the pinned storage";
}

TEST(PinnedMemoryGpu, CopiesToTheDeviceWithoutAHostSync) {
  PX_SKIP_WITHOUT_GPU();
  const Tensor src = pinned_iota(1000, 5);  // (1000)
  const Tensor same = Tensor::empty({1000}, DType::i64, cuda());
  const Tensor converted = Tensor::empty({1000}, DType::f32, cuda());  // staged on the device, then converted
  const uint64_t before = cuda_host_syncs();
  backend_for(cuda()).copy(src, same);
  backend_for(cuda()).copy(src, converted);
  EXPECT_EQ(cuda_host_syncs(), before) << "a pinned host-to-device copy blocked the host";
  const std::vector<double> a = to_vector(same), b = to_vector(converted);
  for (int64_t i = 0; i < 1000; ++i) {
    ASSERT_EQ(a[i], 5.0 + i) << i;
    ASSERT_EQ(b[i], 5.0 + i) << i;
  }
  // A pageable copy still blocks (its staging buffer is a temporary).
  const uint64_t pageable = cuda_host_syncs();
  backend_for(cuda()).copy(from_vector(std::vector<int64_t>{1, 2}, {2}), Tensor::empty({2}, DType::i64, cuda()));
  EXPECT_EQ(cuda_host_syncs(), pageable + 1);
}

// The source block is freed and a new pinned tensor of its size is written at once, while the 64 MiB copy may
// still be reading: the allocator must hand out another block until the copy's event completes.
TEST(PinnedMemoryGpu, AFreedSourceIsNotReusedBeforeItsCopyRan) {
  PX_SKIP_WITHOUT_GPU();
  const int64_t n = int64_t{8} << 20;  // 64 MiB of i64
  const Tensor dst = Tensor::empty({n}, DType::i64, cuda());
  {
    const Tensor src = pinned_iota(n, 0);
    backend_for(cuda()).copy(src, dst);
  }
  const Tensor scribble = Tensor::empty_pinned({n}, DType::i64);
  std::memset(scribble.raw_data(), 0xff, static_cast<size_t>(n) * sizeof(int64_t));
  const std::vector<double> v = to_vector(dst);
  for (int64_t i = 0; i < n; i += 4099) ASSERT_EQ(v[i], static_cast<double>(i)) << "element " << i;
  EXPECT_EQ(v[n - 1], static_cast<double>(n - 1));
}

TEST(PinnedMemoryGpu, SteadyUseAllocatesNoNewPinnedMemory) {
  PX_SKIP_WITHOUT_GPU();
  const Tensor dst = Tensor::empty({3000}, DType::i64, cuda());
  uint64_t allocs = 0;
  for (int round = 0; round < 10; ++round) {
    {
      const Tensor src = pinned_iota(3000, round);
      backend_for(cuda()).copy(src, dst);
    }
    cuda_synchronize();  // the copy has run: its block is free for the next round
    if (round == 1) allocs = pinned_host_allocator().stats().num_host_allocs;
    if (round > 1) EXPECT_EQ(pinned_host_allocator().stats().num_host_allocs, allocs) << "round " << round;
  }
  EXPECT_EQ(to_vector(dst)[0], 9.0);
}

// A copy on the copy stream, then the compute stream waits for its event on the GPU and reads the result.
TEST(PinnedMemoryGpu, AnEventOrdersTheComputeStreamAfterTheCopyStream) {
  PX_SKIP_WITHOUT_GPU();
  const int64_t n = int64_t{4} << 20;
  Tensor on_device;
  StreamEvent copied;
  {
    CopyStreamGuard guard(cuda());
    const Tensor src = pinned_iota(n, 7);
    on_device = Tensor::empty({n}, DType::i64, cuda());
    backend_for(cuda()).copy(src, on_device);
    copied = StreamEvent::record(cuda());
  }
  const uint64_t before = cuda_host_syncs();
  copied.block_current_stream();
  record_stream_use(on_device);
  EXPECT_EQ(cuda_host_syncs(), before);
  const Tensor doubled = to_dtype(on_device, DType::f64) * 2.0;  // on the compute stream, after the copy
  const std::vector<double> v = to_vector(doubled);
  for (int64_t i = 0; i < n; i += 1021) ASSERT_EQ(v[i], 2.0 * (7 + i)) << i;
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

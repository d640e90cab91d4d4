// NcclProcessGroup in a world of one (a LocalProcessGroup as control): each collective on every dtype, ordering
// with the caller's stream, polling, many collectives in flight, split, deadlines and argument checks.
#include <gtest/gtest.h>

#if PARALLAX_WITH_NCCL

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <type_traits>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/tensor/tensor.h"
#include "parallel/comm/nccl_process_group.h"
#include "tests/common/gpu_skip.h"
#include "parallel/comm/process_group.h"
#include "tests/common/compare.h"

namespace px::parallel {
namespace {

// One-rank collectives copy or keep their operands: results must match bit for bit, so every comparison
// here uses zero tolerance (avg divides by one, which NCCL does exactly).
constexpr double kExact = 0.0;

const std::vector<DType> kReducible = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64};
const std::vector<DType> kMovable = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                     DType::i32, DType::i64, DType::u8,   DType::boolean};
const std::vector<int64_t> kOddSizes = {1, 7, 1001, 65537};

// Random host values in [-100, 100) ([0, 100) for u8, 0/1 for bool). (n, ...)
Tensor host_random(const Shape& shape, DType dtype, uint32_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(dtype == DType::u8 ? 0.0 : -100.0, 100.0);
  std::bernoulli_distribution bit(0.5);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>) p[i] = bit(gen);
      else p[i] = from_double<T>(dist(gen));
    }
  });
  return t;
}

// A host tensor like `t` whose every element differs from t's: 1000 (200 for u8), or the negation for bool.
// t (n, ...)
Tensor differing_from(const Tensor& t) {
  if (t.dtype() != DType::boolean) return full(t.shape(), t.dtype() == DType::u8 ? 200.0 : 1000.0, t.dtype());
  Tensor out = Tensor::empty(t.shape(), DType::boolean);
  for (int64_t i = 0; i < t.numel(); ++i) out.data<bool>()[i] = !t.data<bool>()[i];
  return out;
}

Tensor to_gpu(const Tensor& t) { return to_device(t, cuda(0)); }
Tensor to_host(const Tensor& t) { return to_device(t, cpu()); }

// Queues `steps` in-place "+1" kernels on the current stream: GPU work that takes many milliseconds, so a
// collective issued next is enqueued while the tensor is still being written. t (n)
void add_one_repeatedly(const Tensor& t, int steps) {
  Backend& gpu = backend_for(t.device());
  for (int i = 0; i < steps; ++i) gpu.unary(UnaryOp::add_scalar, t, t, 1.0);
}
// 2^24 f32 elements: each "+1" pass moves 128 MiB, ~30 us even at an H200's bandwidth, so 400 passes keep
// the GPU busy for >10 ms after the host has queued them in a few ms.
constexpr int64_t kLongVector = int64_t{1} << 24;
constexpr int kLongSteps = 400;

// One process on one GPU is a world of one, so every result is the one-rank identity: several ranks need
// several GPUs and mpirun. Every test skips where there is no GPU; a build without CUDA has one skipping test.
class NcclGroup : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    control_ = std::make_unique<LocalProcessGroup>("nccl-control");
    group_ = std::make_unique<NcclProcessGroup>("nccl-world", *control_, cuda(0), GroupOptions{});
  }

  std::unique_ptr<LocalProcessGroup> control_;
  std::unique_ptr<NcclProcessGroup> group_;
};

TEST_F(NcclGroup, TakesRanksFromTheControlGroup) {
  EXPECT_EQ(group_->name(), "nccl-world");
  EXPECT_EQ(group_->rank(), 0);
  EXPECT_EQ(group_->size(), 1);
  EXPECT_EQ(group_->world_ranks(), std::vector<int>{0});
  EXPECT_EQ(group_->device(), cuda(0));
}

TEST_F(NcclGroup, AllReduceOfOneRankKeepsEveryDtypeAndOp) {
  uint32_t seed = 1;
  for (DType dtype : kReducible) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::avg}) {
      if (op == ReduceOp::avg && !is_floating(dtype)) continue;  // refused (a CHECK) for integers
      for (int64_t n : kOddSizes) {
        const Tensor h = host_random({n}, dtype, seed++);
        const Tensor d = to_gpu(h);
        group_->all_reduce(d, op)->wait();
        EXPECT_TRUE(test::all_close(to_host(d), h, kExact, kExact))
            << dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n;
      }
    }
  }
}

TEST_F(NcclGroup, AllGatherOfOneRankCopiesEveryDtype) {
  uint32_t seed = 100;
  for (DType dtype : kMovable) {
    for (int64_t n : kOddSizes) {
      const Tensor h = host_random({n, 3}, dtype, seed++);
      const Tensor out = to_gpu(differing_from(h));
      group_->all_gather(to_gpu(h), out)->wait();
      EXPECT_TRUE(test::all_close(to_host(out), h, kExact, kExact)) << dtype_name(dtype) << " n=" << n;
    }
  }
}

TEST_F(NcclGroup, ReduceScatterOfOneRankCopiesEveryDtypeAndOp) {
  uint32_t seed = 200;
  for (DType dtype : kReducible) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::avg}) {
      if (op == ReduceOp::avg && !is_floating(dtype)) continue;
      for (int64_t n : kOddSizes) {
        const Tensor h = host_random({n}, dtype, seed++);
        const Tensor out = to_gpu(differing_from(h));
        group_->reduce_scatter(to_gpu(h), out, op)->wait();
        EXPECT_TRUE(test::all_close(to_host(out), h, kExact, kExact))
            << dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n;
      }
    }
  }
}

TEST_F(NcclGroup, BroadcastFromTheOnlyRankKeepsEveryDtype) {
  uint32_t seed = 300;
  for (DType dtype : kMovable) {
    for (int64_t n : kOddSizes) {
      const Tensor h = host_random({n}, dtype, seed++);
      const Tensor d = to_gpu(h);
      group_->broadcast(d, 0)->wait();
      EXPECT_TRUE(test::all_close(to_host(d), h, kExact, kExact)) << dtype_name(dtype) << " n=" << n;
    }
  }
}

TEST_F(NcclGroup, BarrierCompletes) {
  const std::shared_ptr<Work> work = group_->barrier();
  work->wait();
  EXPECT_TRUE(work->is_completed());
}

TEST_F(NcclGroup, CollectiveRunsAfterTheCurrentStreamsWorkAndBeforeLaterWork) {
  // The current stream is the legacy default stream, which the group's non-blocking stream does not
  // synchronise with implicitly: only the group's event orders the gather after the writes.
  const Tensor t = zeros({kLongVector}, DType::f32, cuda(0));
  const Tensor out = full({kLongVector}, -1.0, DType::f32, cuda(0));
  add_one_repeatedly(t, kLongSteps);
  group_->all_gather(t, out)->wait();
  mul_(out, 2.0);  // on the current stream, after wait()
  const Tensor expected = full({kLongVector}, 2.0 * kLongSteps, DType::f32);
  EXPECT_TRUE(test::all_close(to_host(out), expected, kExact, kExact));
}

TEST_F(NcclGroup, IsCompletedTurnsTrueWithoutWait) {
  const Tensor t = zeros({kLongVector}, DType::f32, cuda(0));
  add_one_repeatedly(t, kLongSteps);
  const std::shared_ptr<Work> work = group_->all_reduce(t, ReduceOp::sum);
  int not_yet = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!work->is_completed() && std::chrono::steady_clock::now() < give_up) ++not_yet;
  ASSERT_TRUE(work->is_completed());
  EXPECT_GT(not_yet, 0) << "the all-reduce behind " << kLongSteps << " queued kernels was complete at once";
  const Tensor expected = full({kLongVector}, kLongSteps, DType::f32);
  EXPECT_TRUE(test::all_close(to_host(t), expected, kExact, kExact));
}

TEST_F(NcclGroup, ManyCollectivesInFlightCompleteInAnyWaitOrder) {
  // Keep the GPU busy so that every collective below is still queued when the next is issued.
  add_one_repeatedly(zeros({kLongVector}, DType::f32, cuda(0)), kLongSteps / 4);
  struct InFlight {
    std::shared_ptr<Work> work;
    Tensor result;    // on the GPU, read after wait()
    Tensor expected;  // on the host
  };
  std::vector<InFlight> in_flight;
  for (uint32_t i = 0; i < 48; ++i) {
    const int64_t n = 1001 + 2 * i;
    const Tensor h = host_random({n}, DType::f32, 400 + i);
    if (i % 3 == 0) {
      const Tensor d = to_gpu(h);
      in_flight.push_back({group_->all_reduce(d, ReduceOp::sum), d, h});
    } else if (i % 3 == 1) {
      const Tensor d = to_gpu(h);
      in_flight.push_back({group_->broadcast(d, 0), d, h});
    } else {
      // The input is dropped here: the Work must keep its block from being reused by the fills below.
      const Tensor out = to_gpu(differing_from(h));
      in_flight.push_back({group_->all_gather(to_gpu(h), out), out, h});
      fill_(Tensor::empty({n}, DType::f32, cuda(0)), 7.0);
    }
  }
  for (auto it = in_flight.rbegin(); it != in_flight.rend(); ++it) it->work->wait();
  for (size_t i = 0; i < in_flight.size(); ++i) {
    EXPECT_TRUE(test::all_close(to_host(in_flight[i].result), in_flight[i].expected, kExact, kExact))
        << "collective " << i;
  }
}

TEST_F(NcclGroup, SplitMakesAWorkingNcclGroup) {
  std::unique_ptr<ProcessGroup> sub = group_->split(0, 0, "nccl-sub");
  ASSERT_NE(dynamic_cast<NcclProcessGroup*>(sub.get()), nullptr);
  EXPECT_EQ(sub->name(), "nccl-sub");
  EXPECT_EQ(sub->rank(), 0);
  EXPECT_EQ(sub->size(), 1);
  std::unique_ptr<ProcessGroup> subsub = sub->split(3, 5, "nccl-subsub");
  ASSERT_NE(dynamic_cast<NcclProcessGroup*>(subsub.get()), nullptr);

  for (ProcessGroup* g : {static_cast<ProcessGroup*>(group_.get()), sub.get(), subsub.get()}) {
    const Tensor h = host_random({1001}, DType::bf16, 500);
    const Tensor d = to_gpu(h);
    g->all_reduce(d, ReduceOp::avg)->wait();
    EXPECT_TRUE(test::all_close(to_host(d), h, kExact, kExact)) << g->name();
    const Tensor out = to_gpu(differing_from(h));
    g->all_gather(d, out)->wait();
    EXPECT_TRUE(test::all_close(to_host(out), h, kExact, kExact)) << g->name();
    g->barrier()->wait();
  }
}

TEST_F(NcclGroup, PassedDeadlineAbortsAndNamesTheCollective) {
  NcclProcessGroup group("nccl-deadline", *control_, cuda(0), GroupOptions{});
  group.set_timeout(std::chrono::milliseconds(1));
  const Tensor t = zeros({kLongVector}, DType::f32, cuda(0));
  add_one_repeatedly(t, kLongSteps);  // the all-reduce cannot start before these are done, >10 ms later
  const std::shared_ptr<Work> work = group.all_reduce(t, ReduceOp::sum);
  try {
    work->wait();
    FAIL() << "wait() returned although the deadline was 1 ms after issue";
  } catch (const CommError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(std::regex_search(
        what, std::regex(R"(group 'nccl-deadline' \(world ranks 0\): NCCL all_reduce #[0-9]+ \(f32, 16777216 )"
                         R"(elements, sum\) did not complete in 0\.001 s)")))
        << what;
  }
  // The communicator is aborted: later collectives of the group are refused with the first failure.
  try {
    group.barrier();
    FAIL() << "a collective was issued on an aborted communicator";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("aborted after an earlier failure"), std::string::npos) << e.what();
  }
  // The caller's stream is unaffected.
  const Tensor expected = full({kLongVector}, kLongSteps, DType::f32);
  EXPECT_TRUE(test::all_close(to_host(t), expected, kExact, kExact));
}

TEST_F(NcclGroup, RejectsTensorsOffItsDeviceOrNotContiguousOrNotReducible) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child re-runs the test: CUDA does not survive fork
  const Tensor on_host = zeros({8}, DType::f32);
  EXPECT_DEATH(group_->all_reduce(on_host, ReduceOp::sum), "needs tensors on cuda:0, got f32\\(8\\) cpu");
  const Tensor d = zeros({4, 6}, DType::f32, cuda(0));
  const Tensor transposed = d.as_strided({6, 4}, {1, 6}, 0);
  EXPECT_DEATH(group_->broadcast(transposed, 0), "broadcast needs a contiguous tensor");
  EXPECT_DEATH(group_->all_reduce(zeros({8}, DType::i32, cuda(0)), ReduceOp::avg), "avg of an integer tensor");
  EXPECT_DEATH(group_->all_reduce(zeros({8}, DType::u8, cuda(0)), ReduceOp::sum), "cannot reduce");
  EXPECT_DEATH(group_->broadcast(d, 1), "broadcast from root 1 outside 0..0");
  EXPECT_DEATH(group_->all_gather(zeros({3}, DType::f32, cuda(0)), zeros({4}, DType::f32, cuda(0))),
               "needs the whole tensor to be \\(size \\* n, ...\\)");
}

}  // namespace
}  // namespace px::parallel

#endif  // PARALLAX_WITH_NCCL

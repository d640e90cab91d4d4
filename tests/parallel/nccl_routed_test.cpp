// DeviceRoutedProcessGroup over NCCL and GradBucketer with stream waits, in a world of one on one GPU: routing,
// split and ParallelGrid, wait_on_stream ordering without a host wait, the watchdog's deadline, bucketed gradients.
#include <gtest/gtest.h>

#include "tests/common/gpu_skip.h"

#if PARALLAX_WITH_NCCL

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/autograd/engine.h"
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "core/util/generator.h"
#include "parallel/comm/device_routed_process_group.h"
#include "parallel/comm/nccl_process_group.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/grid.h"
#include "tests/common/compare.h"

namespace px::parallel {
namespace {

Tensor to_host(const Tensor& t) { return to_device(t, cpu()); }

// Queues `steps` in-place "+1" passes over t on the current stream: GPU work the host outruns. t (n)
void add_one_repeatedly(const Tensor& t, int steps) {
  Backend& gpu = backend_for(t.device());
  for (int i = 0; i < steps; ++i) gpu.unary(UnaryOp::add_scalar, t, t, 1.0);
}
constexpr int64_t kLongVector = int64_t{1} << 24;  // 64 MiB of f32: a pass takes >= 30 us on an H200
constexpr int kLongSteps = 400;                     // > 10 ms of queued GPU work

class RoutedNccl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    host_ = std::make_unique<LocalProcessGroup>("host");
    group_ = std::make_unique<DeviceRoutedProcessGroup>(
        "routed", *host_, std::make_unique<NcclProcessGroup>("nccl", *host_, cuda(0), GroupOptions{}));
  }

  std::unique_ptr<LocalProcessGroup> host_;
  std::unique_ptr<DeviceRoutedProcessGroup> group_;
};

TEST_F(RoutedNccl, GpuTensorsGoToNcclAndHostTensorsToTheHostGroup) {
  ASSERT_NE(dynamic_cast<NcclProcessGroup*>(&group_->device_group()), nullptr);
  // Behind queued kernels an NCCL all-reduce is not complete at once; a LocalProcessGroup's always is.
  const Tensor d = zeros({kLongVector}, DType::f32, cuda(0));
  add_one_repeatedly(d, kLongSteps);
  const std::shared_ptr<Work> gpu_work = group_->all_reduce(d, ReduceOp::sum);
  EXPECT_FALSE(gpu_work->is_completed()) << "the GPU all-reduce did not go to NCCL";
  gpu_work->wait();
  EXPECT_TRUE(test::all_close(to_host(d), full({kLongVector}, kLongSteps, DType::f32), 0.0, 0.0));

  const Tensor h = full({3}, 5.0, DType::f64);
  const std::shared_ptr<Work> host_work = group_->all_reduce(h, ReduceOp::sum);
  EXPECT_TRUE(host_work->is_completed());
  EXPECT_DOUBLE_EQ(all_reduce_value(*group_, 2.5, ReduceOp::sum), 2.5);
  group_->barrier()->wait();
}

TEST_F(RoutedNccl, SplitsAndParallelGridAreRoutedOverNccl) {
  std::unique_ptr<ProcessGroup> sub = group_->split(0, 0, "sub");
  auto* routed = dynamic_cast<DeviceRoutedProcessGroup*>(sub.get());
  ASSERT_NE(routed, nullptr);
  ASSERT_NE(dynamic_cast<NcclProcessGroup*>(&routed->device_group()), nullptr);
  const Tensor d = full({1001}, 3.0, DType::bf16, cuda(0));
  routed->all_reduce(d, ReduceOp::avg)->wait_on_stream();
  EXPECT_TRUE(test::all_close(to_host(d), full({1001}, 3.0, DType::bf16), 0.0, 0.0));

  ParallelGrid grid(*group_, 1);
  for (ProcessGroup* g : {&grid.tp(), &grid.dp()}) {
    auto* r = dynamic_cast<DeviceRoutedProcessGroup*>(g);
    ASSERT_NE(r, nullptr) << g->name();
    ASSERT_NE(dynamic_cast<NcclProcessGroup*>(&r->device_group()), nullptr) << g->name();
    const Tensor part = full({4, 2}, 1.5, DType::f32, cuda(0));
    const Tensor whole = zeros({4, 2}, DType::f32, cuda(0));
    g->all_gather(part, whole)->wait_on_stream();
    EXPECT_TRUE(test::all_close(to_host(whole), full({4, 2}, 1.5, DType::f32), 0.0, 0.0)) << g->name();
    g->barrier()->wait();
  }
}

TEST_F(RoutedNccl, WaitOnStreamOrdersLaterWorkWithoutBlockingTheHost) {
  const Tensor t = zeros({kLongVector}, DType::f32, cuda(0));
  add_one_repeatedly(t, kLongSteps);
  const std::shared_ptr<Work> work = group_->all_reduce(t, ReduceOp::sum);
  const auto start = std::chrono::steady_clock::now();
  work->wait_on_stream();
  const double host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(work->is_completed()) << "wait_on_stream waited on the host (" << host_seconds << " s)";
  mul_(t, 2.0);  // on the current stream: after the all-reduce
  EXPECT_TRUE(test::all_close(to_host(t), full({kLongVector}, 2.0 * kLongSteps, DType::f32), 0.0, 0.0));
  EXPECT_TRUE(work->is_completed());
}

TEST_F(RoutedNccl, GradBucketerOverNcclWritesTheSummedGradientsOnTheStream) {
  Generator gen(7);
  std::vector<Tensor> params, weights;
  for (int64_t n : {1000, 3000, 70000, 5}) {
    params.push_back(randn({n}, gen, DType::f32, cuda(0)).set_requires_grad());
    weights.push_back(randn({n}, gen, DType::f32, cuda(0)));
  }
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
    GradBucketerOptions options;
    options.bucket_bytes = 16 * 1024;  // several buckets, launched from the hooks during backward
    options.op = op;
    GradBucketer bucketer(params, *group_, options);
    ASSERT_GE(bucketer.num_buckets(), 3);
    for (int step = 0; step < 3; ++step) {
      // Queued work ahead of backward: the buckets' all-reduces are issued while the GPU is still busy.
      add_one_repeatedly(zeros({kLongVector}, DType::f32, cuda(0)), kLongSteps / 4);
      Tensor loss = zeros({}, DType::f32, cuda(0));
      for (size_t i = 0; i < params.size(); ++i) loss = add(loss, sum(mul(params[i], weights[i])));
      backward(loss);
      bucketer.finish();
      for (size_t i = 0; i < params.size(); ++i) {
        // d loss / d p_i = w_i; one rank: the sum and the average are w_i.
        EXPECT_TRUE(test::all_close(to_host(params[i].grad()), to_host(weights[i]), 0.0, 0.0))
            << reduce_op_name(op) << " step " << step << " param " << i;
        params[i].set_grad(Tensor());
      }
    }
  }
}

// Last in this file: it aborts a communicator with a collective still queued on the GPU.
TEST_F(RoutedNccl, TheWatchdogAbortsACollectiveLeftToTheStreamPastItsDeadline) {
  LocalProcessGroup host("watchdog-host");
  DeviceRoutedProcessGroup routed("watchdog", host,
                                  std::make_unique<NcclProcessGroup>("nccl-watchdog", host, cuda(0), GroupOptions{}));
  routed.set_timeout(std::chrono::milliseconds(20));
  const Tensor t = zeros({kLongVector}, DType::f32, cuda(0));
  add_one_repeatedly(t, 20 * kLongSteps);  // > 200 ms: past the deadline and the watchdog's 100 ms rounds
  const std::shared_ptr<Work> work = routed.all_reduce(t, ReduceOp::sum);
  std::string failure;
  try {
    work->wait_on_stream();  // normally hands the work to the watchdog at once
  } catch (const CommError& e) {
    failure = e.what();  // only when the host took > 20 ms since the issue: the deadline passed already
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (failure.empty() && std::chrono::steady_clock::now() < give_up) {
    try {
      routed.check_health();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } catch (const CommError& e) {
      failure = e.what();
    }
  }
  ASSERT_FALSE(failure.empty()) << "no failure 60 s after a 20 ms deadline";
  EXPECT_NE(failure.find("NCCL all_reduce #"), std::string::npos) << failure;
  EXPECT_NE(failure.find("did not complete in 0.02 s"), std::string::npos) << failure;
  // Every later call of the routed group fails, host collectives included.
  EXPECT_THROW(routed.all_reduce(zeros({4}, DType::f32, cuda(0)), ReduceOp::sum), CommError);
  EXPECT_THROW(routed.barrier(), CommError);
  EXPECT_THROW(routed.all_reduce(zeros({4}, DType::f32), ReduceOp::sum), CommError);
  // The current stream waited for the aborted collective's event: it must not be stuck. Read on another thread
  // (the legacy default stream is shared), so that a stuck stream fails this test instead of hanging the binary.
  auto copied = std::make_shared<std::atomic<int>>(0);  // 1: the values arrived, 2: wrong values
  std::thread([t, copied] {
    const bool same = test::all_close(to_host(t), full({kLongVector}, 20.0 * kLongSteps, DType::f32), 0.0, 0.0);
    copied->store(same ? 1 : 2);
  }).detach();
  const auto copy_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (copied->load() == 0 && std::chrono::steady_clock::now() < copy_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(copied->load(), 1) << "0: the stream that waited on the aborted collective is stuck; 2: wrong values";
}

}  // namespace
}  // namespace px::parallel

#else  // PARALLAX_WITH_NCCL

TEST(RoutedNccl, NeedsABuildWithNccl) { GTEST_SKIP() << "built without NCCL"; }

#endif  // PARALLAX_WITH_NCCL

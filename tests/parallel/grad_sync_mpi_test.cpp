// GradSync's three strategies against each other: none at dp = 1 (the reference, in the same process) and bucketed
// all-reduce and ZeRO-1 over dp = world, with two micro-batches per step, two parameter groups with their own lr
// schedules and clipping active: the same norms, updates and optimizer state (in the model's terms). And a NaN in
// one rank's gradient makes every rank's clipping norm non-finite, so every rank skips that step alike.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/loss_scaler.h"
#include "parallel/dp/grad_sync.h"
#include "parallel/grid.h"
#include "tests/common/compare.h"
#include "tests/common/mpi_test_main.h"
#include "tests/parallel/small_mlp.h"

namespace px::test {
namespace {

using parallel::GradSync;
using parallel::GradSyncOptions;
using parallel::ParallelGrid;

constexpr int64_t kRowsPerRank = 2;  // of each micro-batch
constexpr int kMicroBatches = 2, kSteps = 6;
constexpr uint64_t kInitSeed = 31, kDataSeed = 32;
constexpr double kLr = 1e-2, kWeightDecay = 1e-2, kHeadLr = 3e-3, kMaxNorm = 0.05;
// f64 with the same weights and data: dp = N only reorders sums (partial batch sums, the all-reduce or
// reduce-scatter, the squared norm per slice), a few ulps; a lost or doubled rank's share is an O(1) error.
constexpr double kRtol = 1e-10, kAtol = 1e-13;

double lr_of(int step, size_t group) { return (group == 0 ? kLr : kHeadLr) * (1.0 - 0.08 * step); }

std::unique_ptr<GradSync> make_sync(const SmallMlp& net, ParallelGrid& grid, bool shard_state) {
  GradSyncOptions options;
  options.shard_state = shard_state;
  options.bucket_bytes = 256;  // several buckets
  options.groups = body_and_head(net, kLr, kWeightDecay, kHeadLr);
  return parallel::make_grad_sync(net.named_parameters(), {}, grid.tp(), grid.dp(), std::move(options));
}

// One step of `sync` on this dp rank's rows of every micro-batch (all of them at dp = 1); returns the clipping norm.
// The loss is the squared error summed over the step's rows, divided by their number.
double train_step(GradSync& sync, const SmallMlp& net, ParallelGrid& grid, int step, int world_dp) {
  const int64_t micro_rows = kRowsPerRank * world_dp, total_rows = micro_rows * kMicroBatches;
  const MlpBatch batch = mlp_batch(total_rows, kDataSeed + static_cast<uint64_t>(step));
  const int64_t per = micro_rows / grid.dp_size();
  for (size_t g = 0; g < sync.optimizer().num_groups(); ++g) sync.optimizer().set_lr(lr_of(step, g), g);
  for (int k = 0; k < kMicroBatches; ++k) {
    sync.begin_micro_batch(k, kMicroBatches);
    const int64_t start = k * micro_rows + grid.dp_rank() * per;
    backward(squared_error(net, rows(batch.x, start, per), rows(batch.target, start, per),
                           static_cast<double>(total_rows)));
  }
  sync.after_backward();
  const double norm = sync.clip(kMaxNorm);
  sync.step();
  sync.zero_grad();
  for (const auto& [name, p] : net.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
  return norm;
}

class GradSyncStrategies : public ::testing::TestWithParam<bool> {};  // shard_state

TEST_P(GradSyncStrategies, EqualNoSyncOnOneRank) {
  const bool shard_state = GetParam();
  ParallelGrid grid(world().group(), /*tp=*/1);
  auto single = ParallelGrid::single();
  SmallMlp reference_net(kInitSeed), net(kInitSeed);
  const std::unique_ptr<GradSync> reference = make_sync(reference_net, *single, shard_state);
  const std::unique_ptr<GradSync> sync = make_sync(net, grid, shard_state);
  const std::string dp = "dp " + std::to_string(grid.dp_size());
  EXPECT_NE(reference->description().find("dp 1, no synchronisation"), std::string::npos)
      << reference->description();
  EXPECT_NE(sync->description().find(shard_state ? "(ZeRO-1 over " + dp : "all-reduce over " + dp),
            std::string::npos) << sync->description();
  ASSERT_EQ(sync->optimizer().num_groups(), 2u);
  EXPECT_EQ(sync->optimizer().group(1).name, "head");

  for (int step = 0; step < kSteps; ++step) {
    const double reference_norm = train_step(*reference, reference_net, *single, step, grid.dp_size());
    const double norm = train_step(*sync, net, grid, step, grid.dp_size());
    EXPECT_GT(reference_norm, kMaxNorm) << "step " << step << ": clipping inactive";
    EXPECT_NEAR(norm, reference_norm, kRtol * reference_norm) << "step " << step;
  }
  const auto p = net.named_parameters(), e = reference_net.named_parameters();
  for (size_t i = 0; i < p.size(); ++i)
    EXPECT_TRUE(all_close(p[i].second, e[i].second, kRtol, kAtol, "parameter " + p[i].first));

  const std::vector<optim::FullParamState> state = sync->optimizer().gather_full_state();
  const std::vector<optim::FullParamState> expected = reference->optimizer().gather_full_state();
  ASSERT_EQ(state.size(), p.size());
  ASSERT_EQ(expected.size(), p.size());
  for (size_t i = 0; i < p.size(); ++i) {  // group by group, which here is model order
    EXPECT_EQ(state[i].param.impl(), p[i].second.impl()) << p[i].first;
    EXPECT_EQ(state[i].state.step, kSteps) << p[i].first;
    ASSERT_EQ(state[i].state.tensors.size(), expected[i].state.tensors.size()) << p[i].first;
    for (const auto& [key, t] : expected[i].state.tensors)
      EXPECT_TRUE(all_close(state[i].state.tensors.at(key), t, kRtol, kAtol, p[i].first + "." + key));
  }
}

// The trainer's rule (launcher/trainer.cpp): update only when the norm is finite; the f16 loss scaler learns of
// the overflow. The last rank's fc2.weight gradient turns NaN at step kNanStep (a hook ahead of the sync's own);
// every rank then sees a NaN norm, skips the update, backs the scale off alike, and the next step trains again.
TEST_P(GradSyncStrategies, NanOnOneRankSkipsTheStepOnEveryRank) {
  constexpr int kNanStep = 2;
  ParallelGrid grid(world().group(), /*tp=*/1);
  SmallMlp net(kInitSeed);
  int step = 0;
  const bool poisoning_rank = grid.dp_rank() == grid.dp_size() - 1;
  for (const auto& [name, p] : net.named_parameters()) {
    if (name != "fc2.weight") continue;
    p.register_grad_ready_hook([&step, poisoning_rank](const Tensor& grad) {
      if (poisoning_rank && step == kNanStep) fill_(grad, std::numeric_limits<double>::quiet_NaN());
    });
  }
  const std::unique_ptr<GradSync> sync = make_sync(net, grid, GetParam());
  optim::LossScalerOptions scaler_options;
  scaler_options.hysteresis = 1;  // back off at the first overflow
  optim::LossScaler scaler(true, scaler_options);
  for (; step < 4; ++step) {
    const int64_t micro_rows = kRowsPerRank * grid.dp_size();
    const MlpBatch batch = mlp_batch(micro_rows, kDataSeed + static_cast<uint64_t>(step));
    std::vector<Tensor> before;
    for (const auto& [name, p] : net.named_parameters()) before.push_back(clone(p));
    sync->begin_micro_batch(0, 1);
    backward(squared_error(net, rows(batch.x, grid.dp_rank() * kRowsPerRank, kRowsPerRank),
                           rows(batch.target, grid.dp_rank() * kRowsPerRank, kRowsPerRank),
                           static_cast<double>(micro_rows)) * scaler.scale());
    sync->after_backward();
    const double norm = sync->clip(kMaxNorm, scaler.scale());
    const bool skip = !std::isfinite(norm);
    EXPECT_EQ(skip, step == kNanStep) << "step " << step << ", dp rank " << grid.dp_rank() << ": norm " << norm;
    if (!skip) sync->step();
    sync->zero_grad();
    scaler.update(skip);
    EXPECT_EQ(scaler.scale(), step < kNanStep ? 65536.0 : 32768.0) << "step " << step;
    const auto params = net.named_parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const bool unchanged = all_close(params[i].second, before[i], 0.0, 0.0, params[i].first);
      EXPECT_EQ(unchanged, skip) << "step " << step << ", dp rank " << grid.dp_rank() << ": " << params[i].first;
    }
  }
  // Every rank agrees on the weights (a rank that had updated at the NaN step would differ).
  for (const auto& [name, p] : net.named_parameters()) {
    const Tensor first = clone(p);
    grid.dp().broadcast(first, 0)->wait();
    EXPECT_TRUE(all_close(p, first, 0.0, 0.0, name + " against dp rank 0"));
  }
}

INSTANTIATE_TEST_SUITE_P(ShardState, GradSyncStrategies, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Zero1" : "BucketedAllReduce";
                         });

}  // namespace
}  // namespace px::test

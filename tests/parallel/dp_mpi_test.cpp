// Data parallel over the whole world (dp = N, tp = 1) against dp = 1 computed in the same process: GradBucketer's
// reduced gradients, AdamW training, bucket sizes, overlap, accumulation, unused parameters and the avg op.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/grid.h"
#include "tests/common/compare.h"
#include "tests/common/mpi_test_main.h"

namespace px::test {
namespace {

using parallel::GradBucketer;
using parallel::GradBucketerOptions;
using parallel::ProcessGroup;
using parallel::ReduceOp;
using parallel::Work;

constexpr int64_t kLocal = 4;  // rows per rank (two micro-batches of 2); the global batch has kLocal * dp rows
constexpr int64_t kIn = 6, kHidden = 12, kOut = 3;
constexpr uint64_t kInitSeed = 11, kDataSeed = 12;

// Gradients of dp = N and dp = 1 differ only in summation order (N partial sums over rows, each
// all-reduced, vs one sum over all rows inside the GEMMs and reductions): a few ulps in f64, far below
// any real bug (a missing or doubled rank's share is an O(1) relative error).
constexpr double kGradRtol = 1e-10, kGradAtol = 1e-13;

// Forwards every collective to `inner` and counts the all-reduces issued through it, so a test can see
// when GradBucketer launches its buckets.
class CountingGroup final : public ProcessGroup {
 public:
  explicit CountingGroup(ProcessGroup& inner)
      : ProcessGroup(inner.name(), inner.rank(), inner.world_ranks(), inner.options()), inner_(inner) {}

  std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) override {
    ++all_reduces;
    return inner_.all_reduce(t, op);
  }
  std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) override {
    return inner_.all_gather(in, out);
  }
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    return inner_.reduce_scatter(in, out, op);
  }
  std::shared_ptr<Work> broadcast(const Tensor& t, int root) override { return inner_.broadcast(t, root); }
  std::shared_ptr<Work> barrier() override { return inner_.barrier(); }
  std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) override {
    return inner_.split(color, key, name);
  }

  int all_reduces = 0;

 private:
  ProcessGroup& inner_;
};

// x -> head(h + [aside(h)]) with h = tanh(fc2(gelu(norm(fc1(x))))). `aside` is registered between fc2 and
// head so that, when the forward skips it, its buckets sit in the middle of the bucket order.
// 10 parameters: fc1.{weight,bias}, norm.{weight,bias}, fc2.*, aside.*, head.*.
class Net : public nn::Module {
 public:
  explicit Net(DType dtype = DType::f64) : Module("Net") {
    Generator gen(kInitSeed);
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(kIn, kHidden, gen, true, dtype));
    norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(kHidden, 1e-5, true, dtype));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(kHidden, kHidden, gen, true, dtype));
    aside_ = register_module("aside", std::make_shared<nn::Linear>(kHidden, kHidden, gen, true, dtype));
    head_ = register_module("head", std::make_shared<nn::Linear>(kHidden, kOut, gen, true, dtype));
  }
  // x (n, kIn) -> (n, kOut)
  Tensor forward(const Tensor& x, bool use_aside = true) const {
    Tensor h = tanh(fc2_->forward(gelu(norm_->forward(fc1_->forward(x)))));
    if (use_aside) h = h + aside_->forward(h);
    return head_->forward(h);
  }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_, aside_, head_;
  std::shared_ptr<nn::LayerNorm> norm_;
};
constexpr int kNetParams = 10;

struct Batch {
  Tensor x;       // (n, kIn) f64
  Tensor target;  // (n, kOut) f64
};
Batch global_batch(int64_t n, uint64_t seed = kDataSeed) {
  Generator gen(seed);
  Batch b;
  b.x = randn({n, kIn}, gen, DType::f64);
  b.target = randn({n, kOut}, gen, DType::f64);
  return b;
}

// Rows [start, start + count) of t (n, ...).
Tensor rows(const Tensor& t, int64_t start, int64_t count) { return contiguous(narrow(t, 0, start, count)); }

// sum over the rows of |net(x) - target|^2, divided by `divisor`. x (n, kIn), target (n, kOut) -> 0-d
Tensor squared_error(const Net& net, const Tensor& x, const Tensor& target, double divisor, bool use_aside = true) {
  const Tensor diff = net.forward(x, use_aside) - target;
  return sum(diff * diff) * (1.0 / divisor);
}

// Every parameter's gradient of `actual` close to `expected`'s (same registration order).
void expect_grads_close(const nn::Module& actual, const nn::Module& expected, double rtol, double atol,
                        const std::string& what) {
  const auto a = actual.named_parameters(), e = expected.named_parameters();
  ASSERT_EQ(a.size(), e.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].second.grad().defined()) << what << ": no gradient for " << a[i].first;
    EXPECT_TRUE(all_close(a[i].second.grad(), e[i].second.grad(), rtol, atol, what + " grad " + a[i].first));
  }
}

struct Config {
  int64_t bucket_bytes;
  bool overlap;
  std::string str() const {
    return "bucket_bytes " + std::to_string(bucket_bytes) + (overlap ? ", overlap" : ", no overlap");
  }
};
// 1 byte: every parameter its own bucket; 512 bytes (64 f64): a few parameters per bucket; 1 GiB: one bucket.
constexpr int64_t kTiny = 1, kMedium = 512, kHuge = int64_t{1} << 30;
std::vector<Config> all_configs() {
  std::vector<Config> configs;
  for (int64_t bytes : {kTiny, kMedium, kHuge})
    for (bool overlap : {true, false}) configs.push_back({bytes, overlap});
  return configs;
}

TEST(DataParallel, GradientsEqualFullBatchGradients) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size;
  const Batch batch = global_batch(global);

  Net reference;
  backward(squared_error(reference, batch.x, batch.target, global));

  for (const Config& config : all_configs()) {
    SCOPED_TRACE(config.str());
    Net net;
    CountingGroup dp(grid.dp());
    GradBucketer bucketer(net.parameters(), dp, {config.bucket_bytes, ReduceOp::sum, config.overlap});
    if (config.bucket_bytes == kTiny) {
      EXPECT_EQ(bucketer.num_buckets(), kNetParams);
    } else if (config.bucket_bytes == kMedium) {
      EXPECT_GT(bucketer.num_buckets(), 1);
      EXPECT_LT(bucketer.num_buckets(), kNetParams);
    } else {
      EXPECT_EQ(bucketer.num_buckets(), 1);
    }

    backward(squared_error(net, rows(batch.x, rank * local, local), rows(batch.target, rank * local, local), global));
    // Every parameter got its gradient during backward, so with overlap every bucket was launched from the
    // hooks before backward returned; without it none was.
    EXPECT_EQ(dp.all_reduces, config.overlap ? bucketer.num_buckets() : 0);
    bucketer.finish();
    EXPECT_EQ(dp.all_reduces, bucketer.num_buckets());
    EXPECT_GE(bucketer.last_wait_seconds(), 0.0);
    expect_grads_close(net, reference, kGradRtol, kGradAtol, config.str());
  }
}

TEST(DataParallel, AdamWTrainingEqualsSingleProcess) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size;
  constexpr int kSteps = 10;
  // AdamW normalises each update by sqrt(v), so ulp-level gradient differences stay ulp-level relative
  // differences of the updates; after 10 steps of lr 1e-2 they remain many orders below 1e-9.
  constexpr double kRtol = 1e-9, kAtol = 1e-12;

  for (const Config& config : all_configs()) {
    SCOPED_TRACE(config.str());
    Net reference, net;
    optim::AdamW reference_opt(reference.parameters(), /*lr=*/1e-2, /*weight_decay=*/1e-2);
    optim::AdamW opt(net.parameters(), /*lr=*/1e-2, /*weight_decay=*/1e-2);
    GradBucketer bucketer(net.parameters(), grid.dp(), {config.bucket_bytes, ReduceOp::sum, config.overlap});
    for (int step = 0; step < kSteps; ++step) {
      const Batch batch = global_batch(global, kDataSeed + step);
      reference_opt.zero_grad();
      const Tensor reference_loss = squared_error(reference, batch.x, batch.target, global);
      backward(reference_loss);
      reference_opt.step();

      opt.zero_grad();
      const Tensor loss =
          squared_error(net, rows(batch.x, rank * local, local), rows(batch.target, rank * local, local), global);
      backward(loss);
      bucketer.finish();
      opt.step();
      const Tensor global_loss = scalar_tensor(loss.item(), DType::f64);
      grid.dp().all_reduce(global_loss, ReduceOp::sum)->wait();
      EXPECT_NEAR(global_loss.item(), reference_loss.item(), kRtol * std::abs(reference_loss.item()))
          << "step " << step;
    }
    const auto p = net.named_parameters(), e = reference.named_parameters();
    for (size_t i = 0; i < p.size(); ++i)
      EXPECT_TRUE(all_close(p[i].second, e[i].second, kRtol, kAtol, config.str() + " parameter " + p[i].first));
  }
}

TEST(DataParallel, AccumulationWithoutSyncEqualsOneBigBatch) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size, micro = local / 2;
  const Batch batch = global_batch(global);

  Net reference;
  backward(squared_error(reference, batch.x, batch.target, global));

  for (const Config& config : {Config{kTiny, true}, Config{kMedium, false}}) {
    SCOPED_TRACE(config.str());
    Net net;
    CountingGroup dp(grid.dp());
    GradBucketer bucketer(net.parameters(), dp, {config.bucket_bytes, ReduceOp::sum, config.overlap});
    for (int m = 0; m < 2; ++m) {
      bucketer.set_sync(m == 1);
      const int64_t start = rank * local + m * micro;
      backward(squared_error(net, rows(batch.x, start, micro), rows(batch.target, start, micro), global));
      if (m == 0) {
        EXPECT_EQ(dp.all_reduces, 0) << "the unsynchronised micro-batch communicated";
      }
    }
    bucketer.finish();
    EXPECT_EQ(dp.all_reduces, bucketer.num_buckets());
    expect_grads_close(net, reference, kGradRtol, kGradAtol, config.str());
  }
}

TEST(DataParallel, ParameterWithoutGradientGetsZerosWithoutBlocking) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size;
  const Batch batch = global_batch(global);
  const Tensor x = rows(batch.x, rank * local, local), target = rows(batch.target, rank * local, local);

  {
    SCOPED_TRACE("aside unused on every rank");
    Net reference;
    backward(squared_error(reference, batch.x, batch.target, global, /*use_aside=*/false));
    Net net;
    CountingGroup dp(grid.dp());
    GradBucketer bucketer(net.parameters(), dp, {kTiny, ReduceOp::sum, /*overlap=*/true});
    backward(squared_error(net, x, target, global, /*use_aside=*/false));
    // Reverse order: head.bias, head.weight, aside.bias, aside.weight, fc2.bias, ... one bucket each. Only the
    // two head buckets precede the never-ready aside buckets; the six after them are ready but must wait.
    EXPECT_EQ(dp.all_reduces, 2);
    bucketer.finish();
    EXPECT_EQ(dp.all_reduces, kNetParams);
    const auto p = net.named_parameters(), e = reference.named_parameters();
    for (size_t i = 0; i < p.size(); ++i) {
      ASSERT_TRUE(p[i].second.grad().defined()) << p[i].first;
      if (p[i].first.rfind("aside.", 0) == 0) {
        EXPECT_TRUE(all_close(p[i].second.grad(), zeros_like(p[i].second), 0, 0, p[i].first));
      } else {
        EXPECT_TRUE(all_close(p[i].second.grad(), e[i].second.grad(), kGradRtol, kGradAtol, p[i].first));
      }
    }
  }
  {
    SCOPED_TRACE("aside used on rank 0 only");
    // The reduced gradient is the sum of every rank's own gradient (rank 0's with aside, the others' without).
    Net reference;
    for (int r = 0; r < size; ++r)
      backward(squared_error(reference, rows(batch.x, r * local, local), rows(batch.target, r * local, local),
                             global, /*use_aside=*/r == 0));
    Net net;
    GradBucketer bucketer(net.parameters(), grid.dp(), {kTiny, ReduceOp::sum, /*overlap=*/true});
    backward(squared_error(net, x, target, global, /*use_aside=*/rank == 0));
    bucketer.finish();
    expect_grads_close(net, reference, kGradRtol, kGradAtol, "aside on rank 0");
  }
}

TEST(DataParallel, AvgOpAveragesPerRankMeans) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size;
  const Batch batch = global_batch(global);

  Net reference;
  backward(squared_error(reference, batch.x, batch.target, global));

  for (const Config& config : {Config{kTiny, true}, Config{kHuge, false}}) {
    SCOPED_TRACE(config.str());
    Net net;
    GradBucketer bucketer(net.parameters(), grid.dp(), {config.bucket_bytes, ReduceOp::avg, config.overlap});
    // Each rank's loss is the mean over its own rows; the average of the ranks' means is the global mean.
    backward(squared_error(net, rows(batch.x, rank * local, local), rows(batch.target, rank * local, local),
                           static_cast<double>(local)));
    bucketer.finish();
    expect_grads_close(net, reference, kGradRtol, kGradAtol, config.str());
  }
}

// A f32 layer feeding a f64 one: buckets never mix dtypes, and both kinds are reduced.
class MixedNet : public nn::Module {
 public:
  MixedNet() : Module("MixedNet") {
    Generator gen(kInitSeed);
    fc32_ = register_module("fc32", std::make_shared<nn::Linear>(kIn, kHidden, gen, true, DType::f32));
    fc64_ = register_module("fc64", std::make_shared<nn::Linear>(kHidden, kOut, gen, true, DType::f64));
  }
  // x (n, kIn) f32 -> (n, kOut) f64
  Tensor forward(const Tensor& x) const { return fc64_->forward(tanh(to_dtype(fc32_->forward(x), DType::f64))); }

 private:
  std::shared_ptr<nn::Linear> fc32_, fc64_;
};

TEST(DataParallel, BucketsHoldOneDtype) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size;
  const Batch batch = global_batch(global);
  const Tensor x32 = to_dtype(batch.x, DType::f32);
  auto loss = [&](const MixedNet& net, int64_t start, int64_t count) {
    const Tensor diff = net.forward(rows(x32, start, count)) - rows(batch.target, start, count);
    return sum(diff * diff) * (1.0 / global);
  };

  MixedNet reference;
  backward(loss(reference, 0, global));
  MixedNet net;
  GradBucketer bucketer(net.parameters(), grid.dp(), {kHuge, ReduceOp::sum, /*overlap=*/true});
  EXPECT_EQ(bucketer.num_buckets(), 2);
  backward(loss(net, rank * local, local));
  bucketer.finish();
  // f32 gradients summed in another order differ by a few f32 ulps (~1e-7 relative).
  expect_grads_close(net, reference, 1e-5, 1e-6, "mixed dtypes");
}

TEST(DataParallel, DestroyedBucketerHooksDoNothing) {
  parallel::ParallelGrid grid(world().group(), /*tp=*/1);
  const int rank = grid.dp_rank(), size = grid.dp_size();
  const int64_t local = kLocal, global = kLocal * size;
  const Batch batch = global_batch(global);

  Net net;
  CountingGroup first_group(grid.dp()), second_group(grid.dp());
  { GradBucketer first(net.parameters(), first_group, {kTiny, ReduceOp::sum, /*overlap=*/true}); }
  GradBucketer second(net.parameters(), second_group, {kTiny, ReduceOp::sum, /*overlap=*/true});
  backward(squared_error(net, rows(batch.x, rank * local, local), rows(batch.target, rank * local, local), global));
  second.finish();
  EXPECT_EQ(first_group.all_reduces, 0);
  EXPECT_EQ(second_group.all_reduces, kNetParams);
}

}  // namespace
}  // namespace px::test

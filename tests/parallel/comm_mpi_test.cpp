// Multi-rank tests of the MPI process group (run under mpirun with 1..4 ranks): every collective over dtypes,
// sizes and ops, roots, split, ParallelGrid layouts, many collectives in flight, polling, overlap, reports.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "parallel/comm/mpi_process_group.h"
#include "parallel/grid.h"
#include "tests/common/mpi_test_main.h"

namespace px::parallel {
namespace {

ProcessGroup& world() { return test::world().group(); }

const std::vector<int64_t> kSizes = {1, 7, 1000003};
const std::vector<DType> kReduceDtypes = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64};
const std::vector<DType> kAllDtypes = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                       DType::i32, DType::i64, DType::u8,   DType::boolean};

// Element i of rank r's tensor: small integers (exact in every dtype, sums too) that differ across ranks so
// that a missing or duplicated contribution shows; u8 shifted to be non-negative, bool the sign.
double value(int64_t i, int rank, DType dtype) {
  const double v = static_cast<double>((i * 7 + rank * 3) % 17) - 8.0;
  if (dtype == DType::u8) return v + 8.0;
  if (dtype == DType::boolean) return v > 0.0 ? 1.0 : 0.0;
  return v;
}

// Elements offset..offset+n-1 of rank r's sequence. (n)
Tensor rank_tensor(int64_t n, int rank, DType dtype, int64_t offset = 0) {
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = value(offset + i, rank, dtype);
  return from_vector(values, {n}, dtype);
}

double reduce_expected(int64_t i, ReduceOp op, DType dtype, int size) {
  double sum = 0.0, max = -1e300;
  for (int r = 0; r < size; ++r) {
    sum += value(i, r, dtype);
    max = std::max(max, value(i, r, dtype));
  }
  return op == ReduceOp::sum ? sum : op == ReduceOp::max ? max : sum / size;
}

// Sums and maxima of the small integers are exact in every dtype; avg rounds once in the result dtype (f32:
// 2^-24 relative, f16: 2^-11, bf16: 2^-8), so the tolerance is a bit above that rounding.
double tolerance(DType dtype, ReduceOp op, double expected) {
  if (op != ReduceOp::avg) return 0.0;
  const double relative = dtype == DType::bf16  ? 1e-2
                          : dtype == DType::f16 ? 1e-3
                          : dtype == DType::f32 ? 1e-6
                                                : 1e-12;
  return relative * std::abs(expected) + 1e-12;
}

// Reports the first mismatch only (a million-element tensor would otherwise print a million lines).
template <typename Expected>
void expect_elements(const Tensor& t, Expected expected, DType dtype, ReduceOp op, const std::string& what) {
  const std::vector<double> got = to_vector(t);
  for (size_t i = 0; i < got.size(); ++i) {
    const double want = expected(static_cast<int64_t>(i));
    if (std::abs(got[i] - want) > tolerance(dtype, op, want)) {
      ADD_FAILURE() << what << ": element " << i << " of " << got.size() << " is " << got[i] << ", expected "
                    << want;
      return;
    }
  }
}

std::string label(const char* collective, DType dtype, int64_t n, const char* op = "") {
  return std::string(collective) + " " + dtype_name(dtype) + " n=" + std::to_string(n) + " " + op +
         " rank " + std::to_string(world().rank()) + "/" + std::to_string(world().size());
}

TEST(CommMpi, AllReduceEveryDtypeSizeAndOp) {
  ProcessGroup& g = world();
  for (DType dtype : kReduceDtypes) {
    for (int64_t n : kSizes) {
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
        if (op == ReduceOp::avg && !is_floating(dtype)) continue;
        Tensor t = rank_tensor(n, g.rank(), dtype);
        g.all_reduce(t, op)->wait();
        expect_elements(t, [&](int64_t i) { return reduce_expected(i, op, dtype, g.size()); }, dtype, op,
                        label("all_reduce", dtype, n, reduce_op_name(op)));
      }
    }
  }
}

TEST(CommMpi, AllGatherEveryDtypeAndSize) {
  ProcessGroup& g = world();
  for (DType dtype : kAllDtypes) {
    for (int64_t n : kSizes) {
      Tensor in = rank_tensor(n, g.rank(), dtype);
      Tensor out = zeros({n * g.size()}, dtype);
      g.all_gather(in, out)->wait();
      expect_elements(out, [&](int64_t j) { return value(j % n, static_cast<int>(j / n), dtype); }, dtype,
                      ReduceOp::sum, label("all_gather", dtype, n));
    }
  }
}

TEST(CommMpi, AllGatherInPlaceAndTwoDimensional) {
  ProcessGroup& g = world();
  const int64_t rows = 5, cols = 3;
  // In place: the input is this rank's slice of the output.
  Tensor out = zeros({rows * g.size(), cols}, DType::f32);
  Tensor mine = out.as_strided({rows, cols}, {cols, 1}, g.rank() * rows * cols);
  copy_(mine, rank_tensor(rows * cols, g.rank(), DType::f32).as_strided({rows, cols}, {cols, 1}, 0));
  g.all_gather(mine, out)->wait();
  const int64_t part = rows * cols;
  expect_elements(out, [&](int64_t j) { return value(j % part, static_cast<int>(j / part), DType::f32); },
                  DType::f32, ReduceOp::sum, label("all_gather in place", DType::f32, part));
}

TEST(CommMpi, ReduceScatterEveryDtypeSizeAndOp) {
  ProcessGroup& g = world();
  for (DType dtype : kReduceDtypes) {
    for (int64_t n : kSizes) {
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
        if (op == ReduceOp::avg && !is_floating(dtype)) continue;
        Tensor in = rank_tensor(n * g.size(), g.rank(), dtype);
        Tensor out = zeros({n}, dtype);
        g.reduce_scatter(in, out, op)->wait();
        expect_elements(out, [&](int64_t i) { return reduce_expected(g.rank() * n + i, op, dtype, g.size()); },
                        dtype, op, label("reduce_scatter", dtype, n, reduce_op_name(op)));
      }
    }
  }
}

TEST(CommMpi, BroadcastFromEveryRoot) {
  ProcessGroup& g = world();
  for (int root = 0; root < g.size(); ++root) {
    for (DType dtype : kAllDtypes) {
      for (int64_t n : kSizes) {
        Tensor t = g.rank() == root ? rank_tensor(n, root, dtype) : zeros({n}, dtype);
        g.broadcast(t, root)->wait();
        expect_elements(t, [&](int64_t i) { return value(i, root, dtype); }, dtype, ReduceOp::sum,
                        label("broadcast", dtype, n) + " root " + std::to_string(root));
      }
    }
  }
}

TEST(CommMpi, BarrierWaitsForTheLastRank) {
  ProcessGroup& g = world();
  if (g.size() == 1) GTEST_SKIP() << "needs two ranks";
  const auto start = std::chrono::steady_clock::now();
  if (g.rank() == g.size() - 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  g.barrier()->wait();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Every rank leaves the barrier after the late rank entered it (minus clock skew between starts: 100 ms).
  EXPECT_GE(waited, 0.2) << "rank " << g.rank();
}

TEST(CommMpi, SplitOrdersByKeyAndReducesWithinTheSubgroup) {
  ProcessGroup& g = world();
  const int color = g.rank() % 2;
  auto sub = g.split(color, -g.rank(), "parity");  // key -rank: reversed order
  std::vector<int> members;
  for (int r = g.size() - 1; r >= 0; --r)
    if (r % 2 == color) members.push_back(r);
  EXPECT_EQ(sub->world_ranks(), members);
  EXPECT_EQ(sub->name(), "parity");
  EXPECT_EQ(sub->world_ranks()[sub->rank()], g.rank());
  Tensor t = from_vector(std::vector<double>{1.0, static_cast<double>(g.rank())}, {2}, DType::f64);
  sub->all_reduce(t, ReduceOp::sum)->wait();
  double rank_sum = 0.0;
  for (int r : members) rank_sum += r;
  EXPECT_EQ(to_vector(t), (std::vector<double>{static_cast<double>(members.size()), rank_sum}));
  EXPECT_EQ(sub->options().timeout, g.options().timeout);
}

TEST(CommMpi, ParallelGridLayouts) {
  ProcessGroup& g = world();
  for (int tp : {1, 2}) {
    if (g.size() % tp != 0) continue;
    ParallelGrid grid(g, tp);
    const int dp = g.size() / tp;
    EXPECT_EQ(grid.tp_size(), tp);
    EXPECT_EQ(grid.dp_size(), dp);
    EXPECT_EQ(grid.tp_rank(), g.rank() % tp);
    EXPECT_EQ(grid.dp_rank(), g.rank() / tp);
    EXPECT_EQ(grid.tp().name(), "tp");
    EXPECT_EQ(grid.dp().name(), "dp");
    std::vector<int> tp_members, dp_members;
    for (int k = 0; k < tp; ++k) tp_members.push_back(grid.dp_rank() * tp + k);
    for (int k = 0; k < dp; ++k) dp_members.push_back(k * tp + grid.tp_rank());
    EXPECT_EQ(grid.tp().world_ranks(), tp_members) << grid.str();
    EXPECT_EQ(grid.dp().world_ranks(), dp_members) << grid.str();
    // The groups carry traffic among exactly those ranks.
    Tensor t = scalar_tensor(g.rank(), DType::i64);
    grid.dp().all_reduce(t, ReduceOp::sum)->wait();
    int64_t dp_sum = 0;
    for (int r : dp_members) dp_sum += r;
    EXPECT_EQ(static_cast<int64_t>(t.item()), dp_sum) << grid.str();
  }
  EXPECT_THROW(ParallelGrid(g, g.size() + 1), ConfigError);
  auto single = ParallelGrid::single();
  EXPECT_EQ(single->str(), "dp 1 x tp 1 (rank 0: dp 0, tp 0)");
}

TEST(CommMpi, ManyInFlightWaitedInReverseOrder) {
  ProcessGroup& g = world();
  constexpr int kCount = 24;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < kCount; ++k) {
    const int64_t n = 1 + k * 4099;
    tensors.push_back(rank_tensor(n, g.rank(), DType::f32, k));
    works.push_back(k % 3 == 2 ? g.broadcast(tensors.back(), k % g.size())
                               : g.all_reduce(tensors.back(), k % 3 == 0 ? ReduceOp::sum : ReduceOp::max));
  }
  for (int k = kCount - 1; k >= 0; --k) works[k]->wait();
  for (int k = 0; k < kCount; ++k) {
    const ReduceOp op = k % 3 == 0 ? ReduceOp::sum : ReduceOp::max;
    if (k % 3 == 2) {
      expect_elements(tensors[k], [&](int64_t i) { return value(k + i, k % g.size(), DType::f32); }, DType::f32,
                      op, "broadcast #" + std::to_string(k));
    } else {
      expect_elements(tensors[k], [&](int64_t i) { return reduce_expected(k + i, op, DType::f32, g.size()); },
                      DType::f32, op, "all_reduce #" + std::to_string(k));
    }
  }
}

TEST(CommMpi, IsCompletedPollingWithoutWait) {
  ProcessGroup& g = world();
  Tensor t = rank_tensor(100003, g.rank(), DType::f64);
  auto work = g.all_reduce(t, ReduceOp::avg);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!work->is_completed() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(work->is_completed());
  expect_elements(t, [&](int64_t i) { return reduce_expected(i, ReduceOp::avg, DType::f64, g.size()); },
                  DType::f64, ReduceOp::avg, "polled all_reduce");
  work->wait();  // returns at once; the avg division ran once
  expect_elements(t, [&](int64_t i) { return reduce_expected(i, ReduceOp::avg, DType::f64, g.size()); },
                  DType::f64, ReduceOp::avg, "polled all_reduce after wait");
}

TEST(CommMpi, AllReduceProgressesWhileTheMainThreadComputes) {
  ProcessGroup& g = world();
  const int64_t n = 8 << 20;  // 32 MiB of f32: many rounds of the ring, each needing progress
  Tensor t = rank_tensor(n, g.rank(), DType::f32);
  std::vector<double> scratch(1 << 16, 1.0);
  auto work = g.all_reduce(t, ReduceOp::sum);
  const auto start = std::chrono::steady_clock::now();
  int64_t compute_rounds = 0;
  double sink = 0.0;
  // Computation only: is_completed() looks at the state the communication thread sets and calls no MPI.
  while (!work->is_completed() && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    for (double& x : scratch) x = x * 0.999 + 1e-3;
    sink += scratch[compute_rounds % scratch.size()];
    ++compute_rounds;
  }
  ASSERT_TRUE(work->is_completed()) << "all_reduce did not complete in 60 s without wait(); rounds "
                                    << compute_rounds << " sink " << sink;
  expect_elements(t, [&](int64_t i) { return reduce_expected(i, ReduceOp::sum, DType::f32, g.size()); },
                  DType::f32, ReduceOp::sum, "overlapped all_reduce");
}

TEST(CommMpi, ArrivalReportNamesRanksBehind) {
  auto sub = world().split(0, world().rank(), "probe");
  auto* mpi = dynamic_cast<MpiProcessGroup*>(sub.get());
  ASSERT_NE(mpi, nullptr) << "the test binary runs under mpirun";
  // Rank 0 enters step #1 alone and asks: everyone else is still at #0.
  int64_t step = 0;
  if (sub->rank() == 0) {
    step = mpi->enter_external("probe step");
    std::string expected;
    for (int r = 1; r < sub->size(); ++r)
      expected += std::string(r > 1 ? "; " : "") + "rank " + std::to_string(sub->world_ranks()[r]) +
                  " has not arrived (it is at #" + std::to_string(step - 1) + ")";
    EXPECT_EQ(mpi->arrival_report(step), sub->size() == 1 ? "every rank arrived" : expected);
  }
  world().barrier()->wait();  // the others answered from their communication threads meanwhile
  if (sub->rank() != 0) step = mpi->enter_external("probe step");
  sub->barrier()->wait();  // #step + 1 on every rank
  if (sub->rank() == 0) EXPECT_EQ(mpi->arrival_report(step + 1), "every rank arrived");
  world().barrier()->wait();  // keeps every rank's "probe" group answering until rank 0 has asked
}

TEST(CommMpi, LocalProcessGroupCopies) {
  LocalProcessGroup local("solo", world().rank());
  Tensor in = rank_tensor(7, 0, DType::i32), out = zeros({7}, DType::i32);
  local.all_gather(in, out)->wait();
  EXPECT_EQ(to_vector(out), to_vector(in));
  Tensor scattered = zeros({7}, DType::i32);
  local.reduce_scatter(in, scattered, ReduceOp::sum)->wait();
  EXPECT_EQ(to_vector(scattered), to_vector(in));
  EXPECT_EQ(local.describe(), "'solo' (world ranks " + std::to_string(world().rank()) + ")");
  EXPECT_EQ(local.split(3, 0, "sub")->world_ranks(), std::vector<int>{world().rank()});
}

}  // namespace
}  // namespace px::parallel

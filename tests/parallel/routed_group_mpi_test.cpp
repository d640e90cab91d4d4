// DeviceRoutedProcessGroup under mpirun (1..4 ranks) on host tensors, a second MPI group standing in for the device
// group: routing, split beside the host, barrier, ranks, timeouts, health, ParallelGrid, GradBucketer, TP mappings.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd/engine.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "parallel/comm/device_routed_process_group.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/grid.h"
#include "parallel/tp/mappings.h"
#include "tests/common/mpi_test_main.h"

namespace px::parallel {
namespace {

ProcessGroup& world() { return test::world().group(); }

// What a CountingGroup saw: shared by a group and every group split from it.
struct Counts {
  int collectives = 0;  // all_reduce, all_gather, reduce_scatter, broadcast
  int barriers = 0;
  int splits = 0, splits_with_control = 0;
  ProcessGroup* last_control = nullptr;  // split_with_control's control group
  bool unhealthy = false;                // check_health throws
  int health_checks = 0;
};

// Forwards every call to `inner` and counts it, so a test sees which group of a routed pair carried a call.
class CountingGroup final : public ProcessGroup {
 public:
  CountingGroup(std::unique_ptr<ProcessGroup> inner, std::shared_ptr<Counts> counts)
      : ProcessGroup(inner->name(), inner->rank(), inner->world_ranks(), inner->options()),
        inner_(std::move(inner)),
        counts_(std::move(counts)) {}

  std::shared_ptr<Work> all_reduce(const Tensor& t, ReduceOp op) override {
    ++counts_->collectives;
    return inner_->all_reduce(t, op);
  }
  std::shared_ptr<Work> all_gather(const Tensor& in, const Tensor& out) override {
    ++counts_->collectives;
    return inner_->all_gather(in, out);
  }
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    ++counts_->collectives;
    return inner_->reduce_scatter(in, out, op);
  }
  std::shared_ptr<Work> broadcast(const Tensor& t, int root) override {
    ++counts_->collectives;
    return inner_->broadcast(t, root);
  }
  std::shared_ptr<Work> barrier() override {
    ++counts_->barriers;
    return inner_->barrier();
  }
  std::unique_ptr<ProcessGroup> split(int color, int key, const std::string& name) override {
    ++counts_->splits;
    return std::make_unique<CountingGroup>(inner_->split(color, key, name), counts_);
  }
  std::unique_ptr<ProcessGroup> split_with_control(int color, int key, const std::string& name,
                                                   ProcessGroup& control) override {
    ++counts_->splits_with_control;
    counts_->last_control = &control;
    return std::make_unique<CountingGroup>(inner_->split_with_control(color, key, name, control), counts_);
  }
  void set_timeout(std::chrono::milliseconds timeout) override {
    ProcessGroup::set_timeout(timeout);
    inner_->set_timeout(timeout);
  }
  void check_health() override {
    ++counts_->health_checks;
    if (counts_->unhealthy) throw CommError("group " + describe() + ": stand-in device group failed");
  }
  ProcessGroup& inner() { return *inner_; }

 private:
  std::unique_ptr<ProcessGroup> inner_;
  std::shared_ptr<Counts> counts_;
};

// A routed world over (host: a split of the MPI world with every rank, device stand-in: another such split),
// both counted.
struct RoutedWorld {
  std::shared_ptr<Counts> host_counts = std::make_shared<Counts>();
  std::shared_ptr<Counts> device_counts = std::make_shared<Counts>();
  std::unique_ptr<CountingGroup> host;
  std::unique_ptr<DeviceRoutedProcessGroup> group;

  RoutedWorld() {
    host = std::make_unique<CountingGroup>(world().split(0, world().rank(), "host"), host_counts);
    auto device = std::make_unique<CountingGroup>(world().split(0, world().rank(), "device"), device_counts);
    group = std::make_unique<DeviceRoutedProcessGroup>("routed", *host, std::move(device));
    *host_counts = Counts{};  // count from here on
    *device_counts = Counts{};
  }
};

TEST(DeviceRoutedGroup, TakesNameRanksAndOptionsFromTheHostGroup) {
  RoutedWorld w;
  EXPECT_EQ(w.group->name(), "routed");
  EXPECT_EQ(w.group->rank(), world().rank());
  EXPECT_EQ(w.group->size(), world().size());
  EXPECT_EQ(w.group->world_ranks(), world().world_ranks());
  EXPECT_EQ(&w.group->host_group(), w.host.get());
  EXPECT_EQ(w.group->device_group().name(), "device");
}

TEST(DeviceRoutedGroup, HostTensorsAndBarriersGoToTheHostGroup) {
  RoutedWorld w;
  const int size = world().size(), rank = world().rank();
  const Tensor t = full({5}, rank + 1.0, DType::f32);
  w.group->all_reduce(t, ReduceOp::sum)->wait();
  EXPECT_DOUBLE_EQ(t.data<float>()[4], size * (size + 1) / 2.0);

  const Tensor part = full({2}, static_cast<double>(rank), DType::i64);
  const Tensor whole = zeros({2 * size}, DType::i64);
  w.group->all_gather(part, whole)->wait();
  for (int r = 0; r < size; ++r) EXPECT_EQ(whole.data<int64_t>()[2 * r + 1], r);

  const Tensor rows = full({3 * size}, 1.0, DType::f64);
  const Tensor mine = zeros({3}, DType::f64);
  w.group->reduce_scatter(rows, mine, ReduceOp::sum)->wait();
  EXPECT_DOUBLE_EQ(mine.data<double>()[0], size);

  const Tensor b = full({1}, rank == size - 1 ? 42.0 : 0.0, DType::f64);
  w.group->broadcast(b, size - 1)->wait_on_stream();  // a host group's wait_on_stream is wait()
  EXPECT_DOUBLE_EQ(b.data<double>()[0], 42.0);

  EXPECT_DOUBLE_EQ(all_reduce_value(*w.group, 1.0, ReduceOp::sum), size);
  w.group->barrier()->wait();

  const int value_collectives = size > 1 ? 1 : 0;  // all_reduce_value skips the collective in a group of one
  EXPECT_EQ(w.host_counts->collectives, 4 + value_collectives);
  EXPECT_EQ(w.host_counts->barriers, 1);
  EXPECT_EQ(w.device_counts->collectives, 0) << "a host tensor reached the device group";
  EXPECT_EQ(w.device_counts->barriers, 0) << "barrier belongs to the host group";
  EXPECT_GE(w.device_counts->health_checks, 5 + value_collectives) << "every call checks the device group";
}

TEST(DeviceRoutedGroup, SplitsTheHostGroupThenTheDeviceGroupBesideIt) {
  RoutedWorld w;
  const int size = world().size(), rank = world().rank();
  // Two halves (or one group at size 1), ordered by descending world rank.
  const int color = rank % 2;
  std::unique_ptr<ProcessGroup> sub = w.group->split(color, -rank, "half");
  auto* routed = dynamic_cast<DeviceRoutedProcessGroup*>(sub.get());
  ASSERT_NE(routed, nullptr) << "a split of a routed group is routed";
  EXPECT_EQ(routed->name(), "half");
  EXPECT_EQ(w.host_counts->splits, 1);
  EXPECT_EQ(w.device_counts->splits, 0);
  EXPECT_EQ(w.device_counts->splits_with_control, 1);
  EXPECT_EQ(w.device_counts->last_control, &routed->host_group()) << "the device group splits beside the new host";

  std::vector<int> members;
  for (int r = size - 1; r >= 0; --r)
    if (r % 2 == color) members.push_back(r);
  EXPECT_EQ(routed->world_ranks(), members);
  EXPECT_EQ(routed->device_group().world_ranks(), members);
  EXPECT_EQ(routed->host_group().world_ranks(), members);
  EXPECT_EQ(routed->rank(), routed->device_group().rank());

  // The subgroup works and is counted in the same host and device groups' counters.
  const Tensor t = full({3}, rank, DType::f64);
  routed->all_reduce(t, ReduceOp::max)->wait();
  EXPECT_DOUBLE_EQ(t.data<double>()[0], members.front());
  EXPECT_EQ(w.host_counts->collectives, 1);
  EXPECT_EQ(w.device_counts->collectives, 0);

  // A split of the split is routed too.
  std::unique_ptr<ProcessGroup> one = routed->split(routed->rank(), 0, "one");
  ASSERT_NE(dynamic_cast<DeviceRoutedProcessGroup*>(one.get()), nullptr);
  EXPECT_EQ(one->size(), 1);
  EXPECT_EQ(one->world_ranks(), std::vector<int>{rank});
}

TEST(DeviceRoutedGroup, SetTimeoutReachesBothGroupsAndTheirSplits) {
  RoutedWorld w;
  w.group->set_timeout(std::chrono::milliseconds(12345));
  EXPECT_EQ(w.group->options().timeout, std::chrono::milliseconds(12345));
  EXPECT_EQ(w.host->options().timeout, std::chrono::milliseconds(12345));
  EXPECT_EQ(w.group->device_group().options().timeout, std::chrono::milliseconds(12345));
  std::unique_ptr<ProcessGroup> sub = w.group->split(0, world().rank(), "sub");
  auto& routed = dynamic_cast<DeviceRoutedProcessGroup&>(*sub);
  EXPECT_EQ(routed.options().timeout, std::chrono::milliseconds(12345));
  EXPECT_EQ(routed.host_group().options().timeout, std::chrono::milliseconds(12345));
  EXPECT_EQ(routed.device_group().options().timeout, std::chrono::milliseconds(12345));
  routed.set_timeout(std::chrono::milliseconds(777));
  EXPECT_EQ(routed.device_group().options().timeout, std::chrono::milliseconds(777));
  EXPECT_EQ(w.group->options().timeout, std::chrono::milliseconds(12345)) << "a split's timeout is its own";
}

TEST(DeviceRoutedGroup, AFailedDeviceGroupFailsTheNextCallOfEitherKind) {
  RoutedWorld w;
  w.device_counts->unhealthy = true;  // as NCCL's watchdog leaves a communicator it aborted
  const Tensor t = zeros({1}, DType::f32);
  EXPECT_THROW(w.group->all_reduce(t, ReduceOp::sum), CommError);
  EXPECT_THROW(w.group->barrier(), CommError);
  EXPECT_THROW(w.group->check_health(), CommError);
  if (w.group->size() > 1) EXPECT_THROW(all_reduce_value(*w.group, 1.0, ReduceOp::sum), CommError);
  EXPECT_EQ(w.host_counts->collectives + w.host_counts->barriers, 0) << "nothing was issued after the failure";
  w.device_counts->unhealthy = false;
  w.group->barrier()->wait();  // every rank threw at the same calls: still in step
}

TEST(DeviceRoutedGroup, ParallelGridOverARoutedWorldHasRoutedTpAndDpGroups) {
  RoutedWorld w;
  const int size = world().size(), rank = world().rank();
  for (int tp : {1, 2}) {
    if (size % tp != 0) continue;
    ParallelGrid grid(*w.group, tp);
    auto* tp_group = dynamic_cast<DeviceRoutedProcessGroup*>(&grid.tp());
    auto* dp_group = dynamic_cast<DeviceRoutedProcessGroup*>(&grid.dp());
    ASSERT_NE(tp_group, nullptr);
    ASSERT_NE(dp_group, nullptr);
    EXPECT_EQ(grid.tp_rank(), rank % tp);
    EXPECT_EQ(grid.dp_rank(), rank / tp);
    EXPECT_EQ(tp_group->device_group().world_ranks(), tp_group->world_ranks());
    EXPECT_EQ(dp_group->device_group().world_ranks(), dp_group->world_ranks());
    EXPECT_EQ(tp_group->device_group().name(), "tp");
    EXPECT_EQ(dp_group->device_group().name(), "dp");
    // A host scalar over dp sums the dp replicas of this tp rank.
    const double dp_sum = all_reduce_value(grid.dp(), rank, ReduceOp::sum);
    double expected = 0;
    for (int r = rank % tp; r < size; r += tp) expected += r;
    EXPECT_DOUBLE_EQ(dp_sum, expected);
  }
  EXPECT_EQ(w.device_counts->collectives, 0);
}

TEST(DeviceRoutedGroup, GradBucketerAndTpMappingsRunOverRoutedGroups) {
  RoutedWorld w;
  const int size = world().size(), rank = world().rank();
  // dp over the whole routed world: d/dp sum(p * c_r) = c_r, summed over ranks.
  std::vector<Tensor> params, coefs;
  for (int64_t n : {5, 300, 17}) {
    params.push_back(zeros({n}, DType::f64).set_requires_grad());
    coefs.push_back(full({n}, rank + 1.0, DType::f64));
  }
  GradBucketerOptions options;
  options.bucket_bytes = 1024;  // several buckets, launched from the grad-ready hooks
  GradBucketer bucketer(params, *w.group, options);
  Tensor loss = zeros({}, DType::f64);
  for (size_t i = 0; i < params.size(); ++i) loss = add(loss, sum(mul(params[i], coefs[i])));
  backward(loss);
  bucketer.finish();
  for (const Tensor& p : params) {
    for (int64_t i = 0; i < p.numel(); ++i) ASSERT_DOUBLE_EQ(p.grad().data<double>()[i], size * (size + 1) / 2.0);
  }
  EXPECT_EQ(w.host_counts->collectives, bucketer.num_buckets());  // one all-reduce per bucket, on the host group
  EXPECT_EQ(w.device_counts->collectives, 0);

  // tp over a routed split: reduce forward (all-reduce), copy backward (all-reduce of the gradient).
  ParallelGrid grid(*w.group, size);
  const Tensor x = full({3}, rank + 1.0, DType::f64).set_requires_grad();
  const Tensor y = reduce_from_tp_region(copy_to_tp_region(x, grid.tp()), grid.tp());
  EXPECT_DOUBLE_EQ(y.data<double>()[0], size * (size + 1) / 2.0);
  backward(sum(y));
  EXPECT_DOUBLE_EQ(x.grad().data<double>()[2], size);
}

}  // namespace
}  // namespace px::parallel

// gpu_lines_per_node under mpirun: rank 0 learns the GPU lines of every node from its local rank 0 (here every rank
// plays a node of its own when it claims local rank 0), other ranks add nothing; a CPU plan adds nothing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "launcher/device_plan.h"
#include "tests/common/mpi_test_main.h"

namespace px {
namespace {

TEST(GpuLinesPerNode, EachNodesLocalRankZeroReportsItsGpusOnce) {
  parallel::ProcessGroup& world = test::world().group();
  parallel::ProcessPlacement placement = test::world().placement();
  // Even ranks lead a node of two GPUs; odd ranks are their second local rank.
  placement.local_rank = world.rank() % 2;
  DevicePlan plan;
  plan.gpus = {"GPU 0: rank " + std::to_string(world.rank()), "GPU 1: rank " + std::to_string(world.rank())};
  const std::vector<std::string> lines = gpu_lines_per_node(world, placement, plan);
  std::vector<std::string> expected;
  for (int r = 0; r < world.size(); r += 2) {
    for (int g = 0; g < 2; ++g) expected.push_back("GPU " + std::to_string(g) + ": rank " + std::to_string(r));
  }
  ASSERT_EQ(lines.size(), world.size() == 1 ? 2u : expected.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    if (world.size() == 1) {
      EXPECT_EQ(lines[i], plan.gpus[i]);
    } else {
      EXPECT_EQ(lines[i].rfind("node ", 0), 0u) << lines[i];
      EXPECT_NE(lines[i].find(": " + expected[i]), std::string::npos) << lines[i] << " vs " << expected[i];
    }
  }
}

TEST(GpuLinesPerNode, CpuPlansReportNothing) {
  EXPECT_TRUE(gpu_lines_per_node(test::world().group(), test::world().placement(), DevicePlan{}).empty());
}

}  // namespace
}  // namespace px

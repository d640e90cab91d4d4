// plan_device_on with made-up GPU lists: the device each local rank takes, NCCL or MPI for GPU tensors
// (parallel.gpu_collectives), GPU sharing under mpi only, and the one-line errors naming their field.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/util/error.h"
#include "launcher/device_plan.h"

namespace px {
namespace {

std::vector<GpuInfo> fake_gpus(int n) { return std::vector<GpuInfo>(n, GpuInfo{"Fake GPU", int64_t{80} << 30, 9, 0}); }

parallel::ProcessPlacement placement(int local_rank, int local_size, int size = -1) {
  parallel::ProcessPlacement p;
  p.local_rank = local_rank;
  p.local_size = local_size;
  p.rank = local_rank;
  p.size = size < 0 ? local_size : size;
  p.launched = p.size > 1;
  return p;
}

// The ConfigError's message from plan_device_on (FAIL when none is thrown).
std::string plan_error(const std::string& device, const std::string& collectives, const parallel::ProcessPlacement& p,
                       int gpus, bool nccl_available = true) {
  try {
    plan_device_on(device, "auto", collectives, p, fake_gpus(gpus), "no CUDA driver", nccl_available);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << device << " / " << collectives << " with " << gpus << " GPU(s) and " << p.local_size
                << " local ranks: no ConfigError";
  return "";
}

TEST(PlanDevice, CpuIgnoresGpusAndCollectives) {
  for (const char* collectives : {"auto", "nccl", "mpi"}) {
    const DevicePlan plan = plan_device_on("cpu", "auto", collectives, placement(1, 4), fake_gpus(1), "", false);
    EXPECT_TRUE(plan.device.is_cpu());
    EXPECT_FALSE(plan.nccl);
    EXPECT_TRUE(plan.sharing.empty());
    EXPECT_EQ(plan.summary, "device cpu, precision f32");
  }
}

TEST(PlanDevice, AutoWithoutAGpuIsTheCpuAndSaysWhy) {
  const DevicePlan plan = plan_device_on("auto", "auto", "nccl", placement(0, 2), {}, "no CUDA driver", true);
  EXPECT_TRUE(plan.device.is_cpu());
  EXPECT_EQ(plan.summary, "device cpu (train.device auto: no usable GPU: no CUDA driver), precision f32");
}

TEST(PlanDevice, CudaWithoutAGpuIsAnError) {
  const std::string msg = plan_error("cuda", "auto", placement(0, 1), 0);
  EXPECT_EQ(msg.rfind("train.device: cuda, but this machine has no usable GPU (no CUDA driver)", 0), 0u) << msg;
}

TEST(PlanDevice, OneGpuPerRankUsesNcclUnderAutoAndNccl) {
  for (const char* collectives : {"auto", "nccl"}) {
    for (int local_rank = 0; local_rank < 4; ++local_rank) {
      const DevicePlan plan = plan_device_on("cuda", "auto", collectives, placement(local_rank, 4), fake_gpus(4), "",
                                             true);
      EXPECT_EQ(plan.device, cuda(local_rank));
      EXPECT_TRUE(plan.nccl) << collectives;
      EXPECT_TRUE(plan.sharing.empty());
      EXPECT_EQ(plan.dtype, DType::bf16);
      EXPECT_NE(plan.summary.find(", GPU collectives over NCCL"), std::string::npos) << plan.summary;
    }
  }
}

TEST(PlanDevice, MpiStagesGpuTensorsEvenWithAGpuPerRank) {
  const DevicePlan plan = plan_device_on("auto", "f32", "mpi", placement(1, 2), fake_gpus(2), "", true);
  EXPECT_EQ(plan.device, cuda(1));
  EXPECT_FALSE(plan.nccl);
  EXPECT_TRUE(plan.sharing.empty());
  EXPECT_NE(plan.summary.find(", GPU collectives staged through MPI"), std::string::npos) << plan.summary;
}

TEST(PlanDevice, ASingleProcessDoesNotMentionCollectives) {
  const DevicePlan plan = plan_device_on("cuda", "bf16", "auto", placement(0, 1), fake_gpus(1), "", true);
  EXPECT_EQ(plan.device, cuda(0));
  EXPECT_EQ(plan.summary.find("collectives"), std::string::npos) << plan.summary;
}

TEST(PlanDevice, MoreRanksThanGpusIsAnErrorUnderNcclAndAuto) {
  for (const char* device : {"cuda", "auto"}) {
    for (const char* collectives : {"nccl", "auto"}) {
      const std::string msg = plan_error(device, collectives, placement(1, 2), 1);
      EXPECT_EQ(msg.rfind("train.device: 2 ranks on this node but 1 visible GPU(s)", 0), 0u) << msg;
      EXPECT_NE(msg.find("parallel.gpu_collectives: mpi"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  }
  const std::string msg = plan_error("cuda", "nccl", placement(7, 8), 3);
  EXPECT_EQ(msg.rfind("train.device: 8 ranks on this node but 3 visible GPU(s)", 0), 0u) << msg;
}

TEST(PlanDevice, MpiLetsRanksShareGpusRoundRobinAndSaysSoInOneLine) {
  for (int local_rank = 0; local_rank < 4; ++local_rank) {
    const DevicePlan plan = plan_device_on("cuda", "auto", "mpi", placement(local_rank, 4), fake_gpus(1), "", true);
    EXPECT_EQ(plan.device, cuda(0));
    EXPECT_FALSE(plan.nccl);
    EXPECT_EQ(plan.sharing.rfind("4 ranks on this node share 1 GPU(s)", 0), 0u) << plan.sharing;
    EXPECT_EQ(plan.sharing.find('\n'), std::string::npos);
  }
  EXPECT_EQ(plan_device_on("cuda", "auto", "mpi", placement(3, 4), fake_gpus(2), "", true).device, cuda(1));
  EXPECT_EQ(plan_device_on("auto", "auto", "mpi", placement(2, 3), fake_gpus(2), "", true).device, cuda(0));
}

TEST(PlanDevice, NcclInABuildWithoutItIsAnErrorAndAutoFallsBackToMpi) {
  const std::string msg = plan_error("cuda", "nccl", placement(0, 2), 2, /*nccl_available=*/false);
  EXPECT_EQ(msg, "parallel.gpu_collectives: nccl, but this build has no NCCL; use mpi or auto");
  const DevicePlan plan = plan_device_on("cuda", "auto", "auto", placement(0, 2), fake_gpus(2), "", false);
  EXPECT_FALSE(plan.nccl);
}

}  // namespace
}  // namespace px

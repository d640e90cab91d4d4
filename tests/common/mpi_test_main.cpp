// main() of the multi-rank test binaries: owns the World (MPI) for the run, runs every test on every rank
// and makes a rank's failure the job's failure; only rank 0 prints gtest's per-test lines.
#include "tests/common/mpi_test_main.h"

#include <gtest/gtest.h>

#include "core/backend/cpu/cpu_backend.h"
#include "core/util/logging.h"

#include <cstdlib>
#include <memory>

namespace px::test {

parallel::World* g_world = nullptr;

parallel::World& world() {
  CHECK(g_world != nullptr) << "px::test::world() outside an MPI test binary";
  return *g_world;
}

}  // namespace px::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Tests use short deadlines so a broken collective fails the test instead of hanging ctest.
  px::parallel::GroupOptions options;
  options.timeout = std::chrono::seconds(120);
  auto world = std::make_unique<px::parallel::World>(options);
  px::test::g_world = world.get();
  px::init_logging(argv[0], "", world->rank());
  px::set_num_threads(px::default_num_threads(world->placement().local_size));  // the ranks share the cores
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int result = RUN_ALL_TESTS();
  if (result != 0) {
    std::fprintf(stderr, "rank %d: %d test(s) failed\n", world->rank(),
                 ::testing::UnitTest::GetInstance()->failed_test_count());
  }
  px::test::g_world = nullptr;
  world.reset();
  return result;
}

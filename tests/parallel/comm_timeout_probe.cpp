// Timeout probe for comm_timeout_check.sh (3 ranks under mpirun): rank 2 misbehaves after the first all_reduce
// (`stall`: sleeps 30 s; `exit`: leaves main), ranks 0 and 1 must fail within the 2 s deadline naming rank 2.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/ops/factory.h"
#include "parallel/comm/world.h"

int main(int argc, char** argv) {
  using namespace px;
  using namespace px::parallel;
  if (argc != 2 || (std::strcmp(argv[1], "stall") != 0 && std::strcmp(argv[1], "exit") != 0)) {
    std::fprintf(stderr, "usage: comm_timeout_probe stall|exit\n");
    return 2;
  }
  const bool stall = std::strcmp(argv[1], "stall") == 0;
  GroupOptions options;
  options.timeout = std::chrono::seconds(2);
  World world(options);
  ProcessGroup& group = world.group();
  if (group.size() != 3) {
    std::fprintf(stderr, "comm_timeout_probe runs on 3 ranks, got %d\n", group.size());
    return 2;
  }
  Tensor t = ones({1 << 20});  // (1048576)
  group.all_reduce(t, ReduceOp::sum)->wait();  // #1: every rank
  if (group.rank() == 2) {
    if (stall) std::this_thread::sleep_for(std::chrono::seconds(30));
    return 0;  // exit: MPI_Finalize in ~World; the others must still fail, not hang
  }
  try {
    group.all_reduce(t, ReduceOp::sum)->wait();  // #2: rank 2 never arrives
  } catch (const CommError& e) {
    std::fprintf(stderr, "probe rank %d: %s\n", group.rank(), e.what());
    abort_job(3);
  }
  std::fprintf(stderr, "probe rank %d: all_reduce #2 completed without rank 2\n", group.rank());
  return 1;
}

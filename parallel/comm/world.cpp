// World: MPI initialisation and finalisation, the process's placement (cross-checked against mpirun's and
// Slurm's environment), the world group, and abort_job for fatal communication errors.
#include "parallel/comm/world.h"

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/util/check.h"
#include "parallel/comm/mpi_process_group.h"

namespace px::parallel {

namespace {

std::atomic<bool> g_comm_error_seen{false};

// The integer value of environment variable `name`, or -1 when it is unset.
int env_int(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return -1;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < 0) throw UsageError(std::string("environment variable ") + name + "='" + value +
                                                   "' is not a non-negative integer");
  return static_cast<int>(parsed);
}

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

}  // namespace

bool launched_by_mpi() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr) return true;
  return std::getenv("SLURM_PROCID") != nullptr && env_int("SLURM_NTASKS") > 1;
}

void note_comm_error() { g_comm_error_seen.store(true); }

World::World(GroupOptions options) {
  if (!launched_by_mpi()) {
    group_ = std::make_unique<LocalProcessGroup>("world", 0);
    group_->set_timeout(options.timeout);
    return;
  }
  int initialized = 0;
  MPI_CHECK(MPI_Initialized(&initialized));
  CHECK(!initialized) << "a second World in one process (MPI is initialised once per process)";
  // libnbc's own choice for MPI_Iallreduce is a binomial tree (reduce to one rank, then broadcast) for every
  // in-place call and below 4 ranks, half the bandwidth of its ring (bench_collective_bandwidth, 2 ranks,
  // 1-64 MiB: 0.6x -> 0.95x of blocking MPI_Allreduce). The ring, unless the user set the parameter.
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
  CHECK_EQ(provided, MPI_THREAD_MULTIPLE) << "this MPI library does not provide MPI_THREAD_MULTIPLE, which the "
                                             "communication threads need";
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  placement_.launched = true;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &placement_.rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &placement_.size));
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, placement_.rank, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_rank(node, &placement_.local_rank));
  MPI_CHECK(MPI_Comm_size(node, &placement_.local_size));
  MPI_CHECK(MPI_Comm_free(&node));
  for (const char* variable : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    const int launcher_local_rank = env_int(variable);
    if (launcher_local_rank >= 0 && launcher_local_rank != placement_.local_rank) {
      throw UsageError("world rank " + std::to_string(placement_.rank) + ": " + variable + "=" +
                       std::to_string(launcher_local_rank) + " but MPI_COMM_TYPE_SHARED gives local rank " +
                       std::to_string(placement_.local_rank));
    }
  }
  group_ = std::make_unique<MpiProcessGroup>("world", MPI_COMM_WORLD, options);
}

World::~World() {
  group_.reset();
  if (!placement_.launched || !mpi_running()) return;
  if (g_comm_error_seen.load()) abort_job(1);
  MPI_Finalize();
}

void abort_job(int exit_code, double grace_seconds) {
  std::fflush(stdout);
  std::fflush(stderr);
  google::FlushLogFiles(google::GLOG_INFO);
  std::this_thread::sleep_for(std::chrono::duration<double>(grace_seconds));
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}

}  // namespace px::parallel

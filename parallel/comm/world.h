// The process's place in the job: MPI initialisation and finalisation (RAII), world rank/size and the
// local rank, cross-checked against mpirun's and Slurm's environment, and the world ProcessGroup.
#pragma once

#include <memory>

#include "parallel/comm/process_group.h"

namespace px::parallel {

// Where this process runs, read once at start.
struct ProcessPlacement {
  int rank = 0, size = 1;              // in the world
  int local_rank = 0, local_size = 1;  // on this node
  bool launched = false;  // started by mpirun/srun (MPI initialised); false: a single process without MPI
};

// True when the environment says a launcher started this process (OMPI_COMM_WORLD_SIZE, PMIX_RANK, or
// SLURM_PROCID with SLURM_NTASKS > 1).
bool launched_by_mpi();

// Owns MPI for the process's lifetime: MPI_Init_thread(MPI_THREAD_MULTIPLE) when launched_by_mpi(), else a
// world of one (LocalProcessGroup, no MPI). The local rank comes from MPI_COMM_TYPE_SHARED and must equal
// OMPI_COMM_WORLD_LOCAL_RANK / SLURM_LOCALID when those are set (a px::UsageError naming both otherwise).
// The destructor finalises MPI unless a CommError was seen (abort_job), which never returns.
class World {
 public:
  explicit World(GroupOptions options = {});
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  const ProcessPlacement& placement() const { return placement_; }
  int rank() const { return placement_.rank; }
  int size() const { return placement_.size; }
  // The group of every process ("world"): an MpiProcessGroup over MPI_COMM_WORLD, or a LocalProcessGroup.
  ProcessGroup& group() { return *group_; }

 private:
  ProcessPlacement placement_;
  std::unique_ptr<ProcessGroup> group_;
};

// Records that this process raised a CommError (the backends call it when they throw one): ~World then calls
// abort_job instead of MPI_Finalize, which would wait for ranks that may never arrive.
void note_comm_error();

// After a fatal communication error: gives the other ranks `grace_seconds` to report their own errors, then
// MPI_Abort(MPI_COMM_WORLD, exit_code) (or exit(exit_code) without MPI). Never returns.
[[noreturn]] void abort_job(int exit_code, double grace_seconds = 2.0);

}  // namespace px::parallel

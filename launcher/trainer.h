// `parallax train`: trains the config's model (its Task) into a run directory, logging progress and metrics,
// evaluating and checkpointing every N steps, resuming from the run's latest checkpoint.
#pragma once

#include <string>
#include <vector>

namespace px {

struct TrainCommand {
  std::string config_path;             // empty: the run dir's config.pbtxt (resume)
  std::string run_dir;
  std::vector<std::string> overrides;  // "a.b=value", applied after the config file
};

// Returns the exit code: 0 when the run reached a limit (steps, epochs, minutes) or stopped on SIGINT/SIGTERM/
// SIGUSR1 after saving a checkpoint. Bad input (config, data, run dir of another model, a layout parallel.tp
// cannot split) throws px::Error on every rank before anything in the run dir is changed. Under mpirun/srun
// every rank calls it; a later error on one rank (a lost peer) prints one line and aborts the job.
int run_train(const TrainCommand& command);

}  // namespace px

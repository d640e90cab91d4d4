// `parallax train`: trains a Translator from a config into a run directory, logging progress and metrics,
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

// Returns the exit code: 0 when the run reached a limit (steps, epochs, minutes) or stopped on SIGINT/SIGTERM
// after saving a checkpoint. Bad input (config, data, run dir of another model) throws px::Error before
// anything in the run dir is changed.
int run_train(const TrainCommand& command);

}  // namespace px

// The run directory's config: <run_dir>/config.pbtxt with the command's overrides, validated.
#include "launcher/run_dir.h"

#include <filesystem>

#include "core/util/error.h"
#include "launcher/config.h"

namespace px {

config::Config load_run_config(const RunDir& run, const std::vector<std::string>& overrides) {
  if (!std::filesystem::exists(run.config())) {
    throw ConfigError(run.root + ": not a run directory (no config.pbtxt; start one with `parallax train CONFIG --run-dir " +
                      run.root + "`)");
  }
  config::Config config = load_config_file(run.config());
  apply_overrides(config, overrides);
  validate_config(config);
  return config;
}

}  // namespace px

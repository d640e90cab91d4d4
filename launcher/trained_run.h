// A trained run opened for the commands that use its latest checkpoint (eval, translate, detect): the run's config
// with the command's overrides, the checkpoint, the model-shape check, CPU threads and the device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "configs/parallax.pb.h"
#include "core/nn/module.h"
#include "launcher/device_plan.h"
#include "launcher/run_dir.h"

namespace CLI {
class App;
}

namespace px {

// The options of every command that opens a trained run: --run-dir (required), --device and --set.
void add_trained_run_options(CLI::App& cmd, std::string& run_dir, std::string& device,
                             std::vector<std::string>& overrides);

struct TrainedRun {
  RunDir run;
  config::Config config;   // config.pbtxt with the overrides, validated
  std::string checkpoint;  // the latest checkpoint's directory
  DevicePlan plan;         // one process: the first visible GPU, made current
};

// Opens `run_dir` for inference on `device` (auto | cpu | cuda, errors naming --device). Not a run directory, no
// checkpoint yet, or overrides that change the model's shape are px::Errors naming the run dir. Sets the CPU
// threads (train.threads, else the default).
TrainedRun open_trained_run(const std::string& run_dir, const std::string& device,
                            const std::vector<std::string>& overrides);

// Loads the checkpoint's model tensors into `model` (built from run.config on run.plan's device) and leaves it in
// eval mode. Returns the checkpoint's step.
int64_t load_trained_weights(const TrainedRun& run, nn::Module& model);

}  // namespace px

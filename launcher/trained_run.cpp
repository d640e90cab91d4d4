// Opening a run dir's latest checkpoint for eval, translate and detect: their shared options, config and overrides,
// the shape check against the checkpoint's own config, threads and the device plan, then the weights.
#include "launcher/trained_run.h"

#include <CLI/CLI.hpp>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/util/error.h"
#include "launcher/checkpoint.h"
#include "launcher/config.h"

namespace px {

void add_trained_run_options(CLI::App& cmd, std::string& run_dir, std::string& device,
                             std::vector<std::string>& overrides) {
  cmd.add_option("--run-dir", run_dir, "Run directory written by `parallax train`")->required();
  cmd.add_option("--device", device,
                 "auto (a GPU when one is usable), cpu or cuda; the precision is the config's train.precision")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--set", overrides, "Override a config field, e.g. --set eval.length_penalty=0.6")
      ->allow_extra_args(false);
}

TrainedRun open_trained_run(const std::string& run_dir, const std::string& device,
                            const std::vector<std::string>& overrides) {
  TrainedRun trained;
  trained.run = RunDir{run_dir};
  trained.config = load_run_config(trained.run, overrides);
  const auto latest = latest_checkpoint(trained.run.root);
  if (!latest) throw CheckpointError(trained.run.root + ": no checkpoint yet (train first)");
  trained.checkpoint = *latest;
  const config::Config saved = parse_config_text(read_manifest(*latest).config(), *latest + "/manifest.pbtxt");
  const std::string diff = model_shape_difference(saved, trained.config);
  if (!diff.empty()) throw ConfigError(trained.run.root + ": the overrides change the model (" + diff + ")");
  const int threads = trained.config.train().threads();
  set_num_threads(threads > 0 ? threads : default_num_threads());
  trained.plan = plan_device(device, trained.config.train().precision(), trained.config.parallel().gpu_collectives(),
                             parallel::ProcessPlacement{}, "--device");
  if (!trained.plan.device.is_cpu()) set_current_gpu(trained.plan.device.index);
  return trained;
}

int64_t load_trained_weights(const TrainedRun& run, nn::Module& model) {
  const int64_t step = load_checkpoint(run.checkpoint, model, nullptr, nullptr).step();
  model.eval();
  return step;
}

}  // namespace px

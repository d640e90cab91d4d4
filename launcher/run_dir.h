// The run directory every command shares: its layout (config, logs, metrics, checkpoints) and its config.
// Model kinds add their own records (the translator's tokenizer.hash).
#pragma once

#include <string>
#include <vector>

#include "configs/parallax.pb.h"

namespace px {

// <run_dir>/config.pbtxt (written at the first start), tokenizer.hash (the vocabulary the model was trained
// with), logs/, metrics.jsonl, checkpoints/.
struct RunDir {
  std::string root;
  std::string config() const { return root + "/config.pbtxt"; }
  std::string tokenizer_hash() const { return root + "/tokenizer.hash"; }
  std::string logs() const { return root + "/logs"; }
  std::string metrics() const { return root + "/metrics.jsonl"; }
};

// The config of an existing run: <run_dir>/config.pbtxt, with `overrides` applied and validated. A run dir
// without it is a ConfigError ("not a run directory").
config::Config load_run_config(const RunDir& run, const std::vector<std::string>& overrides);

}  // namespace px

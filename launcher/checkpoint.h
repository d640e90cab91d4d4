// Checkpoints: <run_dir>/checkpoints/step_<N>/ with manifest.pbtxt and one HDF5 file of tensors, written to
// step_<N>.tmp/ and renamed, `latest` replaced atomically, keep-last-K; loading checks every checksum.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/nn/module.h"
#include "core/optim/loss_scaler.h"
#include "core/optim/optimizer.h"
#include "core/util/generator.h"
#include "data/sampler.h"
#include "launcher/checkpoint.pb.h"
#include "parallel/tp/shard_spec.h"

namespace px {

// Everything a run needs to continue exactly where it stopped.
struct TrainState {
  int64_t step = 0;
  data::DataCursor cursor;
  std::vector<std::pair<std::string, Generator*>> rngs;  // saved by name; restored into the same objects
  int64_t tokens_seen = 0;
  double train_seconds = 0;
  std::optional<optim::LossScalerState> loss_scale;  // f16's dynamic loss scale; none for f32 and bf16
};

// How this rank's tensors relate to the full (tp = 1) tensors a checkpoint holds. Sharded parameters, and their
// optimizer state, are gathered over `tp` before saving and sliced after loading, so a checkpoint written on one
// dp x tp layout loads onto any other. The default is a single process.
struct ShardLayout {
  parallel::ProcessGroup* tp = nullptr;              // null or size 1: nothing is sharded
  std::map<std::string, parallel::ShardSpec> specs;  // by parameter name (collect_shard_specs); absent: replicated
  bool writer = true;  // this rank writes the files; every rank of `tp` must call save_checkpoint (the gathers)
  int world_size = 1;  // recorded in the manifest
};

// Saves `model`'s state dict, `optimizer`'s full state (Optimizer::gather_full_state: step and tensors per model
// parameter, named as in the model) and `state` as <run_dir>/checkpoints/step_<state.step>/, then points
// <run_dir>/checkpoints/latest at it (a text file holding "step_<N>", replaced by rename) and deletes all but the
// newest keep_last step_* directories (keep_last 0: none). `config_text` is stored in the manifest. Returns the directory.
// A failure (disk full, permissions) is a CheckpointError and leaves the previous checkpoints intact.
// Ranks that are not the layout's writer only take part in the gathers (the tp shards and the optimizer's own, e.g.
// ZeroAdamW's over dp: every rank of the run calls it) and return the directory name.
std::string save_checkpoint(const std::string& run_dir, const nn::Module& model, const optim::Optimizer& optimizer,
                            const TrainState& state, const std::string& config_text, int keep_last,
                            const ShardLayout& layout = {});

// The directory `latest` points at, or nullopt when the run dir has no checkpoint.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Reads and checks a manifest (format version, required fields). CheckpointError naming the file.
ckpt::proto::Manifest read_manifest(const std::string& checkpoint_dir);

// Loads a checkpoint written by save_checkpoint into `model` (strict: every tensor present with its shape; a floating
// tensor loads into another floating dtype, converted, so train.precision may change on resume),
// `optimizer` (may be null: eval/translate) and `state` (may be null; its rngs are restored by name).
// Checksums are verified; any mismatch, missing or extra tensor is a CheckpointError naming it, and nothing
// is modified unless everything checks out. Sharded tensors (layout) are checked against their full shapes and
// this rank's slice is kept; the optimizer gets the full tensors through Optimizer::load_full_state.
ckpt::proto::Manifest load_checkpoint(const std::string& checkpoint_dir, nn::Module& model,
                                      optim::Optimizer* optimizer, TrainState* state, const ShardLayout& layout = {});

}  // namespace px

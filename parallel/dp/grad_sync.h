// GradSync: how a training step turns every rank's gradients into one update of the model, as one strategy: none
// (dp = 1), bucketed all-reduce (GradBucketer + AdamW) or ZeRO-1 (ZeroAdamW), each owning its optimizer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/optim/adamw.h"
#include "parallel/comm/process_group.h"
#include "parallel/tp/shard_spec.h"

namespace px::parallel {

struct GradSyncOptions {
  bool shard_state = false;                 // ZeRO-1 (optimizer state sharded over dp) when dp > 1
  int64_t bucket_bytes = 25 * 1024 * 1024;  // bucketed all-reduce: GradBucketerOptions::bucket_bytes
  bool overlap = true;                      // bucketed all-reduce: buckets start during backward
  std::optional<DType> grad_dtype;          // bucketed all-reduce: GradBucketerOptions::wire_dtype
  optim::AdamWOptions adamw;
  std::vector<optim::ParamGroup> groups;  // of the model's parameters: lr and weight decay per group (at least one)
};

// One step with any strategy, for micro-batches k = 0 .. count - 1:
//   begin_micro_batch(k, count); forward; backward(loss / global normaliser)   (every k, also on a rank whose
//                                                                             part of micro-batch k is empty)
//   after_backward(); norm = clip(max_norm); step() (unless norm or loss is non-finite); zero_grad()
// Gradients are summed over dp, so the loss must already be divided by the global normaliser.
class GradSync {
 public:
  virtual ~GradSync() = default;

  // Before the forward and backward of micro-batch `index` (0-based) of `count` in this step.
  virtual void begin_micro_batch(int index, int count) = 0;
  // After the last micro-batch's backward: the gradients summed over dp where the optimizer reads them (the
  // model's, or ZeRO's slices). Collective over dp.
  virtual void after_backward() = 0;
  // torch's clip_grad_norm_ of the full model from what this strategy holds (parallel::clip_grad_norm's counting
  // over tp; ZeRO's slices over dp too): scales the gradients when max_norm / (total + 1e-6) < 1 and returns total.
  // Collective over tp (and dp). With loss scaling the gradients hold grad_scale times the gradient: total is the
  // unscaled norm and the gradients come out unscaled (and clipped). A non-finite total (an Inf or NaN on any rank,
  // which the sums spread to every rank) is the same on every rank, so every rank skips that step.
  virtual double clip(double max_norm, double grad_scale = 1.0) = 0;
  // The optimizer's update, written into the model's parameters. Collective over dp for ZeRO-1.
  virtual void step() = 0;
  // Drops every gradient: the model's and the optimizer's own.
  virtual void zero_grad() = 0;
  // The optimizer, for lr schedules and checkpoints (its full state is in the model's terms).
  virtual optim::Optimizer& optimizer() = 0;
  // One line for the console, without a newline: the strategy and what it costs.
  virtual std::string description() const = 0;
};

// The strategy for `dp`: none when dp has one rank, ZeRO-1 when options.shard_state, else bucketed all-reduce.
// named_params: the model's parameters by name in model order (the names of `specs`, collect_shard_specs);
// tp: the group the shards are spread over (clipping). Keeps references to tp and dp.
std::unique_ptr<GradSync> make_grad_sync(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                         const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp,
                                         ProcessGroup& dp, GradSyncOptions options);

}  // namespace px::parallel

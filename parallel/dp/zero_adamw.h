// ZeroAdamW: AdamW with its state sharded over the data-parallel group (ZeRO stage 1): every dp rank keeps the
// f32 master weights and both moments of 1/dp of each parameter, reduce-scatters the gradients instead of
// all-reducing them, updates its slices and all-gathers the new weights.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/optim/adamw.h"
#include "parallel/comm/process_group.h"
#include "parallel/tp/shard_spec.h"

namespace px::parallel {

// Each parameter p (numel n) is flattened and padded with zeros to dp * c elements, c = ceil(n / dp); dp rank r
// owns elements [r c, (r + 1) c): its master slice (a leaf of the parameter's dtype that the inner AdamW updates,
// with "exp_avg" and "exp_avg_sq" of the same (c) shape). As an Optimizer (lr, schedules, state) it is the AdamW
// over these slices: params() are the slices, state(slice) their moments. The model's parameters are written only
// by step_and_gather() (Optimizer::step() alone updates the slices and leaves the model as it was).
//
// A training step: backward (no GradBucketer), reduce_gradients(), clip_grad_norm(...), step_and_gather(), then
// zero_grad() of the model (and of this optimizer).
// Per rank the optimizer state is 3 slices (master + 2 moments) of ~1/dp of the model, against AdamW's 2 moments of
// the whole model (f32/f64 parameters are their own masters there): 3 / (2 dp) of AdamW's. Gradient buffers come on
// top: one flat (dp * C) buffer the size of the (padded) model and its (C) reduce-scatter result.
class ZeroAdamW : public optim::AdamW {
 public:
  // named_params: the model's parameters (all of one dtype, f32 or f64, on one device, contiguous), in model
  // order; those that do not require grad (frozen) are left out, as GradBucketer does.
  ZeroAdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, double lr, double weight_decay,
            optim::AdamWOptions options, ProcessGroup& dp);

  // Reduce-scatter (sum) of every parameter's gradient (zeros where it has none) over dp: afterwards this rank's
  // slices hold their part of the summed gradient (slice.grad()). The parameters' own gradients are left as they
  // were. Collective over dp.
  void reduce_gradients();
  // torch's clip_grad_norm_ of the full model from the slices' gradients: each element counted once over dp, and
  // over `tp` as parallel::clip_grad_norm counts it (sharded parameters on every tp rank, replicated ones on tp
  // rank 0); scales the slices' gradients when max_norm / (total + 1e-6) < 1. Returns total. Collective over
  // dp and tp.
  double clip_grad_norm(const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp, double max_norm);
  // AdamW on this rank's slices (Optimizer::step over them), then all_gather of the slices into every model
  // parameter. Collective over dp.
  void step_and_gather();

  ProcessGroup& dp() const { return *dp_; }
  // The model parameter `slice` is a part of, its name, and the slice length c (for checkpoints).
  struct SliceOf {
    std::string name;
    Tensor param;    // the model's parameter (shape as in the model)
    int64_t chunk;   // c
  };
  const SliceOf& slice_of(const Tensor& slice) const;
  // This rank's slice (c) of a full tensor shaped like `param` (flattened, zero-padded): for loading moments.
  Tensor local_slice(const Tensor& full, const SliceOf& s) const;
  // The full tensor (param's shape) from every rank's slice (c). Collective over dp.
  Tensor gather_slices(const Tensor& slice, const SliceOf& s) const;

  // Copies the model's parameters into the master slices again: after the model was loaded from a checkpoint.
  void reload_slices();

  // Bytes of optimizer state on this rank: master slices and both moments (3 C elements; the moments are counted
  // before the first step creates them), and what unsharded AdamW would hold (both moments of every parameter:
  // 2 sum(n) elements).
  int64_t state_bytes() const;
  int64_t unsharded_state_bytes() const;

 private:
  struct Slices;  // built before the AdamW base (it needs the slice tensors)
  ZeroAdamW(std::shared_ptr<Slices> slices, double lr, double weight_decay, optim::AdamWOptions options,
            ProcessGroup& dp);

  std::shared_ptr<Slices> slices_;
  ProcessGroup* dp_;
};

}  // namespace px::parallel

// ZeroAdamW: AdamW with its state sharded over the data-parallel group (ZeRO stage 1): every dp rank keeps the
// master weights and both moments of 1/dp of each parameter, reduce-scatters the gradients instead of
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
// owns elements [r c, (r + 1) c): its master slice (a leaf that the inner AdamW updates, with "exp_avg" and
// "exp_avg_sq" of the same (c) shape and dtype). Masters are f64 for f64 parameters and f32 for f32, bf16 and f16
// ones: f32/f64 parameters are their own masters (the slice holds the same values), a bf16/f16 parameter is the
// rounding of its f32 master. Gradients are reduced, and slices updated and gathered, in the master dtype (one set
// of flat buffers per master dtype). As an Optimizer (lr, schedules, groups) it is the AdamW over these slices:
// params() are the slices, group by group; its full state (gather_full_state / load_full_state) is in the model's
// terms. The model's parameters are written only by step_and_gather() (Optimizer::step() alone updates the slices).
//
// A training step: backward (no GradBucketer), reduce_gradients(), clip_grad_norm(...), step_and_gather(), then
// zero_grad() of the model (and of this optimizer).
// Per rank the optimizer state is 3 slices (master + 2 moments) of ~1/dp of the model, against AdamW's 2 moments of
// the whole model: 3 / (2 dp) of AdamW's for f32/f64 parameters. Gradient buffers come on top: one flat (dp * C)
// buffer the size of the (padded) model and its (C) reduce-scatter result, per master dtype.
class ZeroAdamW : public optim::AdamW {
 public:
  // The full-state key of a bf16/f16 parameter's f32 master weights (full tensors shaped like the parameter).
  static constexpr const char* kMasterKey = optim::kMasterKey;

  // named_params: the model's parameters by name (contiguous, on one device, f32, f64, bf16 or f16), in model order;
  // the names are those of the shard specs in clip_grad_norm. groups: each parameter of a group is one of
  // named_params (at most once over all groups); those that do not require grad (frozen) are left out, as
  // GradBucketer does. The inner AdamW has one group of slices per group, with its lr, weight decay and name.
  ZeroAdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, std::vector<optim::ParamGroup> groups,
            optim::AdamWOptions options, ProcessGroup& dp);
  // One group of every parameter in named_params.
  ZeroAdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, double lr, double weight_decay,
            optim::AdamWOptions options, ProcessGroup& dp);

  // Reduce-scatter (sum) of every parameter's gradient (zeros where it has none) over dp: afterwards this rank's
  // slices hold their part of the summed gradient (slice.grad(), in the master dtype). The parameters' own
  // gradients are left as they were. Collective over dp.
  void reduce_gradients();
  // torch's clip_grad_norm_ of the full model from the slices' gradients: each element counted once over dp, and
  // over `tp` as parallel::clip_grad_norm counts it (sharded parameters on every tp rank, replicated ones on tp
  // rank 0); scales the slices' gradients when max_norm / (total + 1e-6) < 1. Returns total. Collective over
  // dp and tp.
  // grad_scale: as parallel::clip_grad_norm's (loss scaling).
  double clip_grad_norm(const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp, double max_norm,
                        double grad_scale = 1.0);
  // AdamW on this rank's slices (Optimizer::step over them: one Backend::adamw call for all), then all_gather of the
  // slices into every model parameter (rounded to a bf16/f16 parameter's dtype). Collective over dp.
  void step_and_gather();

  // The trained model parameters, group by group.
  std::vector<Tensor> model_params() const override;
  // Every rank's slices of the moments gathered into tensors shaped like the model parameter (the master dtype),
  // plus kMasterKey for bf16/f16 parameters. Every rank holds state for the same slices (reduce_gradients gives
  // each one a gradient); collective over dp.
  std::vector<optim::FullParamState> gather_full_state() const override;
  // Reloads every master slice from the model's parameter (or from kMasterKey where given) and keeps this rank's
  // slice of each moment.
  void load_full_state(const std::vector<optim::FullParamState>& states) override;

  ProcessGroup& dp() const { return *dp_; }

  // Bytes of optimizer state on this rank: master slices and both moments (3 C elements of the master dtypes; the
  // moments are counted before the first step creates them), and what unsharded AdamW would hold (both moments of
  // every parameter in its own dtype: 2 sum(n) elements).
  int64_t state_bytes() const;
  int64_t unsharded_state_bytes() const;

 private:
  struct Slices;  // built before the AdamW base (it needs the slice tensors)
  ZeroAdamW(std::shared_ptr<Slices> slices, optim::AdamWOptions options, ProcessGroup& dp);

  std::shared_ptr<Slices> slices_;
  ProcessGroup* dp_;
};

}  // namespace px::parallel

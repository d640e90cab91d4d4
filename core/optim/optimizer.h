// Optimizer: the base of SGD and AdamW. Parameter groups with their own lr and weight decay (DETR's
// backbone lr), per-parameter state kept as Tensors, its full state in the model's terms, step() and zero_grad().
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor/tensor.h"

namespace px::optim {

struct ParamGroup {
  std::vector<Tensor> params;  // leaves that require grad, contiguous
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::string name;  // e.g. "backbone"; for logs, errors and checkpoints
  // The lr schedules scale; set to lr by the Optimizer when negative (left unset).
  double initial_lr = -1.0;
};

// The state key of a bf16/f16 parameter's f32 master weights (mixed precision: the optimizer updates the master and
// rounds it into the parameter).
inline constexpr char kMasterKey[] = "master";

// What an optimizer keeps per parameter. Tensors have the parameter's shape and device and its master_dtype (f32
// for bf16/f16 parameters): SGD "momentum_buffer"; AdamW "exp_avg", "exp_avg_sq" and kMasterKey for bf16/f16.
struct ParamState {
  int64_t step = 0;  // updates applied to this parameter
  std::map<std::string, Tensor> tensors;
};

// An optimizer's state of one model parameter in the model's terms (what checkpoints store): tensors shaped like
// `param`, whatever part of it the optimizer itself keeps (ZeroAdamW: a dp slice).
struct FullParamState {
  Tensor param;  // the model's parameter
  ParamState state;
};

class Optimizer {
 public:
  // Hyperparameters are checked here (negative lr or weight decay: px::ConfigError naming the group).
  Optimizer(std::string name, std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (others are skipped), under NoGradGuard.
  void step();
  // Drops (set_to_none) or zero-fills every parameter's gradient.
  void zero_grad(bool set_to_none = true);

  const std::string& name() const { return name_; }
  void add_param_group(ParamGroup group);
  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t i) const;
  double lr(size_t group = 0) const { return this->group(group).lr; }
  void set_lr(double lr, size_t group);
  // Every group to the same lr.
  void set_lr(double lr);
  // All parameters, group by group in order (the order checkpoints index state by).
  std::vector<Tensor> params() const;

  // The state of `param`, or null before its first update (or for a tensor the optimizer does not own).
  const ParamState* state(const Tensor& param) const;
  // The state of `param`, created empty if absent (checkpoint loading); CHECK-fails for foreign tensors.
  ParamState& mutable_state(const Tensor& param);

  // The model parameters this optimizer updates, in params() order: params() themselves here; an optimizer over
  // parts of them (ZeroAdamW) names the parameters the parts are of.
  virtual std::vector<Tensor> model_params() const { return params(); }
  // The state of every model parameter that has one, in model_params() order, as full tensors shaped like the
  // parameter (here the live state tensors themselves, not copies). May be collective (ZeroAdamW over dp).
  virtual std::vector<FullParamState> gather_full_state() const;
  // Replaces the whole state: each entry's param must be one of model_params() (at most once) with tensors shaped
  // like it (on any device, of any dtype: copied into the parameter's master dtype); parameters without an entry get
  // none, as before their first update. A kMasterKey entry of an f32/f64 parameter (a checkpoint of a bf16 run) is
  // written into the parameter itself. Call after the model's parameters were loaded (ZeroAdamW re-reads its master
  // weights from them).
  virtual void load_full_state(const std::vector<FullParamState>& states);

  // Fused updates (the default): SGD runs one host loop per CPU f32/f64 parameter (non-CPU tensors take the
  // device-generic path); AdamW makes one Backend::adamw call per device per step over every parameter (the f32
  // masters of 16-bit ones). false forces the device-generic path built from in-place and pointwise ops.
  void set_fused(bool fused) { fused_ = fused; }
  bool fused() const { return fused_; }

 protected:
  // Updates one parameter from its gradient; called under NoGradGuard with grad contiguous, of the parameter's
  // shape and of its master dtype.
  virtual void update(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) = 0;
  // One parameter's update in a step, as update() takes it.
  struct Update {
    const ParamGroup* group;
    Tensor param;
    Tensor grad;  // contiguous, the parameter's shape, its master dtype
    ParamState* state;
  };
  // Applies every update of one step (the parameters that have gradients, in params() order) under NoGradGuard. The
  // default calls update() for each in turn; an optimizer that batches parameters (AdamW) overrides it.
  virtual void update_all(const std::vector<Update>& updates);
  // Whether the fused host loop applies to `param`.
  bool use_host_loop(const Tensor& param) const;
  // Sets the state of `param` (one of params()) to `state`, or drops it when null.
  void reset_state(const Tensor& param, const ParamState* state);

 private:
  void check_group(ParamGroup& group, size_t index);

  std::string name_;
  bool fused_ = true;
  std::vector<ParamGroup> groups_;
  std::unordered_map<const TensorImpl*, ParamState> state_;
};

}  // namespace px::optim

// Dynamic loss scaling for f16 training (Megatron's DynamicGradScaler): the loss is multiplied by scale() before
// backward, a step whose gradients overflow is skipped and backs the scale off, good steps grow it again.
#pragma once

#include <cstdint>
#include <string>

namespace px::optim {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;   // after growth_interval consecutive good steps
  double backoff_factor = 0.5;  // after `hysteresis` overflowing steps (not necessarily consecutive)
  int64_t growth_interval = 2000;
  int hysteresis = 2;
  double min_scale = 1.0;
};

// What a checkpoint keeps of a scaler.
struct LossScalerState {
  double scale = 1.0;
  int64_t good_steps = 0;   // since the last growth or overflow
  int hysteresis_left = 0;  // overflows still tolerated before the next backoff
};

// Disabled (f32, bf16): the scale stays 1 and update() changes nothing, while the trainer still skips non-finite
// steps. Enabled (f16), per step: an overflow resets the good-step count and uses up one unit of hysteresis; with
// none left the scale backs off (to at least min_scale). growth_interval good steps in a row grow it and restore
// the hysteresis.
class LossScaler {
 public:
  LossScaler(bool enabled, LossScalerOptions options = {});

  bool enabled() const { return enabled_; }
  double scale() const { return state_.scale; }
  // Records the outcome of a step (found_non_finite: its gradients held an Inf or a NaN, so it was skipped).
  // Returns whether the scale changed.
  bool update(bool found_non_finite);

  const LossScalerState& state() const { return state_; }
  // A state with a non-positive or non-finite scale (a corrupt checkpoint) is a CheckpointError; a disabled scaler
  // keeps its scale of 1.
  void set_state(const LossScalerState& state);
  // "scale 32768 (2 of 2000 good steps, hysteresis 1 left)" for logs.
  std::string str() const;

 private:
  bool enabled_;
  LossScalerOptions options_;
  LossScalerState state_;
};

}  // namespace px::optim

// Dynamic loss scaling for f16 training: the scale's state machine (backoff with hysteresis, growth after an
// interval of good steps) and its checkpointed state.
#include "core/optim/loss_scaler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/util/check.h"
#include "core/util/error.h"

namespace px::optim {

LossScaler::LossScaler(bool enabled, LossScalerOptions options) : enabled_(enabled), options_(options) {
  CHECK(options_.init_scale > 0 && options_.growth_factor > 1 && options_.backoff_factor > 0 &&
        options_.backoff_factor < 1 && options_.growth_interval > 0 && options_.hysteresis > 0 &&
        options_.min_scale > 0)
      << "LossScaler: bad options (init " << options_.init_scale << ", growth " << options_.growth_factor
      << ", backoff " << options_.backoff_factor << ", interval " << options_.growth_interval << ", hysteresis "
      << options_.hysteresis << ", min " << options_.min_scale << ")";
  state_.scale = enabled_ ? options_.init_scale : 1.0;
  state_.hysteresis_left = options_.hysteresis;
}

bool LossScaler::update(bool found_non_finite) {
  if (!enabled_) return false;
  const double before = state_.scale;
  if (found_non_finite) {
    state_.good_steps = 0;
    state_.hysteresis_left -= 1;
    if (state_.hysteresis_left <= 0) {
      state_.scale = std::max(state_.scale * options_.backoff_factor, options_.min_scale);
      state_.hysteresis_left = 0;  // every further overflow backs off until the scale has grown again
    }
  } else if (++state_.good_steps == options_.growth_interval) {
    state_.good_steps = 0;
    state_.hysteresis_left = options_.hysteresis;
    state_.scale *= options_.growth_factor;
  }
  return state_.scale != before;
}

void LossScaler::set_state(const LossScalerState& state) {
  if (!(state.scale > 0 && std::isfinite(state.scale)) || state.good_steps < 0 || state.hysteresis_left < 0) {
    throw CheckpointError("loss scale " + std::to_string(state.scale) + " (good steps " +
                          std::to_string(state.good_steps) + ", hysteresis " + std::to_string(state.hysteresis_left) +
                          ") is not a valid scaler state");
  }
  if (!enabled_) return;  // f32/bf16 keep a scale of 1 whatever a checkpoint of an f16 run held
  state_ = state;
}

std::string LossScaler::str() const {
  char line[128];
  std::snprintf(line, sizeof line, "scale %g (%lld of %lld good steps, hysteresis %d left)", state_.scale,
                static_cast<long long>(state_.good_steps), static_cast<long long>(options_.growth_interval),
                state_.hysteresis_left);
  return line;
}

}  // namespace px::optim

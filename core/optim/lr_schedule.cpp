// Learning-rate schedules: parameter validation and the closed-form lr of each schedule
// (formulas documented in lr_schedule.h).
#include "core/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "core/util/error.h"

namespace px::optim {

double ConstantSchedule::lr_at(int64_t step, double base_lr) const { return base_lr; }

InverseSqrtSchedule::InverseSqrtSchedule(int64_t warmup_steps) : warmup_(warmup_steps) {
  if (warmup_steps < 1)
    throw ConfigError("inverse-sqrt schedule: warmup_steps must be >= 1, got " + std::to_string(warmup_steps));
}

double InverseSqrtSchedule::lr_at(int64_t step, double base_lr) const {
  if (step <= 0) return 0.0;
  const double s = static_cast<double>(step), w = static_cast<double>(warmup_);
  return base_lr * std::min(s / w, std::sqrt(w / s));
}

StepDecaySchedule::StepDecaySchedule(int64_t step_size, double gamma) : step_size_(step_size), gamma_(gamma) {
  if (step_size < 1) throw ConfigError("step-decay schedule: step_size must be >= 1, got " + std::to_string(step_size));
  if (!(gamma > 0.0)) throw ConfigError("step-decay schedule: gamma must be > 0, got " + std::to_string(gamma));
}

double StepDecaySchedule::lr_at(int64_t step, double base_lr) const {
  const int64_t k = std::max<int64_t>(step - 1, 0) / step_size_;
  return base_lr * std::pow(gamma_, static_cast<double>(k));
}

CosineSchedule::CosineSchedule(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio)
    : warmup_(warmup_steps), total_(total_steps), min_ratio_(min_lr_ratio) {
  if (warmup_steps < 0 || total_steps <= warmup_steps)
    throw ConfigError("cosine schedule: need 0 <= warmup_steps < total_steps, got warmup " +
                      std::to_string(warmup_steps) + ", total " + std::to_string(total_steps));
  if (!(min_lr_ratio >= 0.0 && min_lr_ratio <= 1.0))
    throw ConfigError("cosine schedule: min_lr_ratio must be in [0, 1], got " + std::to_string(min_lr_ratio));
}

double CosineSchedule::lr_at(int64_t step, double base_lr) const {
  if (step <= warmup_) return base_lr * static_cast<double>(std::max<int64_t>(step, 0)) / static_cast<double>(warmup_);
  const double q = std::min(1.0, static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_));
  const double min_lr = base_lr * min_ratio_;
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * q));
}

void apply_schedule(Optimizer& opt, const LrSchedule& schedule, int64_t step) {
  for (size_t i = 0; i < opt.num_groups(); ++i) opt.set_lr(schedule.lr_at(step, opt.group(i).initial_lr), i);
}

}  // namespace px::optim

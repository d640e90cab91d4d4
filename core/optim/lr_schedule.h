// Learning-rate schedules as pure functions of the update number, applied to every parameter group
// relative to its own initial_lr (so DETR's backbone keeps its ratio to the rest).
#pragma once

#include <memory>

#include "core/optim/optimizer.h"

namespace px::optim {

// `step` is the 1-based number of the update about to be applied: call apply_schedule(opt, s, k)
// before the k-th opt.step(), k = 1, 2, ... . Invalid parameters are a px::ConfigError.
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // The lr of update `step` for a group whose initial lr is `base_lr`.
  virtual double lr_at(int64_t step, double base_lr) const = 0;
};

// lr = base.
class ConstantSchedule : public LrSchedule {
 public:
  double lr_at(int64_t step, double base_lr) const override;
};

// "Attention Is All You Need" (Vaswani et al. 2017, eq. 3) normalised to peak at base when step == warmup:
//   lr = base * min(step / warmup, sqrt(warmup / step))        (step >= 1; step 0 gives 0)
// The paper's d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) is this with base = (d_model * warmup)^-0.5.
class InverseSqrtSchedule : public LrSchedule {
 public:
  explicit InverseSqrtSchedule(int64_t warmup_steps);  // warmup_steps >= 1
  double lr_at(int64_t step, double base_lr) const override;

 private:
  int64_t warmup_;
};

// lr = base * gamma^floor((step - 1) / step_size): updates 1..step_size use base, the next step_size
// use base * gamma, ... (torch.optim.lr_scheduler.StepLR stepped once after every update).
class StepDecaySchedule : public LrSchedule {
 public:
  StepDecaySchedule(int64_t step_size, double gamma);  // step_size >= 1, gamma > 0
  double lr_at(int64_t step, double base_lr) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// Linear warmup then cosine decay to min = base * min_lr_ratio:
//   step <= warmup:  lr = base * step / warmup
//   otherwise:       q = min(1, (step - warmup) / (total - warmup)),
//                    lr = min + (base - min) * (1 + cos(pi * q)) / 2
// so lr == base at step == warmup and lr == min from step == total on.
class CosineSchedule : public LrSchedule {
 public:
  // 0 <= warmup < total, 0 <= min_lr_ratio <= 1.
  CosineSchedule(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio = 0.0);
  double lr_at(int64_t step, double base_lr) const override;

 private:
  int64_t warmup_, total_;
  double min_ratio_;
};

// Sets every group's lr to schedule.lr_at(step, group.initial_lr).
void apply_schedule(Optimizer& opt, const LrSchedule& schedule, int64_t step);

}  // namespace px::optim

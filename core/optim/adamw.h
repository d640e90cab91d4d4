// AdamW (Loshchilov & Hutter) with torch.optim.AdamW's semantics, per parameter and step t = 1, 2, ...:
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#pragma once

#include "core/backend/backend.h"
#include "core/optim/optimizer.h"

namespace px::optim {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class AdamW : public Optimizer {
 public:
  // betas outside [0, 1) or eps < 0 are a px::ConfigError. torch's default weight decay is 1e-2.
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
  AdamW(std::vector<Tensor> params, double lr, double weight_decay = 1e-2, AdamWOptions options = {})
      : AdamW(std::vector<ParamGroup>{ParamGroup{std::move(params), lr, weight_decay, "", -1.0}}, options) {}

  const AdamWOptions& options() const { return options_; }

 protected:
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) override;
  // Fused: one Backend::adamw call per device over every update; else update() for each.
  void update_all(const std::vector<Update>& updates) override;

 private:
  // The state of `param` (created as at its first update: zero moments, the master from the parameter), its step
  // count advanced, as a Backend::adamw slot with this step's coefficients.
  AdamWSlot prepare(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) const;

  AdamWOptions options_;
};

}  // namespace px::optim

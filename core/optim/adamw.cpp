// AdamW: state "exp_avg" (m) and "exp_avg_sq" (v) as zero-initialised Tensors (and an f32 master of a bf16/f16
// parameter); one fused Backend::adamw call per device per step over every parameter, or a device-generic path from
// ops (set_fused(false)), in torch's order.
#include "core/optim/adamw.h"

#include <cmath>
#include <utility>

#include "core/backend/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/util/error.h"

namespace px::optim {

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Optimizer("AdamW", std::move(groups)), options_(options) {
  for (double b : {options.beta1, options.beta2})
    if (!(b >= 0.0 && b < 1.0)) throw ConfigError("AdamW: betas must be in [0, 1), got " + std::to_string(b));
  if (!(options.eps >= 0.0)) throw ConfigError("AdamW: eps must be >= 0, got " + std::to_string(options.eps));
}

AdamWSlot AdamW::prepare(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) const {
  // A bf16/f16 parameter is updated through its f32 master (created from it at the first update) and rounded.
  const bool has_master = master_dtype(param.dtype()) != param.dtype();
  Tensor master;
  if (has_master) {
    auto it = state.tensors.find(kMasterKey);
    if (it == state.tensors.end()) it = state.tensors.emplace(kMasterKey, to_dtype(param, DType::f32)).first;
    master = it->second;
  }
  const Tensor& target = has_master ? master : param;
  auto m_it = state.tensors.find("exp_avg");
  if (m_it == state.tensors.end()) m_it = state.tensors.emplace("exp_avg", zeros_like(target)).first;
  auto v_it = state.tensors.find("exp_avg_sq");
  if (v_it == state.tensors.end()) v_it = state.tensors.emplace("exp_avg_sq", zeros_like(target)).first;
  const int64_t t = ++state.step;
  AdamWSlot slot;
  slot.param = param;
  slot.grad = grad;
  slot.exp_avg = m_it->second;
  slot.exp_avg_sq = v_it->second;
  slot.master = master;
  slot.step_size = group.lr / (1.0 - std::pow(options_.beta1, static_cast<double>(t)));
  slot.bc2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(t)));
  slot.decay = 1.0 - group.lr * group.weight_decay;
  return slot;
}

void AdamW::update(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) {
  const AdamWSlot s = prepare(group, param, grad, state);
  if (fused()) {
    backend_for(param.device()).adamw({s}, options_.beta1, options_.beta2, options_.eps);
    return;
  }
  // device-generic path
  const Tensor& target = s.master.defined() ? s.master : s.param;
  const Tensor &m = s.exp_avg, &v = s.exp_avg_sq;
  if (group.weight_decay != 0.0) mul_(target, s.decay);
  mul_(m, options_.beta1);
  add_(m, grad, 1.0 - options_.beta1);
  mul_(v, options_.beta2);
  add_(v, mul(grad, grad), 1.0 - options_.beta2);
  const Tensor denom = add(mul(sqrt(v), 1.0 / s.bc2_sqrt), options_.eps);
  add_(target, div(m, denom), -s.step_size);
  if (s.master.defined()) copy_(param, target);
}

void AdamW::update_all(const std::vector<Update>& updates) {
  if (!fused()) {
    Optimizer::update_all(updates);
    return;
  }
  // One Backend::adamw call per device, its slots in parameter order.
  std::vector<std::pair<Device, std::vector<AdamWSlot>>> by_device;
  for (const Update& u : updates) {
    AdamWSlot slot = prepare(*u.group, u.param, u.grad, *u.state);
    auto it = by_device.begin();
    while (it != by_device.end() && !(it->first == u.param.device())) ++it;
    if (it == by_device.end()) it = by_device.insert(it, {u.param.device(), {}});
    it->second.push_back(std::move(slot));
  }
  for (const auto& [device, slots] : by_device)
    backend_for(device).adamw(slots, options_.beta1, options_.beta2, options_.eps);
}

}  // namespace px::optim

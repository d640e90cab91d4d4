// Optimizer base: group validation, the step (gradients made contiguous, parameters without gradients skipped, the
// updates handed to update_all together), lr access per group, the per-parameter state map and its full state.
#include "core/optim/optimizer.h"

#include <set>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/view.h"
#include "core/util/error.h"

namespace px::optim {

static std::string group_label(const ParamGroup& g, size_t index) {
  return "parameter group " + std::to_string(index) + (g.name.empty() ? "" : " ('" + g.name + "')");
}

Optimizer::Optimizer(std::string name, std::vector<ParamGroup> groups) : name_(std::move(name)) {
  for (ParamGroup& g : groups) add_param_group(std::move(g));
}

void Optimizer::check_group(ParamGroup& g, size_t index) {
  if (!(g.lr >= 0.0)) throw ConfigError(name_ + ": " + group_label(g, index) + ": lr must be >= 0, got " +
                                        std::to_string(g.lr));
  if (!(g.weight_decay >= 0.0))
    throw ConfigError(name_ + ": " + group_label(g, index) + ": weight_decay must be >= 0, got " +
                      std::to_string(g.weight_decay));
  if (g.initial_lr < 0.0) g.initial_lr = g.lr;
  std::set<const TensorImpl*> seen;
  for (const ParamGroup& other : groups_)
    for (const Tensor& p : other.params) seen.insert(p.impl());
  for (size_t i = 0; i < g.params.size(); ++i) {
    const Tensor& p = g.params[i];
    CHECK(p.defined()) << name_ << ": " << group_label(g, index) << ": parameter " << i << " is undefined";
    CHECK(p.is_leaf() && p.requires_grad())
        << name_ << ": " << group_label(g, index) << ": parameter " << i << " (" << p.str()
        << ") must be a leaf that requires grad";
    CHECK(p.is_contiguous()) << name_ << ": parameter " << i << " is not contiguous: " << p.str();
    CHECK(seen.insert(p.impl()).second)
        << name_ << ": " << group_label(g, index) << ": parameter " << i << " (" << p.str()
        << ") appears more than once across the parameter groups";
  }
}

void Optimizer::add_param_group(ParamGroup group) {
  check_group(group, groups_.size());
  groups_.push_back(std::move(group));
}

const ParamGroup& Optimizer::group(size_t i) const {
  CHECK_LT(i, groups_.size()) << name_ << ": no parameter group " << i;
  return groups_[i];
}

void Optimizer::set_lr(double lr, size_t group) {
  CHECK_LT(group, groups_.size()) << name_ << ": no parameter group " << group;
  if (!(lr >= 0.0)) throw ConfigError(name_ + ": lr must be >= 0, got " + std::to_string(lr));
  groups_[group].lr = lr;
}

void Optimizer::set_lr(double lr) {
  for (size_t i = 0; i < groups_.size(); ++i) set_lr(lr, i);
}

std::vector<Tensor> Optimizer::params() const {
  std::vector<Tensor> out;
  for (const ParamGroup& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

const ParamState* Optimizer::state(const Tensor& param) const {
  auto it = state_.find(param.impl());
  return it == state_.end() ? nullptr : &it->second;
}

ParamState& Optimizer::mutable_state(const Tensor& param) {
  bool owned = false;
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params) owned = owned || p.impl() == param.impl();
  CHECK(owned) << name_ << ": " << param.str() << " is not a parameter of this optimizer";
  return state_[param.impl()];
}

void Optimizer::reset_state(const Tensor& param, const ParamState* state) {
  if (state == nullptr) {
    state_.erase(param.impl());
    return;
  }
  mutable_state(param) = *state;
}

std::vector<FullParamState> Optimizer::gather_full_state() const {
  std::vector<FullParamState> out;
  for (const Tensor& p : params())
    if (const ParamState* s = state(p)) out.push_back(FullParamState{p, *s});
  return out;
}

void Optimizer::load_full_state(const std::vector<FullParamState>& states) {
  std::unordered_map<const TensorImpl*, const FullParamState*> by_param;
  for (const FullParamState& s : states)
    CHECK(by_param.emplace(s.param.impl(), &s).second)
        << name_ << "::load_full_state: " << s.param.str() << " has two states";
  NoGradGuard no_grad;
  size_t loaded = 0;
  for (const Tensor& p : params()) {
    const auto it = by_param.find(p.impl());
    if (it == by_param.end()) {
      reset_state(p, nullptr);
      continue;
    }
    ++loaded;
    ParamState restored{it->second->state.step, {}};
    for (const auto& [key, t] : it->second->state.tensors) {
      CHECK(t.shape() == p.shape()) << name_ << "::load_full_state: '" << key << "' " << t.str()
                                    << " is not shaped like its parameter " << p.str();
      if (key == kMasterKey && master_dtype(p.dtype()) == p.dtype()) {  // the parameter is its own master
        copy_(p, t);
        continue;
      }
      const Tensor own = Tensor::empty(p.shape(), master_dtype(p.dtype()), p.device());  // never the caller's storage
      copy_(own, t);
      restored.tensors.emplace(key, own);
    }
    reset_state(p, &restored);
  }
  CHECK_EQ(loaded, states.size()) << name_ << "::load_full_state: a state of a tensor that is not a parameter of "
                                  << "this optimizer";
}

bool Optimizer::use_host_loop(const Tensor& param) const {
  return fused_ && param.device().is_cpu() && (param.dtype() == DType::f32 || param.dtype() == DType::f64);
}

void Optimizer::update_all(const std::vector<Update>& updates) {
  for (const Update& u : updates) update(*u.group, u.param, u.grad, *u.state);
}

void Optimizer::step() {
  NoGradGuard no_grad;
  std::vector<Update> updates;
  for (const ParamGroup& g : groups_) {
    for (const Tensor& p : g.params) {
      const Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      CHECK(grad.shape() == p.shape() && grad.dtype() == master_dtype(p.dtype()) && grad.device() == p.device())
          << name_ << ": gradient " << grad.str() << " does not match parameter " << p.str();
      updates.push_back(Update{&g, p, contiguous(grad), &state_[p.impl()]});  // unordered_map: stable addresses
    }
  }
  update_all(updates);
  for (const Update& u : updates) u.param.bump_version();
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params) {
      if (!p.grad().defined()) continue;
      if (set_to_none) {
        p.set_grad(Tensor());
      } else {
        fill_(p.grad(), 0.0);
      }
    }
}

}  // namespace px::optim

// Module: registration, hierarchical naming, train/eval propagation, state dicts and zero_grad.
// Loading copies in place under NoGradGuard so the handles layers keep as members stay valid.
#include "core/nn/module.h"

#include <set>

#include "core/autograd/grad_mode.h"
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"
#include "core/util/error.h"

namespace px::nn {

void Module::check_new_name(const std::string& name) const {
  CHECK(!name.empty() && name.find('.') == std::string::npos)
      << type_name_ << ": invalid member name '" << name << "' (must be non-empty without '.')";
  for (const Entry& e : params_) CHECK(e.name != name) << type_name_ << ": '" << name << "' is already a parameter";
  for (const Entry& e : buffers_) CHECK(e.name != name) << type_name_ << ": '" << name << "' is already a buffer";
  for (const auto& c : children_) CHECK(c.first != name) << type_name_ << ": '" << name << "' is already a module";
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name);
  CHECK(t.defined()) << type_name_ << ": parameter '" << name << "' is undefined";
  CHECK(t.is_leaf()) << type_name_ << ": parameter '" << name << "' must be a leaf, got the output of "
                     << "an op; pass a detached tensor";
  CHECK(t.is_contiguous()) << type_name_ << ": parameter '" << name << "' must be contiguous, got " << t.str();
  if (requires_grad && is_floating(t.dtype())) t.set_requires_grad(true);
  params_.push_back({name, t, true});
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name);
  CHECK(t.defined()) << type_name_ << ": buffer '" << name << "' is undefined";
  buffers_.push_back({name, t, persistent});
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  CHECK(module != nullptr) << type_name_ << ": child module '" << name << "' is null";
  CHECK(module.get() != this) << type_name_ << ": a module cannot be its own child";
  module->train(training_);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool params, bool persistent_only,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const Entry& e : params ? params_ : buffers_)
    if (!persistent_only || e.persistent) out.emplace_back(prefix + e.name, e.tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, persistent_only, out);
}

// Keeps the first occurrence of each TensorImpl (tied weights).
static std::vector<std::pair<std::string, Tensor>> dedupe(std::vector<std::pair<std::string, Tensor>> all) {
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(all.size());
  for (auto& entry : all)
    if (seen.insert(entry.second.impl()).second) out.push_back(std::move(entry));
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", /*params=*/true, /*persistent_only=*/false, all);
  return dedupe(std::move(all));
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", /*params=*/false, /*persistent_only=*/false, all);
  return dedupe(std::move(all));
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (const auto& [sub, m] : child->named_modules()) out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (const auto& c : children_) c.second->train(on);
}

StateDict Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", true, false, all);
  collect("", false, /*persistent_only=*/true, all);
  StateDict out;
  for (auto& [name, t] : all) out.emplace(name, t.detach());
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  std::vector<std::pair<std::string, Tensor>> targets;
  collect("", true, false, targets);
  collect("", false, true, targets);
  // Check everything before copying anything, so a bad checkpoint leaves the module untouched.
  std::set<std::string> known;
  for (const auto& [name, dst] : targets) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end() && !strict) continue;
    if (it == state.end())
      throw CheckpointError("load_state_dict (" + type_name_ + "): missing key '" + name + "'");
    const Tensor& src = it->second;
    if (!src.defined()) throw CheckpointError("load_state_dict: key '" + name + "' holds an undefined tensor");
    if (src.shape() != dst.shape())
      throw CheckpointError("load_state_dict: key '" + name + "' has shape " + shape_str(src.shape()) +
                            ", the module expects " + shape_str(dst.shape()));
    if (src.dtype() != dst.dtype())
      throw CheckpointError("load_state_dict: key '" + name + "' has dtype " + dtype_name(src.dtype()) +
                            ", the module expects " + dtype_name(dst.dtype()));
  }
  if (strict)
    for (const auto& entry : state)
      if (!known.count(entry.first))
        throw CheckpointError("load_state_dict (" + type_name_ + "): unexpected key '" + entry.first + "'");
  NoGradGuard no_grad;
  for (const auto& [name, dst] : targets) {
    auto it = state.find(name);
    if (it != state.end() && it->second.impl() != dst.impl()) copy_(dst, it->second);
  }
}

namespace {

// Gives t's TensorImpl new storage on `device` holding its values as `dtype` (t whole and contiguous).
void move_in_place(const Tensor& t, Device device, DType dtype, const std::string& name) {
  if (t.device() == device && t.dtype() == dtype) return;
  CHECK(t.is_contiguous() && t.offset() == 0 &&
        t.storage()->bytes() == static_cast<size_t>(t.numel()) * dtype_size(t.dtype()))
      << "Module::to: '" << name << "' " << t.str() << " is a view, not a whole contiguous tensor";
  const Tensor moved = Tensor::empty(t.shape(), dtype, device);
  backend_for(device.is_cpu() ? t.device() : device).copy(t, moved);  // the CUDA backend copies across the bus
  TensorImpl* impl = t.impl();
  impl->storage = moved.storage();
  impl->dtype = dtype;
  impl->storage->bump_version();
}

}  // namespace

void Module::to(Device device, std::optional<DType> float_dtype) {
  NoGradGuard no_grad;
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", true, false, all);
  collect("", false, false, all);
  std::set<const TensorImpl*> seen;
  for (const auto& [name, t] : all) {
    if (!seen.insert(t.impl()).second) continue;
    const DType dtype = float_dtype && is_floating(t.dtype()) ? *float_dtype : t.dtype();
    move_in_place(t, device, dtype, name);
    if (t.grad().defined()) move_in_place(t.grad(), device, master_dtype(dtype), name + " (gradient)");
  }
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (const Tensor& p : parameters()) {
    if (!p.grad().defined()) continue;
    if (set_to_none) {
      p.set_grad(Tensor());
    } else {
      fill_(p.grad(), 0.0);
    }
  }
}

}  // namespace px::nn

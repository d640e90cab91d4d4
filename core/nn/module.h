// Module: the base of every layer. Owns named parameters, buffers and child modules, gives them
// hierarchical names ("encoder.layers.0.fc1.weight"), switches train/eval and saves/loads state dicts.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace px::nn {

// name -> tensor; the tensors share storage with the module (like torch's state_dict()).
using StateDict = std::map<std::string, Tensor>;

// Layers derive from Module and register what they own in their constructor:
//   weight_ = register_parameter("weight", ...);  fc1_ = register_module("fc1", std::make_shared<Linear>(...));
// Registered tensors are handles: load_state_dict copies into them in place, so members stay valid.
// Forward functions are ordinary member functions of the subclass (their signatures differ).
class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // "Linear", "FeedForward", ...
  const std::string& type_name() const { return type_name_; }

  // Every parameter of this module and its descendants: own parameters in registration order, then each
  // child's in registration order (torch's order). A tensor shared by two modules (tied embeddings)
  // appears once, under its first name.
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // Persistent and non-persistent buffers, same order and naming as parameters.
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // Direct children in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // This module ("") and every descendant, depth first, with hierarchical names.
  std::vector<std::pair<std::string, Module*>> named_modules();
  // Total element count of parameters().
  int64_t num_parameters() const;

  // Switches this module and every descendant; virtual so layers with frozen statistics can refuse.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Parameters and persistent buffers by hierarchical name (shared tied tensors appear under every name).
  StateDict state_dict() const;
  // Copies each entry into the registered tensor of the same name (no grad, version bumped). Throws
  // px::CheckpointError naming the key when an entry has another shape or dtype, and in strict mode when
  // a key is missing or is not a parameter or persistent buffer of this module (non-strict skips both).
  // Everything is checked before anything is copied.
  void load_state_dict(const StateDict& state, bool strict = true);

  // Moves every parameter, buffer and gradient to `device` and converts the floating ones to `float_dtype` (when
  // given; a gradient to its master_dtype) in place: each handle keeps its TensorImpl and gets new storage, so the
  // tensors layers, optimizers and hooks hold stay valid. Every such tensor must be a whole contiguous one. Call
  // before building an optimizer (its state is not moved).
  void to(Device device, std::optional<DType> float_dtype = std::nullopt);

  // Drops every parameter's gradient (set_to_none, torch >= 2.0's default) or fills it with zeros.
  void zero_grad(bool set_to_none = true);

 protected:
  // `t` becomes a leaf that requires grad (when requires_grad and floating). Names are unique per module
  // and contain no '.'. Returns the registered handle.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Non-trainable state (running statistics, fixed encodings); persistent ones enter the state dict.
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void check_new_name(const std::string& name) const;
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  // Appends (prefix + name, tensor) of this subtree's parameters (params) or buffers (!params).
  void collect(const std::string& prefix, bool params, bool persistent_only,
               std::vector<std::pair<std::string, Tensor>>& out) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<Entry> params_;
  std::vector<Entry> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Switches a module to eval mode for a scope and restores its train/eval mode at the end.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Module& module) : module_(module), was_training_(module.is_training()) { module_.eval(); }
  ~EvalModeGuard() { module_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  Module& module_;
  bool was_training_;
};

}  // namespace px::nn

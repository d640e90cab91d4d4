// Containers without a forward of their own: ModuleList, child modules named "0", "1", ... (encoder.layers.3.fc1.weight)
// like torch.nn.ModuleList, and Container, children under names of the caller's ("encoder" with "layers", "norm").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/module.h"

namespace px::nn {

class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}

  // Registers `module` under the next index and returns it.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    register_module(std::to_string(items_.size()), module);
    items_.push_back(module);
    return module;
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  // The i-th module as its concrete type (CHECK-fails on a wrong type).
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    CHECK(m != nullptr) << "ModuleList: item " << i << " is a " << (*this)[i]->type_name();
    return m;
  }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

// A module that only groups named children, as a torch model's plain nn.Module attributes do.
class Container : public Module {
 public:
  explicit Container(const std::string& type_name) : Module(type_name) {}
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> module) {
    return register_module(name, std::move(module));
  }
};

}  // namespace px::nn

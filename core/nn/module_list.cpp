// ModuleList: indexed access with a bounds check that names the list's size.
// Registration lives in the header template.
#include "core/nn/module_list.h"

namespace px::nn {

const std::shared_ptr<Module>& ModuleList::operator[](size_t i) const {
  CHECK_LT(i, items_.size()) << "ModuleList index out of range";
  return items_[i];
}

}  // namespace px::nn

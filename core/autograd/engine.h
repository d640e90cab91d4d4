// The backward engine: discovers the graph iteratively, counts dependencies, runs nodes from a
// ready queue in reverse creation order and accumulates gradients into leaves.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace px {

// Backpropagates from `roots` (grad_outputs default to ones for one-element roots).
// Without retain_graph the saved tensors are freed and a second backward is an AutogradError.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_outputs = {},
              bool retain_graph = false);
inline void backward(const Tensor& root, const Tensor& grad_output = Tensor(), bool retain_graph = false) {
  backward(std::vector<Tensor>{root}, grad_output.defined() ? std::vector<Tensor>{grad_output}
                                                            : std::vector<Tensor>{},
           retain_graph);
}

}  // namespace px

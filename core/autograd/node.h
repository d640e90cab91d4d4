// Graph nodes: one per differentiable op output, holding edges to the nodes of its inputs and
// the tensors saved for backward (version-checked); AccumulateGrad ends the graph at leaves.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace px::autograd {

// A tensor kept for backward: detached (no reference cycle through grad_fn) and stamped with
// the storage version, so an in-place change before backward is an AutogradError, not wrong grads.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // Throws AutogradError if the tensor was modified in place since it was saved.
  Tensor unpack(const char* node_name) const;

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node();  // releases long chains iteratively (no recursion)
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Gradients w.r.t. each input (next_edges order) from the gradient of this node's output;
  // undefined where an input needs none.
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors after a backward without retain_graph.
  virtual void release_saved() {}

  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }

  // Per input: the node its gradient flows to (null when the input needs no grad), and the
  // input's shape, checked against the gradient apply() returns.
  std::vector<std::shared_ptr<Node>> next_edges;
  std::vector<Shape> input_shapes;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// A node whose backward is a closure over SavedTensors and plain values.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release_saved() override { fn_ = nullptr; }

 private:
  BackwardFn fn_;
};

// Sink for a leaf's gradient: accumulates into leaf.grad (of master_dtype(leaf dtype): f32 for a bf16/f16
// leaf), then runs its grad-ready hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(const Tensor& grad_output) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// The node a gradient for `t` should flow to: its grad_fn, its (cached) AccumulateGrad if it is
// a leaf that requires grad, else null.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

// True when grad mode is on and any input requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Makes `output` the result of a differentiable op over `inputs`: gives it a FunctionNode
// running `fn` and marks it requires_grad. Call only when any_requires_grad(inputs).
void attach(Tensor& output, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn);

}  // namespace px::autograd

// Graph nodes: one per differentiable op output, holding edges to the nodes of its inputs and
// the tensors saved for backward (version-checked); AccumulateGrad ends the graph at leaves.
#include "core/autograd/node.h"

#include <atomic>

#include "core/autograd/grad_mode.h"
#include "core/backend/backend.h"
#include "core/util/error.h"

namespace px::autograd {
namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
thread_local bool g_grad_enabled = true;
}  // namespace
}  // namespace px::autograd

namespace px {
bool grad_enabled() { return autograd::g_grad_enabled; }
void set_grad_enabled(bool enabled) { autograd::g_grad_enabled = enabled; }
}  // namespace px

namespace px::autograd {

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::unpack(const char* node_name) const {
  if (tensor_.defined() && tensor_.version() != version_) {
    throw AutogradError(std::string("a tensor saved by ") + node_name + " (" + tensor_.str() +
                        ") was modified by an in-place operation: saved at version " +
                        std::to_string(version_) + ", now version " + std::to_string(tensor_.version()));
  }
  return tensor_;
}

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(g_next_sequence_nr++) {}

// Dropping the head of a long chain would otherwise recurse once per node: instead the outermost
// destructor collects the edges of every node that dies and releases them in a loop.
Node::~Node() {
  thread_local std::vector<std::shared_ptr<Node>>* pending = nullptr;
  if (pending != nullptr) {
    for (auto& n : next_edges)
      if (n) pending->push_back(std::move(n));
    return;
  }
  std::vector<std::shared_ptr<Node>> local;
  for (auto& n : next_edges)
    if (n) local.push_back(std::move(n));
  pending = &local;
  while (!local.empty()) {
    std::shared_ptr<Node> n = std::move(local.back());
    local.pop_back();
    n.reset();  // if this was the last owner, its destructor appends its edges to `local`
  }
  pending = nullptr;
}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  if (!fn_) {
    throw AutogradError("trying to backward through " + name() +
                        " a second time: its saved tensors were freed; pass retain_graph=true to the first backward");
  }
  return fn_(grad_output);
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("AccumulateGrad"), leaf_(std::move(leaf)) {
  input_shapes.push_back(leaf_->shape);
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  Tensor leaf(leaf_);
  Backend& be = backend_for(leaf.device());
  // A 16-bit leaf's gradient accumulates in f32 (its master dtype), as mixed precision needs.
  const DType grad_dtype = master_dtype(leaf.dtype());
  if (!leaf_->grad) {
    // Like torch, take over a gradient nobody else holds (the engine's buffer is the only
    // reference to its impl and storage) instead of copying it.
    const bool sole_owner = grad_output.impl_ptr().use_count() == 1 && grad_output.storage().use_count() == 1;
    if (sole_owner && grad_output.is_contiguous() && grad_output.dtype() == grad_dtype &&
        grad_output.device() == leaf.device()) {
      leaf.set_grad(grad_output.detach());
    } else {
      Tensor g = Tensor::empty(leaf.shape(), grad_dtype, leaf.device());
      be.copy(grad_output, g);
      leaf.set_grad(g);
    }
  } else {
    Tensor g = leaf.grad();
    if (grad_output.dtype() == g.dtype()) {
      be.binary(BinaryOp::add, g, grad_output, g);
    } else {
      Tensor widened = Tensor::empty(g.shape(), g.dtype(), g.device());
      be.copy(grad_output, widened);
      be.binary(BinaryOp::add, g, widened, g);
    }
    g.bump_version();
  }
  for (const GradHook& hook : leaf_->grad_ready_hooks) hook(leaf.grad());
  return {};
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  std::shared_ptr<Node> acc = t.impl()->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    t.impl()->grad_accumulator = acc;
  }
  return acc;
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void attach(Tensor& output, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn) {
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  node->next_edges.reserve(inputs.size());
  node->input_shapes.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->next_edges.push_back(gradient_edge(t));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
}

}  // namespace px::autograd

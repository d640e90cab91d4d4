// The backward engine: discovers the graph iteratively, counts dependencies, runs nodes from a
// ready queue in reverse creation order and accumulates gradients into leaves.
#include "core/autograd/engine.h"

#include <cstdint>
#include <queue>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/util/error.h"

namespace px {
namespace {

using autograd::Node;

// Ready nodes run latest-created first, except that a node with no outgoing edges (a leaf's
// AccumulateGrad) runs as soon as it is ready: it feeds nothing, and its grad-ready hooks (data
// parallel's all-reduce trigger) must not wait behind the rest of the graph -- which they would
// when the AccumulateGrad was created, with an older sequence number, by a forward whose graph
// is still alive (PyTorch gives AccumulateGrad the top priority for the same reason).
struct LaterFirst {
  static uint64_t priority(const Node* n) { return n->next_edges.empty() ? UINT64_MAX : n->sequence_nr(); }
  bool operator()(const Node* a, const Node* b) const {
    const uint64_t pa = priority(a), pb = priority(b);
    return pa != pb ? pa < pb : a->sequence_nr() < b->sequence_nr();
  }
};

// grad buffer += g (out of place: the first gradient may alias a tensor the caller still holds).
void accumulate(Tensor& buffer, const Tensor& g) {
  if (!buffer.defined()) {
    buffer = g;
    return;
  }
  Tensor sum = Tensor::empty(buffer.shape(), buffer.dtype(), buffer.device());
  backend_for(sum.device()).binary(BinaryOp::add, buffer, g, sum);
  buffer = sum;
}

Tensor ones_like(const Tensor& t) {
  Tensor o = Tensor::empty(t.shape(), t.dtype(), t.device());
  backend_for(o.device()).fill(o, 1.0);
  return o;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  CHECK(grad_outputs.empty() || grad_outputs.size() == roots.size())
      << "backward: " << roots.size() << " roots but " << grad_outputs.size() << " gradients";
  NoGradGuard no_grad;

  std::unordered_map<Node*, Tensor> buffers;
  std::unordered_map<Node*, int> dependencies;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    if (!root.requires_grad())
      throw AutogradError("backward on " + root.str() + ", which does not require grad and has no grad_fn");
    Tensor g;
    if (grad_outputs.empty() || !grad_outputs[i].defined()) {
      if (root.numel() != 1)
        throw AutogradError("backward on non-scalar " + root.str() + " needs an explicit gradient");
      g = ones_like(root);
    } else {
      g = grad_outputs[i];
      CHECK(g.shape() == root.shape()) << "backward: gradient " << g.str() << " for root " << root.str();
    }
    std::shared_ptr<Node> node = autograd::gradient_edge(root);
    accumulate(buffers[node.get()], g);
    root_nodes.push_back(std::move(node));
  }

  // Count, for every node reachable from the roots, the edges that lead into it.
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (auto& n : root_nodes)
    if (!seen[n.get()]) {
      seen[n.get()] = true;
      stack.push_back(n.get());
    }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& next : n->next_edges) {
      if (!next) continue;
      ++dependencies[next.get()];
      if (!seen[next.get()]) {
        seen[next.get()] = true;
        stack.push_back(next.get());
      }
    }
  }

  std::priority_queue<Node*, std::vector<Node*>, LaterFirst> ready;
  for (auto& n : root_nodes)
    if (dependencies[n.get()] == 0) {
      dependencies[n.get()] = -1;  // queued once even if given as several roots
      ready.push(n.get());
    }

  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    Tensor grad = std::move(buffers[node]);
    buffers.erase(node);
    std::vector<Tensor> input_grads;
    if (grad.defined()) {
      input_grads = node->apply(grad);
      if (!retain_graph) node->release_saved();
    }
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      Node* next = node->next_edges[i].get();
      if (next == nullptr) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        const Tensor& g = input_grads[i];
        CHECK(g.shape() == node->input_shapes[i])
            << node->name() << " returned a gradient of shape " << shape_str(g.shape()) << " for input " << i
            << " of shape " << shape_str(node->input_shapes[i]);
        accumulate(buffers[next], g);
      }
      if (--dependencies[next] == 0) ready.push(next);
    }
  }
}

}  // namespace px

// A small f64 MLP for the data-parallel optimizer tests, its random global batches, their per-rank rows, the
// squared-error loss and a split of its parameters into two optimizer groups.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/optimizer.h"

namespace px::test {

constexpr int64_t kMlpIn = 5, kMlpHidden = 7, kMlpWide = 8;

// x -> head(gelu(fc2(norm(fc1(x))))). Numels: fc1.weight 35, fc1.bias 7, norm.* 7, fc2.weight 56, fc2.bias 8,
// head.weight 8, head.bias 1: not divisible by 2 or 4 (35, 7), divisible (56, 8), and smaller than dp (1).
class SmallMlp : public nn::Module {
 public:
  explicit SmallMlp(uint64_t seed) : Module("SmallMlp") {
    Generator gen(seed);
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(kMlpIn, kMlpHidden, gen, true, DType::f64));
    norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(kMlpHidden, 1e-5, true, DType::f64));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(kMlpHidden, kMlpWide, gen, true, DType::f64));
    head_ = register_module("head", std::make_shared<nn::Linear>(kMlpWide, 1, gen, true, DType::f64));
  }
  // x (n, kMlpIn) -> (n, 1)
  Tensor forward(const Tensor& x) const {
    return head_->forward(gelu(fc2_->forward(norm_->forward(fc1_->forward(x)))));
  }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_, head_;
  std::shared_ptr<nn::LayerNorm> norm_;
};

struct MlpBatch {
  Tensor x;       // (n, kMlpIn) f64
  Tensor target;  // (n, 1) f64
};
inline MlpBatch mlp_batch(int64_t n, uint64_t seed) {
  Generator gen(seed);
  MlpBatch b;
  b.x = randn({n, kMlpIn}, gen, DType::f64);
  b.target = randn({n, 1}, gen, DType::f64);
  return b;
}

// Rows [start, start + count) of t (n, ...).
inline Tensor rows(const Tensor& t, int64_t start, int64_t count) { return contiguous(narrow(t, 0, start, count)); }

// sum over the rows of (net(x) - target)^2 / divisor. x (n, kMlpIn), target (n, 1) -> 0-d
inline Tensor squared_error(const SmallMlp& net, const Tensor& x, const Tensor& target, double divisor) {
  const Tensor diff = net.forward(x) - target;
  return sum(diff * diff) * (1.0 / divisor);
}

// fc1 and norm in a "body" group (body_lr, weight_decay); fc2 and head in a "head" group (head_lr, no weight decay).
inline std::vector<optim::ParamGroup> body_and_head(const SmallMlp& net, double body_lr, double weight_decay,
                                                    double head_lr) {
  optim::ParamGroup body{{}, body_lr, weight_decay, "body"}, head{{}, head_lr, 0.0, "head"};
  for (const auto& [name, p] : net.named_parameters())
    (name.rfind("fc1.", 0) == 0 || name.rfind("norm.", 0) == 0 ? body : head).params.push_back(p);
  return {body, head};
}

}  // namespace px::test

// Linear: y = x W^T + b with torch.nn.Linear's default initialisation (kaiming-uniform with a = sqrt(5),
// i.e. W, b ~ U(-1/sqrt(in), 1/sqrt(in))), drawn from the Generator given to the constructor.
#pragma once

#include "core/nn/module.h"
#include "core/util/generator.h"

namespace px::nn {

class Linear : public Module {
 public:
  // Draws the weight, then the bias, from `gen`.
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true, DType dtype = DType::f32);

  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const Tensor& weight() const { return weight_; }  // (out, in)
  const Tensor& bias() const { return bias_; }  // (out) or undefined

 private:
  int64_t in_features_, out_features_;
  Tensor weight_;  // (out, in)
  Tensor bias_;  // (out) or undefined
};

}  // namespace px::nn

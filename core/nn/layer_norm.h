// LayerNorm over the last dim with an optional learned affine (weight = 1, bias = 0 at init),
// like torch.nn.LayerNorm(normalized_shape=dim).
#pragma once

#include "core/nn/module.h"

namespace px::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true, DType dtype = DType::f32);

  // x (..., dim) -> (..., dim)
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t dim() const { return dim_; }
  double eps() const { return eps_; }
  const Tensor& weight() const { return weight_; }  // (dim) or undefined
  const Tensor& bias() const { return bias_; }  // (dim) or undefined

 private:
  int64_t dim_;
  double eps_;
  Tensor weight_;  // (dim) or undefined
  Tensor bias_;  // (dim) or undefined
};

}  // namespace px::nn

// LayerNorm: parameters and the forward through px::layer_norm (statistics in f32/f64).
// Without elementwise_affine it registers nothing.
#include "core/nn/layer_norm.h"

#include "core/ops/factory.h"
#include "core/ops/layernorm.h"

namespace px::nn {

LayerNorm::LayerNorm(int64_t dim, double eps, bool elementwise_affine, DType dtype)
    : Module("LayerNorm"), dim_(dim), eps_(eps) {
  CHECK_GT(dim, 0) << "LayerNorm: dim must be positive";
  CHECK_GT(eps, 0.0) << "LayerNorm: eps must be positive";
  if (elementwise_affine) {
    weight_ = register_parameter("weight", ones({dim}, dtype));
    bias_ = register_parameter("bias", zeros({dim}, dtype));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  CHECK(x.dim() >= 1 && x.size(-1) == dim_) << "LayerNorm(" << dim_ << "): input " << x.str();
  return layer_norm(x, weight_, bias_, eps_);
}

}  // namespace px::nn

// Linear: parameter creation with torch's default bounds and the forward through px::linear.
// kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + 5)), bound = gain * sqrt(3 / in) = 1 / sqrt(in).
#include "core/nn/linear.h"

#include <cmath>

#include "core/ops/factory.h"
#include "core/ops/matmul.h"

namespace px::nn {

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias, DType dtype)
    : Module("Linear"), in_features_(in_features), out_features_(out_features) {
  CHECK(in_features > 0 && out_features > 0)
      << "Linear: features must be positive, got in " << in_features << " out " << out_features;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = register_parameter("weight", rand({out_features, in_features}, gen, -bound, bound, dtype));
  if (bias) bias_ = register_parameter("bias", rand({out_features}, gen, -bound, bound, dtype));
}

Tensor Linear::forward(const Tensor& x) const {
  CHECK(x.dim() >= 1 && x.size(-1) == in_features_)
      << "Linear(" << in_features_ << " -> " << out_features_ << "): input " << x.str();
  return linear(x, weight_, bias_);
}

}  // namespace px::nn

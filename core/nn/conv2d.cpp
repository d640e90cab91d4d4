// Conv2d: parameter creation with torch's default bounds and the forward through px::conv2d.
// kaiming_uniform_(a=sqrt(5)) over fan_in = in k k: bound = sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in).
#include "core/nn/conv2d.h"

#include <cmath>

#include "core/ops/factory.h"

namespace px::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator& gen, Conv2dOptions options,
               bool bias, DType dtype)
    : Module("Conv2d"), in_channels_(in_channels), out_channels_(out_channels), kernel_(kernel), options_(options) {
  CHECK(in_channels > 0 && out_channels > 0 && kernel > 0)
      << "Conv2d: channels and kernel must be positive, got in " << in_channels << " out " << out_channels
      << " kernel " << kernel;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * kernel * kernel));
  weight_ = register_parameter("weight", rand({out_channels, in_channels, kernel, kernel}, gen, -bound, bound, dtype));
  if (bias) bias_ = register_parameter("bias", rand({out_channels}, gen, -bound, bound, dtype));
}

Tensor Conv2d::forward(const Tensor& x) const {
  CHECK(x.dim() == 4 && x.size(1) == in_channels_)
      << "Conv2d(" << in_channels_ << " -> " << out_channels_ << "): input " << x.str() << " is not (N, "
      << in_channels_ << ", H, W)";
  return conv2d(x, weight_, bias_, options_);
}

}  // namespace px::nn

// BatchNorm2d: parameters and buffers as torch registers them, the forward through px::batch_norm
// (which updates the running statistics in training) and the batch count.
#include "core/nn/batch_norm.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/batchnorm.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"

namespace px::nn {

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum, DType dtype)
    : Module("BatchNorm2d"), channels_(channels), eps_(eps), momentum_(momentum) {
  CHECK_GT(channels, 0) << "BatchNorm2d: channels must be positive";
  CHECK_GT(eps, 0.0) << "BatchNorm2d: eps must be positive";
  weight_ = register_parameter("weight", ones({channels}, dtype));
  bias_ = register_parameter("bias", zeros({channels}, dtype));
  running_mean_ = register_buffer("running_mean", zeros({channels}, dtype));
  running_var_ = register_buffer("running_var", ones({channels}, dtype));
  num_batches_tracked_ = register_buffer("num_batches_tracked", zeros({}, DType::i64));
}

Tensor BatchNorm2d::forward(const Tensor& x) const {
  CHECK(x.dim() == 4 && x.size(1) == channels_) << "BatchNorm2d(" << channels_ << "): input " << x.str()
                                                << " is not (N, " << channels_ << ", H, W)";
  if (is_training()) {
    NoGradGuard no_grad;
    add_(num_batches_tracked_, scalar_tensor(1.0, DType::i64, num_batches_tracked_.device()));
  }
  return batch_norm(x, weight_, bias_, running_mean_, running_var_, is_training(), momentum_, eps_);
}

}  // namespace px::nn

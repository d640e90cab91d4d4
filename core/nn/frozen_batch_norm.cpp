// FrozenBatchNorm2d: four (C) buffers and the forward through px::frozen_batch_norm; train() keeps it in eval
// mode, so a model's train() never turns it into a batch-statistics layer.
#include "core/nn/frozen_batch_norm.h"

#include "core/ops/batchnorm.h"
#include "core/ops/factory.h"

namespace px::nn {

FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t channels, double eps, DType dtype)
    : Module("FrozenBatchNorm2d"), channels_(channels), eps_(eps) {
  CHECK_GT(channels, 0) << "FrozenBatchNorm2d: channels must be positive";
  weight_ = register_buffer("weight", ones({channels}, dtype));
  bias_ = register_buffer("bias", zeros({channels}, dtype));
  running_mean_ = register_buffer("running_mean", zeros({channels}, dtype));
  running_var_ = register_buffer("running_var", ones({channels}, dtype));
  Module::train(false);
}

void FrozenBatchNorm2d::train(bool) { Module::train(false); }

Tensor FrozenBatchNorm2d::forward(const Tensor& x) const {
  CHECK(x.dim() == 4 && x.size(1) == channels_) << "FrozenBatchNorm2d(" << channels_ << "): input " << x.str()
                                                << " is not (N, " << channels_ << ", H, W)";
  return frozen_batch_norm(x, weight_, bias_, running_mean_, running_var_, eps_);
}

}  // namespace px::nn

// FrozenBatchNorm2d (DETR's): a batch norm whose weight, bias, running_mean and running_var are all buffers
// (state-dict names as torch's BatchNorm2d, without num_batches_tracked) and whose train() changes nothing.
#pragma once

#include "core/nn/module.h"

namespace px::nn {

class FrozenBatchNorm2d : public Module {
 public:
  // weight 1, bias 0, running_mean 0, running_var 1; eps 1e-5 as DETR's.
  explicit FrozenBatchNorm2d(int64_t channels, double eps = 1e-5, DType dtype = DType::f32);

  // x (N, C, H, W) -> x * scale + shift per channel, scale = weight / sqrt(running_var + eps),
  // shift = bias - running_mean * scale.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  // Stays in eval mode whatever is asked.
  void train(bool on = true) override;

  int64_t channels() const { return channels_; }

 private:
  int64_t channels_;
  double eps_;
  Tensor weight_, bias_, running_mean_, running_var_;  // (C) buffers
};

}  // namespace px::nn

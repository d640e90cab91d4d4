// BatchNorm2d over the channels of (N, C, H, W) as torch.nn.BatchNorm2d: weight 1, bias 0 (parameters), running_mean
// 0, running_var 1, num_batches_tracked (i64 buffers); batch statistics in training, running ones in eval.
#pragma once

#include "core/nn/module.h"

namespace px::nn {

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1, DType dtype = DType::f32);

  // x (N, C, H, W) -> (N, C, H, W); in training also updates the running statistics and counts the batch.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t channels() const { return channels_; }
  const Tensor& weight() const { return weight_; }  // (C)
  const Tensor& bias() const { return bias_; }  // (C)
  const Tensor& running_mean() const { return running_mean_; }  // (C)
  const Tensor& running_var() const { return running_var_; }  // (C)
  const Tensor& num_batches_tracked() const { return num_batches_tracked_; }  // () i64

 private:
  int64_t channels_;
  double eps_, momentum_;
  Tensor weight_, bias_;  // (C)
  Tensor running_mean_, running_var_;  // (C)
  Tensor num_batches_tracked_;  // () i64
};

}  // namespace px::nn

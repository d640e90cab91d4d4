// Conv2d: a 2-d convolution layer (groups = 1) with torch.nn.Conv2d's default initialisation
// (kaiming-uniform with a = sqrt(5): weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in k k).
#pragma once

#include "core/nn/module.h"
#include "core/ops/conv.h"
#include "core/util/generator.h"

namespace px::nn {

class Conv2d : public Module {
 public:
  // A kernel x kernel window; draws the weight, then the bias, from `gen`.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator& gen, Conv2dOptions options = {},
         bool bias = true, DType dtype = DType::f32);

  // x (N, in, H, W) -> (N, out, OH, OW)
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  int64_t kernel() const { return kernel_; }
  const Conv2dOptions& options() const { return options_; }
  const Tensor& weight() const { return weight_; }  // (out, in, kernel, kernel)
  const Tensor& bias() const { return bias_; }  // (out) or undefined

 private:
  int64_t in_channels_, out_channels_, kernel_;
  Conv2dOptions options_;
  Tensor weight_;  // (out, in, kernel, kernel)
  Tensor bias_;  // (out) or undefined
};

}  // namespace px::nn

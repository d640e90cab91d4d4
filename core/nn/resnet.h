// ResNet backbone as torchvision builds it (v1.5: a Bottleneck strides in its 3x3 conv), without the pooling and
// fc head: the stem (conv1 7x7/2, bn1, relu, maxpool 3x3/2) and layer1..layer4; state-dict names are torchvision's.
#pragma once

#include <string>
#include <vector>

#include "core/nn/conv2d.h"
#include "core/nn/module.h"
#include "core/nn/module_list.h"
#include "core/util/generator.h"

namespace px::nn {

struct ResNetOptions {
  std::string depth = "resnet50";  // "resnet18", "resnet34" (BasicBlock) or "resnet50" (Bottleneck)
  double width_multiplier = 1.0;   // base width round(64 m), at least 8 (small CPU models)
  int stages = 4;                  // layer1..layer<stages> exist (1..4)
  bool frozen_bn = true;           // FrozenBatchNorm2d (DETR) or BatchNorm2d
  DType dtype = DType::f32;
};

class ResNet : public Module {
 public:
  // Conv weights ~ N(0, 2 / fan_out) (kaiming_normal_, fan_out, relu) from `gen`; batch norms weight 1, bias 0.
  ResNet(const ResNetOptions& options, Generator& gen);

  // x (N, 3, H, W) -> the last stage's features (N, out_channels(), ~H / stride(), ~W / stride()).
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  // Every stage's output, layer1 first: (N, C_k, ~H / 2^(k + 1), ~W / 2^(k + 1)) for layer k.
  std::vector<Tensor> stage_outputs(const Tensor& x) const;

  // Channels of the last stage's features: base 2^(stages - 1), times 4 for Bottleneck.
  int64_t out_channels() const { return out_channels_; }
  // Total downsampling of forward(): 4 (stem) 2^(stages - 1).
  int64_t stride() const { return int64_t{4} << (options_.stages - 1); }
  const ResNetOptions& options() const { return options_; }

  // requires_grad false on the stem (conv1, bn1) and layer1..layer<through> (through = 0: the stem only). DETR trains
  // "all layers except conv1, bn1 and layer1" when lr_backbone > 0: freeze_stages(1); no backbone training:
  // freeze_stages(stages).
  void freeze_stages(int through);

  // Loads a torchvision ResNet state dict (strictly, every name of this model required) after dropping what this
  // backbone lacks: the fc head, layers beyond `stages`, and num_batches_tracked with frozen batch norms (as DETR's
  // FrozenBatchNorm2d does).
  void load_torchvision_state_dict(const StateDict& state);

 private:
  ResNetOptions options_;
  int64_t out_channels_ = 0;
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<Module> bn1_;  // BatchNorm2d or FrozenBatchNorm2d
  std::vector<std::shared_ptr<ModuleList>> layers_;  // layer1..layer<stages>, their blocks
};

}  // namespace px::nn

// ResNet: the BasicBlock and Bottleneck residual blocks, torchvision's stage layout per depth, kaiming-normal
// conv initialisation, and freezing of the early stages (DETR's backbone training rule).
#include "core/nn/resnet.h"

#include <cmath>
#include <map>

#include "core/autograd/grad_mode.h"
#include "core/nn/batch_norm.h"
#include "core/nn/frozen_batch_norm.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/pool.h"

namespace px::nn {
namespace {

struct Layout {
  bool bottleneck;
  std::vector<int64_t> blocks;  // per stage
};

Layout layout_of(const std::string& depth) {
  static const std::map<std::string, Layout> layouts = {{"resnet18", {false, {2, 2, 2, 2}}},
                                                        {"resnet34", {false, {3, 4, 6, 3}}},
                                                        {"resnet50", {true, {3, 4, 6, 3}}},
                                                        {"resnet101", {true, {3, 4, 23, 3}}}};
  const auto it = layouts.find(depth);
  CHECK(it != layouts.end()) << "ResNet: unknown depth '" << depth << "' (resnet18, resnet34, resnet50, resnet101)";
  return it->second;
}

// A bias-free k x k conv with torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu"):
// weight ~ N(0, 2 / (out k k)), drawn from `gen` after Conv2d's own default draw.
std::shared_ptr<Conv2d> make_conv(int64_t in, int64_t out, int64_t k, int64_t stride, Generator& gen, DType dtype) {
  auto conv = std::make_shared<Conv2d>(in, out, k, gen, Conv2dOptions{.stride = stride, .padding = k / 2},
                                       /*bias=*/false, dtype);
  NoGradGuard no_grad;
  const double std = std::sqrt(2.0 / static_cast<double>(out * k * k));
  copy_(conv->weight(), mul(randn(conv->weight().shape(), gen), std));
  return conv;
}

std::shared_ptr<Module> make_norm(int64_t channels, const ResNetOptions& o) {
  if (o.frozen_bn) return std::make_shared<FrozenBatchNorm2d>(channels, 1e-5, o.dtype);
  return std::make_shared<BatchNorm2d>(channels, 1e-5, 0.1, o.dtype);
}

// The forward of a module make_norm made.
Tensor norm(const Module& m, const Tensor& x) {
  if (const auto* frozen = dynamic_cast<const FrozenBatchNorm2d*>(&m)) return frozen->forward(x);
  const auto* bn = dynamic_cast<const BatchNorm2d*>(&m);
  CHECK(bn != nullptr) << "ResNet: " << m.type_name() << " is not a batch norm";
  return bn->forward(x);
}

// A residual block: relu(body(x) + shortcut(x)), the shortcut a 1x1 conv + norm ("downsample.0", "downsample.1")
// when the block changes the shape, else x.
class Block : public Module {
 public:
  using Module::Module;
  // x (N, in, H, W) -> (N, out, H / stride, W / stride)
  Tensor forward(const Tensor& x) const {
    Tensor shortcut = x;
    if (downsample_) shortcut = norm(*downsample_->at<Module>(1), downsample_->at<Conv2d>(0)->forward(x));
    return relu(add(body(x), shortcut));
  }

 protected:
  virtual Tensor body(const Tensor& x) const = 0;
  void add_downsample(int64_t in, int64_t out, int64_t stride, const ResNetOptions& o, Generator& gen) {
    if (stride == 1 && in == out) return;
    downsample_ = register_module("downsample", std::make_shared<ModuleList>());
    downsample_->push_back(make_conv(in, out, 1, stride, gen, o.dtype));
    downsample_->push_back(make_norm(out, o));
  }

 private:
  std::shared_ptr<ModuleList> downsample_;  // conv, norm; or null
};

// conv3x3(stride) - norm - relu - conv3x3 - norm; expansion 1.
class BasicBlock final : public Block {
 public:
  BasicBlock(int64_t in, int64_t planes, int64_t stride, const ResNetOptions& o, Generator& gen) : Block("BasicBlock") {
    conv1_ = register_module("conv1", make_conv(in, planes, 3, stride, gen, o.dtype));
    bn1_ = register_module("bn1", make_norm(planes, o));
    conv2_ = register_module("conv2", make_conv(planes, planes, 3, 1, gen, o.dtype));
    bn2_ = register_module("bn2", make_norm(planes, o));
    add_downsample(in, planes, stride, o, gen);
  }

 private:
  Tensor body(const Tensor& x) const override {
    return norm(*bn2_, conv2_->forward(relu(norm(*bn1_, conv1_->forward(x)))));
  }
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<Module> bn1_, bn2_;
};

// conv1x1 - norm - relu - conv3x3(stride) - norm - relu - conv1x1 (4 planes) - norm; expansion 4 (v1.5).
class Bottleneck final : public Block {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in, int64_t planes, int64_t stride, const ResNetOptions& o, Generator& gen) : Block("Bottleneck") {
    conv1_ = register_module("conv1", make_conv(in, planes, 1, 1, gen, o.dtype));
    bn1_ = register_module("bn1", make_norm(planes, o));
    conv2_ = register_module("conv2", make_conv(planes, planes, 3, stride, gen, o.dtype));
    bn2_ = register_module("bn2", make_norm(planes, o));
    conv3_ = register_module("conv3", make_conv(planes, planes * kExpansion, 1, 1, gen, o.dtype));
    bn3_ = register_module("bn3", make_norm(planes * kExpansion, o));
    add_downsample(in, planes * kExpansion, stride, o, gen);
  }

 private:
  Tensor body(const Tensor& x) const override {
    const Tensor h = relu(norm(*bn2_, conv2_->forward(relu(norm(*bn1_, conv1_->forward(x))))));
    return norm(*bn3_, conv3_->forward(h));
  }
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<Module> bn1_, bn2_, bn3_;
};

}  // namespace

ResNet::ResNet(const ResNetOptions& options, Generator& gen) : Module("ResNet"), options_(options) {
  const Layout layout = layout_of(options.depth);
  CHECK(options.stages >= 1 && options.stages <= 4) << "ResNet: stages must be 1..4, got " << options.stages;
  CHECK_GT(options.width_multiplier, 0.0) << "ResNet: width_multiplier must be positive";
  const int64_t base = std::max<int64_t>(8, std::llround(64.0 * options.width_multiplier));
  conv1_ = register_module("conv1", make_conv(3, base, 7, 2, gen, options.dtype));
  bn1_ = register_module("bn1", make_norm(base, options));
  int64_t in = base;
  for (int s = 0; s < options.stages; ++s) {
    auto layer = register_module("layer" + std::to_string(s + 1), std::make_shared<ModuleList>());
    const int64_t planes = base << s;
    for (int64_t b = 0; b < layout.blocks[s]; ++b) {
      const int64_t stride = b == 0 && s > 0 ? 2 : 1;
      if (layout.bottleneck) {
        layer->push_back(std::make_shared<Bottleneck>(in, planes, stride, options, gen));
        in = planes * Bottleneck::kExpansion;
      } else {
        layer->push_back(std::make_shared<BasicBlock>(in, planes, stride, options, gen));
        in = planes;
      }
    }
    layers_.push_back(layer);
  }
  out_channels_ = in;
}

std::vector<Tensor> ResNet::stage_outputs(const Tensor& x) const {
  CHECK(x.dim() == 4 && x.size(1) == 3) << "ResNet: input " << x.str() << " is not (N, 3, H, W)";
  Tensor h = max_pool2d(relu(norm(*bn1_, conv1_->forward(x))), 3, 2, 1);
  std::vector<Tensor> outs;
  for (const auto& layer : layers_) {
    for (size_t b = 0; b < layer->size(); ++b) h = layer->at<Block>(b)->forward(h);
    outs.push_back(h);
  }
  return outs;
}

Tensor ResNet::forward(const Tensor& x) const { return stage_outputs(x).back(); }

void ResNet::freeze_stages(int through) {
  CHECK(through >= 0 && through <= options_.stages)
      << "ResNet::freeze_stages(" << through << "): 0 (the stem) to " << options_.stages;
  std::vector<std::string> prefixes = {"conv1.", "bn1."};
  for (int s = 1; s <= through; ++s) prefixes.push_back("layer" + std::to_string(s) + ".");
  for (auto& [name, p] : named_parameters())
    for (const std::string& prefix : prefixes)
      if (name.rfind(prefix, 0) == 0) p.set_requires_grad(false);
}

void ResNet::load_torchvision_state_dict(const StateDict& state) {
  StateDict kept;
  for (const auto& [key, t] : state) {
    const bool head = key.rfind("fc.", 0) == 0;
    const bool later_layer = key.rfind("layer", 0) == 0 && key.size() > 5 && key[5] - '0' > options_.stages;
    const bool counter = options_.frozen_bn && key.ends_with("num_batches_tracked");
    if (!head && !later_layer && !counter) kept.emplace(key, t);
  }
  load_state_dict(kept);
}

}  // namespace px::nn

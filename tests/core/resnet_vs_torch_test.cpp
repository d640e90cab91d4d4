// core/nn/resnet vs a torchvision-compatible torch ResNet (oracle/gen_resnet.py) on the same weights in f64: features,
// every gradient and running statistics; Conv2d / BatchNorm2d / FrozenBatchNorm2d, ResNet's init, names, freezing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "core/nn/batch_norm.h"
#include "core/nn/conv2d.h"
#include "core/nn/frozen_batch_norm.h"
#include "core/nn/resnet.h"
#include "core/ops/ops.h"
#include "core/util/error.h"
#include "tests/common/compare.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

const PxtFile& oracle() {
  static const PxtFile file("resnet.pxt");
  return file;
}

// Entries "<case>.<part>.<key>" keyed by <key>.
std::map<std::string, Tensor> entries(const std::string& c, const std::string& part) {
  std::map<std::string, Tensor> out;
  const std::string prefix = c + "." + part + ".";
  for (const auto& [key, t] : oracle().all())
    if (key.rfind(prefix, 0) == 0) out.emplace(key.substr(prefix.size()), t);
  return out;
}

// |a - e| <= tol (|e| + max |e|): f64 through a deep network, summed in another order than torch.
::testing::AssertionResult close(const Tensor& a, const Tensor& e, const std::string& what, double tol = 1e-9) {
  double scale = 0;
  for (double v : to_vector(e)) scale = std::max(scale, std::abs(v));
  return all_close(a, e, tol, tol * scale, what);
}

nn::ResNetOptions options_of(const std::string& c) {
  const std::vector<double> cfg = to_vector(oracle().get(c + ".cfg"));
  const char* depths[] = {"resnet18", "resnet34", "resnet50"};
  nn::ResNetOptions o;
  o.depth = depths[static_cast<int>(cfg[0])];
  o.width_multiplier = cfg[1] / 1000.0;
  o.stages = static_cast<int>(cfg[2]);
  o.frozen_bn = cfg[3] != 0;
  o.dtype = DType::f64;
  return o;
}

void check_case(const std::string& c) {
  SCOPED_TRACE(c);
  const PxtFile& f = oracle();
  Generator gen(1);
  nn::ResNet model(options_of(c), gen);
  model.train(to_vector(f.get(c + ".cfg"))[4] != 0);
  model.load_state_dict(entries(c, "sd"));  // strict: every torchvision name, no other
  const Tensor x = clone(f.get(c + ".x")).detach().set_requires_grad();
  const Tensor y = model(x);
  EXPECT_EQ(y.size(1), model.out_channels());
  EXPECT_EQ(y.size(2), (x.size(2) + model.stride() - 1) / model.stride());
  EXPECT_TRUE(close(y, f.get(c + ".y"), "features"));
  backward(y, f.get(c + ".gy"));
  EXPECT_TRUE(close(x.grad(), f.get(c + ".gx"), "input gradient"));
  const std::map<std::string, Tensor> grads = entries(c, "grad");
  EXPECT_EQ(model.named_parameters().size(), grads.size());
  for (const auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(grads.count(name)) << name << " is not a torch parameter";
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_TRUE(close(p.grad(), grads.at(name), "gradient of " + name));
  }
  const std::map<std::string, Tensor> after = entries(c, "after");
  EXPECT_EQ(model.named_buffers().size(), after.size());
  for (const auto& [name, b] : model.named_buffers()) {
    ASSERT_TRUE(after.count(name)) << name << " is not a torch buffer";
    EXPECT_TRUE(close(b, after.at(name), "buffer " + name + " after the forward"));
  }
}

TEST(ResNetVsTorch, BasicBlockFrozenBatchNorm) { check_case("basic_frozen"); }
TEST(ResNetVsTorch, BottleneckFrozenBatchNorm) { check_case("bottleneck_frozen"); }
TEST(ResNetVsTorch, BasicBlockBatchNormTraining) { check_case("basic_bn_train"); }
TEST(ResNetVsTorch, BottleneckBatchNormTraining) { check_case("bottleneck_bn_train"); }
TEST(ResNetVsTorch, ResNet34BatchNormEvalFourStages) { check_case("resnet34_bn_eval"); }

// A torchvision state dict of trainable batch norms (num_batches_tracked, an fc head) loads into a frozen-BN backbone
// of fewer stages, whose features equal torch's eval-mode ones at the stages it has.
TEST(ResNetVsTorch, TorchvisionWeightsLoadIntoAFrozenBackbone) {
  nn::ResNetOptions o = options_of("resnet34_bn_eval");
  o.frozen_bn = true;
  Generator gen(1);
  nn::ResNet full(o, gen);
  nn::StateDict sd = entries("resnet34_bn_eval", "sd");
  sd.emplace("fc.weight", zeros({1000, full.out_channels()}, DType::f64));
  sd.emplace("fc.bias", zeros({1000}, DType::f64));
  EXPECT_THROW(full.load_state_dict(sd), CheckpointError);  // unexpected num_batches_tracked and fc
  full.load_torchvision_state_dict(sd);
  EXPECT_TRUE(close(full(oracle().get("resnet34_bn_eval.x")), oracle().get("resnet34_bn_eval.y"), "features", 1e-8));
  o.stages = 2;
  nn::ResNet two(o, gen);
  two.load_torchvision_state_dict(sd);
  EXPECT_TRUE(close(two(oracle().get("resnet34_bn_eval.x")), full.stage_outputs(oracle().get("resnet34_bn_eval.x"))[1],
                    "layer2 features", 0));
}

TEST(ResNet, TorchvisionNamesShapesAndStride) {
  Generator gen(2);
  nn::ResNet r50({.depth = "resnet50", .width_multiplier = 1.0, .stages = 4, .frozen_bn = false}, gen);
  const nn::StateDict sd = r50.state_dict();
  for (const char* key : {"conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv3.weight",
                          "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight", "layer3.5.bn2.bias",
                          "layer4.2.conv3.weight", "layer4.0.downsample.1.running_var"})
    EXPECT_TRUE(sd.count(key)) << key;
  EXPECT_FALSE(sd.count("layer1.1.downsample.0.weight"));
  EXPECT_EQ(sd.at("layer4.0.downsample.0.weight").shape(), (Shape{2048, 1024, 1, 1}));
  EXPECT_EQ(sd.at("layer2.0.conv2.weight").shape(), (Shape{128, 128, 3, 3}));  // v1.5: the 3x3 strides
  EXPECT_EQ(r50.num_parameters(), 23508032);  // torchvision resnet50 without fc (25557032 - 2049000)
  EXPECT_EQ(r50.out_channels(), 2048);
  EXPECT_EQ(r50.stride(), 32);
  nn::ResNet r18({.depth = "resnet18", .width_multiplier = 0.25, .stages = 2}, gen);
  EXPECT_EQ(r18.out_channels(), 32);
  EXPECT_EQ(r18.stride(), 8);
  EXPECT_EQ(r18.state_dict().at("layer2.0.downsample.0.weight").shape(), (Shape{32, 16, 1, 1}));
  // frozen batch norms: weight, bias and statistics are buffers, named as torch's
  EXPECT_TRUE(r18.state_dict().count("bn1.weight") && r18.state_dict().count("bn1.running_var"));
  EXPECT_FALSE(r18.state_dict().count("bn1.num_batches_tracked"));
  for (const auto& [name, p] : r18.named_parameters()) EXPECT_EQ(p.dim(), 4) << name << ": only conv weights train";
  nn::ResNet r34({.depth = "resnet34", .width_multiplier = 1.0 / 64, .stages = 1}, gen);  // width at least 8
  EXPECT_EQ(r34.out_channels(), 8);
}

TEST(ResNet, KaimingNormalFanOutInit) {
  Generator gen(3);
  nn::ResNet r({.depth = "resnet18", .width_multiplier = 1.0, .stages = 2, .frozen_bn = false}, gen);
  const nn::StateDict sd = r.state_dict();
  const std::vector<double> w = to_vector(sd.at("layer2.0.conv1.weight"));  // (128, 64, 3, 3): fan_out 1152
  double sq = 0;
  for (double v : w) sq += v * v;
  EXPECT_NEAR(std::sqrt(sq / w.size()), std::sqrt(2.0 / 1152), 0.02 * std::sqrt(2.0 / 1152));
  EXPECT_ALL_CLOSE(sd.at("layer1.1.bn2.weight"), ones({64}), 0, 0);
  EXPECT_ALL_CLOSE(sd.at("layer1.1.bn2.bias"), zeros({64}), 0, 0);
  Generator again(3);
  nn::ResNet twin({.depth = "resnet18", .width_multiplier = 1.0, .stages = 2, .frozen_bn = false}, again);
  EXPECT_ALL_CLOSE(twin.state_dict().at("conv1.weight"), sd.at("conv1.weight"), 0, 0);
}

TEST(ResNet, FreezeStagesStopsGradientsOfTheStemAndEarlyLayers) {
  Generator gen(4);
  nn::ResNet r({.depth = "resnet50", .width_multiplier = 0.125, .stages = 3, .frozen_bn = false}, gen);
  r.freeze_stages(1);  // DETR with lr_backbone > 0
  for (const auto& [name, p] : r.named_parameters()) {
    const bool frozen = name.rfind("conv1.", 0) == 0 || name.rfind("bn1.", 0) == 0 || name.rfind("layer1.", 0) == 0;
    EXPECT_EQ(p.requires_grad(), !frozen) << name;
  }
  backward(sum(r(randn({2, 3, 32, 32}, gen))));
  for (const auto& [name, p] : r.named_parameters()) EXPECT_EQ(p.grad().defined(), p.requires_grad()) << name;
  r.freeze_stages(3);
  for (const auto& [name, p] : r.named_parameters()) EXPECT_FALSE(p.requires_grad()) << name;
}

TEST(ResNet, FrozenBatchNormIgnoresTrainAndStageOutputs) {
  Generator gen(5);
  nn::ResNet r({.depth = "resnet18", .width_multiplier = 0.125, .stages = 3}, gen);
  const Tensor x = randn({2, 3, 33, 47}, gen);
  r.eval();
  const Tensor y_eval = r(x);
  r.train();
  const nn::StateDict before = r.state_dict();
  const std::vector<Tensor> stages = r.stage_outputs(x);
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_ALL_CLOSE(stages.back(), y_eval, 0, 0);
  EXPECT_EQ(stages[0].shape(), (Shape{2, 8, 9, 12}));
  EXPECT_EQ(stages[2].shape(), (Shape{2, 32, 3, 3}));
  for (const auto& [name, m] : r.named_modules())
    if (m->type_name() == "FrozenBatchNorm2d") EXPECT_FALSE(m->is_training()) << name;
  for (const auto& [key, t] : r.state_dict()) EXPECT_ALL_CLOSE(t, before.at(key), 0, 0) << key;
}

TEST(NnConv2d, TorchDefaultInitBoundsAndForward) {
  Generator gen(6);
  nn::Conv2d conv(16, 32, 3, gen, {.stride = 2, .padding = 1});
  const double bound = 1.0 / std::sqrt(16.0 * 9.0);
  for (const Tensor& t : {conv.weight(), conv.bias()}) {
    const std::vector<double> v = to_vector(t);
    EXPECT_LE(*std::max_element(v.begin(), v.end()), bound);
    EXPECT_GE(*std::min_element(v.begin(), v.end()), -bound);
  }
  EXPECT_GT(to_vector(max(conv.weight()))[0], 0.95 * bound);
  EXPECT_EQ(conv(randn({2, 16, 9, 8}, gen)).shape(), (Shape{2, 32, 5, 4}));
  EXPECT_EQ(conv.named_parameters().size(), 2u);
  nn::Conv2d nobias(4, 8, 1, gen, {}, /*bias=*/false);
  EXPECT_FALSE(nobias.bias().defined());
}

TEST(NnBatchNorm2d, CountsBatchesAndUpdatesStatisticsOnlyInTraining) {
  Generator gen(7);
  nn::BatchNorm2d bn(3);
  const Tensor x = add(mul(randn({4, 3, 5, 5}, gen), 2.0), 1.0);
  bn(x);
  bn(x);
  EXPECT_EQ(to_vector(bn.num_batches_tracked())[0], 2.0);
  const std::vector<double> rm = to_vector(bn.running_mean());
  EXPECT_NEAR(rm[0], (1 - 0.81) * to_vector(mean(narrow(x, 1, 0, 1)))[0], 1e-5);  // 0.19 of the batch mean
  bn.eval();
  const Tensor y = bn(x);
  EXPECT_EQ(to_vector(bn.num_batches_tracked())[0], 2.0);
  EXPECT_ALL_CLOSE(bn.running_mean(), from_vector(rm, {3}), 0, 0);
  EXPECT_ALL_CLOSE(y, frozen_batch_norm(x, bn.weight().detach(), bn.bias().detach(), bn.running_mean(),
                                        bn.running_var()),
                   1e-6, 1e-6);
  nn::FrozenBatchNorm2d frozen(3);
  EXPECT_TRUE(frozen.named_parameters().empty());
  EXPECT_EQ(frozen.state_dict().size(), 4u);
  frozen.train();
  EXPECT_FALSE(frozen.is_training());
}

}  // namespace
}  // namespace px::test

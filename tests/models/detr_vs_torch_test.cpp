// Detr and SetCriterion against the PyTorch twin of the reference (tests/oracle/gen_detr.py, f64, same weights):
// feature mask and positions, every decoder layer's logits and boxes, matchings, loss terms and every gradient.
#include <gtest/gtest.h>

#include <string>

#include "core/ops/ops.h"
#include "models/detr/criterion.h"
#include "models/detr/detr.h"
#include "tests/common/gradcheck.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

constexpr int64_t kImages = 3, kLayers = 2;

detr::DetrOptions options(bool pre_norm, nn::Activation activation) {
  detr::DetrOptions o;
  o.backbone.depth = "resnet18";
  o.backbone.width_multiplier = 0.25;
  o.backbone.stages = 2;
  o.backbone.frozen_bn = true;
  o.freeze_stem = false;  // every parameter trains, so every gradient is compared
  o.num_classes = 5;
  o.d_model = 16;
  o.num_heads = 2;
  o.encoder_layers = 2;
  o.decoder_layers = kLayers;
  o.d_ff = 32;
  o.dropout = 0.0;
  o.activation = activation;
  o.pre_norm = pre_norm;
  o.num_queries = 6;
  o.dtype = DType::f64;
  return o;
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what << ": " << got.str() << " vs " << want.str();
  const std::vector<double> g = host_values(got), w = host_values(want);
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], w[i], tol * (1 + std::abs(w[i]))) << what << " element " << i;
}

std::vector<int64_t> int_values(const Tensor& t) {
  std::vector<int64_t> out;
  for (double v : to_vector(t)) out.push_back(static_cast<int64_t>(v));
  return out;
}

void check_case(const std::string& name, bool pre_norm, nn::Activation activation) {
  const PxtFile file("detr_" + name + ".pxt");
  Generator init(1), dropout(2);
  detr::Detr model(options(pre_norm, activation), init, dropout);
  nn::StateDict state;
  for (const auto& [key, t] : file.all())
    if (key.rfind("sd.", 0) == 0) state[key.substr(3)] = t;
  model.load_state_dict(state);
  model.train();

  const detr::FeaturePositions positions = model.feature_positions(file.get("mask"), cpu());
  EXPECT_EQ(int_values(positions.mask), int_values(file.get("feature_mask"))) << name;
  expect_close(positions.pos, file.get("pos"), 1e-12, name + " positions");
  const std::vector<detr::DetrPrediction> predictions = model.forward(file.get("images"), positions);
  ASSERT_EQ(static_cast<int64_t>(predictions.size()), kLayers);

  std::vector<data::DetectionTarget> targets(kImages);
  for (int64_t b = 0; b < kImages; ++b) {
    targets[b].labels = file.get("target" + std::to_string(b) + ".labels");
    targets[b].boxes = file.get("target" + std::to_string(b) + ".boxes");
  }
  detr::CriterionOptions criterion_options;
  criterion_options.num_classes = 5;
  const detr::SetCriterion criterion(criterion_options);
  const double num_boxes = static_cast<double>(int_values(file.get("num_boxes"))[0]);
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string layer = "layer" + std::to_string(l);
    expect_close(predictions[l].logits, file.get(layer + ".logits"), 1e-10, name + " " + layer + " logits");
    expect_close(predictions[l].boxes, file.get(layer + ".boxes"), 1e-10, name + " " + layer + " boxes");
    const detr::LayerLoss loss = criterion.layer_loss(predictions[l], targets);
    for (int64_t b = 0; b < kImages; ++b) {
      const std::string match = layer + ".match" + std::to_string(b);
      EXPECT_EQ(loss.matches[b].pred, int_values(file.get(match + ".pred"))) << name << " " << match;
      EXPECT_EQ(loss.matches[b].target, int_values(file.get(match + ".target"))) << name << " " << match;
    }
    const std::vector<double> want = host_values(file.get(layer + ".losses"));  // ce, l1, giou
    EXPECT_NEAR(loss.ce_sum.item() / loss.class_weight_sum, want[0], 1e-10) << name << " " << layer << " ce";
    double weights = 0;
    for (const auto& t : targets) weights += detr::class_weight_sum(6, t.labels.size(0), 0.1);
    EXPECT_NEAR(loss.class_weight_sum, weights, 1e-12) << name << " " << layer;
    EXPECT_NEAR(loss.l1_sum.item() / num_boxes, want[1], 1e-10) << name << " " << layer << " l1";
    EXPECT_NEAR(loss.giou_sum.item() / num_boxes, want[2], 1e-10) << name << " " << layer << " giou";
  }

  // The trainer's form: the loss sum with the cross-entropy sum scaled by box count / class weights, divided by the box
  // count.
  const double ce_scale = num_boxes / criterion.layer_loss(predictions[0], targets).class_weight_sum;
  const detr::CriterionResult result = criterion(predictions, targets, ce_scale);
  const Tensor total = result.loss_sum * (1.0 / num_boxes);
  EXPECT_NEAR(total.item(), host_values(file.get("total"))[0], 1e-10) << name;
  backward(total);
  int compared = 0;
  for (const auto& [key, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << ": no gradient for " << key;
    expect_close(p.grad(), file.get("grad." + key), 1e-8, name + " grad " + key);
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(model.parameters().size()));
}

TEST(DetrVsTorch, PostNormReluMatchesTheReference) { check_case("post", false, nn::Activation::relu); }
TEST(DetrVsTorch, PreNormGeluMatchesTheReference) { check_case("pre_gelu", true, nn::Activation::gelu); }

// The reference's freeze: with a trainable backbone everything but conv1, bn1 and layer1 trains; without, nothing.
TEST(DetrVsTorch, BackboneFreezeFollowsTheReference) {
  for (const bool train : {true, false}) {
    detr::DetrOptions o = options(false, nn::Activation::relu);
    o.freeze_stem = true;
    o.train_backbone = train;
    Generator init(1), dropout(2);
    detr::Detr model(o, init, dropout);
    for (const auto& [key, p] : model.named_parameters()) {
      if (key.rfind("backbone.", 0) != 0) {
        EXPECT_TRUE(p.requires_grad()) << key;
        continue;
      }
      const bool stem = key.rfind("backbone.conv1", 0) == 0 || key.rfind("backbone.bn1", 0) == 0 ||
                        key.rfind("backbone.layer1.", 0) == 0;
      EXPECT_EQ(p.requires_grad(), train && !stem) << key << (train ? " (training the backbone)" : "");
    }
    size_t backbone = model.backbone_parameters().size(), other = model.other_parameters().size(), trainable = 0;
    for (const Tensor& p : model.parameters()) trainable += p.requires_grad() ? 1 : 0;
    EXPECT_EQ(backbone + other, trainable);
    EXPECT_EQ(backbone > 0, train);
  }
}

// Group DETR: in training each group of queries computes what a one-group model with that group's query rows computes
// (the groups do not see each other); in eval mode only the first group runs.
TEST(DetrQueryGroups, GroupsAreIndependentAndEvalRunsTheFirst) {
  const PxtFile file("detr_post.pxt");
  detr::DetrOptions grouped_options = options(false, nn::Activation::relu);
  grouped_options.query_groups = 3;
  Generator init(1), dropout(2);
  detr::Detr grouped(grouped_options, init, dropout);
  detr::Detr single(options(false, nn::Activation::relu), init, dropout);
  nn::StateDict state = grouped.state_dict();
  const Tensor table = state.at("query_embed.weight");  // (3 Q, d)
  const Tensor images = file.get("images");
  const detr::FeaturePositions positions = grouped.feature_positions(file.get("mask"), cpu());
  grouped.train();
  single.train();
  const auto all = grouped.forward(images, positions);  // (3 B, Q, ...) per layer
  ASSERT_EQ(all.back().logits.size(0), 3 * kImages);
  for (int64_t g = 0; g < 3; ++g) {
    state["query_embed.weight"] = narrow(table, 0, g * 6, 6);
    single.load_state_dict(state);
    const auto one = single.forward(images, positions);
    for (int64_t l = 0; l < kLayers; ++l)
      for (int64_t b = 0; b < kImages; ++b) {
        const std::string what = "group " + std::to_string(g) + " layer " + std::to_string(l);
        expect_close(narrow(all[l].logits, 0, b * 3 + g, 1), narrow(one[l].logits, 0, b, 1), 1e-12, what);
        expect_close(narrow(all[l].boxes, 0, b * 3 + g, 1), narrow(one[l].boxes, 0, b, 1), 1e-12, what);
      }
  }
  grouped.eval();
  EXPECT_EQ(grouped.running_groups(), 1);
  state["query_embed.weight"] = narrow(table, 0, 0, 6);
  single.load_state_dict(state);
  single.eval();
  expect_close(grouped.forward(images, positions, false).back().logits,
               single.forward(images, positions, false).back().logits, 1e-12, "eval");
}

}  // namespace
}  // namespace px::test

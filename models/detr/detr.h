// Detr: the DETR model of facebookresearch/detr (ResNet backbone, 1x1 input projection, a post-norm transformer
// with 2D sine positions at every layer and learned object queries, class and box heads on every decoder layer).
#pragma once

#include <memory>
#include <vector>

#include "core/nn/conv2d.h"
#include "core/nn/embedding.h"
#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/nn/module.h"
#include "core/nn/module_list.h"
#include "core/nn/resnet.h"
#include "core/util/generator.h"
#include "models/common/transformer_layers.h"

namespace px::detr {

struct DetrOptions {
  nn::ResNetOptions backbone;   // its dtype is replaced by `dtype`
  bool train_backbone = true;   // false: every backbone parameter frozen
  bool freeze_stem = true;      // with train_backbone: conv1, bn1 and layer1 stay frozen (the reference)
  int64_t num_classes = 91;     // the highest class id + 1; the logits add "no object" as the last class
  int64_t d_model = 256, num_heads = 8, encoder_layers = 6, decoder_layers = 6, d_ff = 2048;
  double dropout = 0.1;         // sublayer outputs, feed-forward and attention probabilities
  nn::Activation activation = nn::Activation::relu;
  bool pre_norm = false;        // pre-norm adds a final encoder LayerNorm (the decoder always has one)
  int64_t num_queries = 100;
  // Group DETR (Chen et al., ICCV 2023): in training, query_groups groups of num_queries queries that do not see
  // each other (the decoder runs each group as its own batch entry), each matched one-to-one on its own; in eval
  // mode only the first group runs, so inference is the reference's. 1: the reference.
  int64_t query_groups = 1;
  DType dtype = DType::f32;
};

// Inconsistent options (d_model odd or not divisible by num_heads, sizes < 1, dropout outside [0, 1)) are a
// px::ConfigError naming the option.
void check_options(const DetrOptions& options);

// The padding mask at the feature map's resolution and its 2D sine positions, computed on the host from a batch's
// mask (nearest-neighbour downsampling, as the reference's F.interpolate), then given to Detr::forward on the
// model's device.
struct FeaturePositions {
  Tensor mask;  // (B, h, w) bool, true = padding
  Tensor pos;   // (B, h * w, d_model) in the model's dtype
};

// One decoder layer's predictions (after the shared final decoder LayerNorm and heads). With G query groups running
// (training), entry b * G + g is image b's group g.
struct DetrPrediction {
  Tensor logits;  // (B G, Q, num_classes + 1)
  Tensor boxes;   // (B G, Q, 4) normalised cx, cy, w, h in (0, 1)
};

// Parameter names (reference name in brackets where it differs):
//   backbone.{conv1,bn1,layer1..4}.*   [backbone.0.body.*], torchvision's ResNet names
//   input_proj.{weight,bias}, query_embed.weight (G Q, d), group g's queries in rows [g Q, (g + 1) Q)
//   transformer.encoder.layers.<i>.{self_attn.{qkv,out}, ff.{fc1,fc2}, norm1, norm2}.*   [self_attn.in_proj_*,
//     out_proj, linear1, linear2]; pre-norm: transformer.encoder.norm.*
//   transformer.decoder.layers.<i>.{self_attn.*, cross_attn.{q,kv,out}, ff.*, norm1..3}.*   [multihead_attn.*],
//   transformer.decoder.norm.*
//   class_embed.{weight,bias} (C + 1, d), bbox_embed.layers.{0,1,2}.{weight,bias}
// The transformer's layers are models::TransformerEncoderLayer / DecoderLayer over tp (heads and feed-forward
// blocks split at tp > 1); backbone, projection, queries and heads are replicated.
class Detr : public nn::Module {
 public:
  // Weights from init_gen, dropout masks from dropout_gen and tp's sharded stream; all must outlive the model.
  Detr(const DetrOptions& options, Generator& init_gen, Generator& dropout_gen, const models::TensorParallel& tp = {});

  // The feature map's size for an (H, W) input: each of the backbone's stride-2 layers maps n to (n - 1) / 2 + 1.
  std::pair<int64_t, int64_t> feature_size(int64_t height, int64_t width) const;
  // mask bool (B, H, W) on the host -> the feature mask and positions, on `device`.
  FeaturePositions feature_positions(const Tensor& mask, Device device) const;

  // images (B, 3, H, W) in dtype(), positions from feature_positions -> one prediction per decoder layer,
  // the last layer's last (every layer's only when aux outputs are wanted: aux = false gives just the last).
  std::vector<DetrPrediction> forward(const Tensor& images, const FeaturePositions& positions, bool aux = true) const;
  // The query groups forward runs: options().query_groups in training, 1 in eval mode.
  int64_t running_groups() const;

  const DetrOptions& options() const { return options_; }
  // The weights' and activations' dtype (options().dtype until `to` converts the model).
  DType dtype() const;
  // Parameters of the backbone (DETR trains them at its own lr) and the rest, each covering only those that
  // require grad.
  std::vector<Tensor> backbone_parameters() const;
  std::vector<Tensor> other_parameters() const;

 private:
  DetrOptions options_;
  std::shared_ptr<nn::ResNet> backbone_;
  std::shared_ptr<nn::Conv2d> input_proj_;
  std::shared_ptr<nn::Embedding> query_embed_;
  std::vector<std::shared_ptr<models::TransformerEncoderLayer>> encoder_;
  std::vector<std::shared_ptr<models::TransformerDecoderLayer>> decoder_;
  std::shared_ptr<nn::LayerNorm> encoder_norm_;  // pre-norm only
  std::shared_ptr<nn::LayerNorm> decoder_norm_;
  std::shared_ptr<nn::Linear> class_embed_;
  std::vector<std::shared_ptr<nn::Linear>> bbox_embed_;  // 3 layers: d -> d -> d -> 4
};

}  // namespace px::detr

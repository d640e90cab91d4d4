// Detr: option checks, module construction in the parameter-name order of detr.h, the backbone freeze, the
// feature mask and positions of a batch, and the forward pass through backbone, transformer and heads.
#include "models/detr/detr.h"

#include <string>

#include "core/nn/positional_encoding.h"
#include "core/ops/ops.h"
#include "core/ops/pool.h"
#include "core/util/error.h"

namespace px::detr {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError("DetrOptions." + message);
}

std::vector<Tensor> trainable(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const Tensor& p : params)
    if (p.requires_grad()) out.push_back(p);
  return out;
}

}  // namespace

void check_options(const DetrOptions& o) {
  require(o.num_classes > 0, "num_classes: must be positive, got " + std::to_string(o.num_classes));
  require(o.d_model > 0 && o.d_model % 2 == 0, "d_model: must be positive and even (the 2D positions split it "
                                               "between y and x), got " + std::to_string(o.d_model));
  require(o.num_heads > 0 && o.d_model % o.num_heads == 0,
          "num_heads: must divide d_model " + std::to_string(o.d_model) + ", got " + std::to_string(o.num_heads));
  require(o.encoder_layers >= 0, "encoder_layers: must be >= 0, got " + std::to_string(o.encoder_layers));
  require(o.decoder_layers > 0, "decoder_layers: must be positive, got " + std::to_string(o.decoder_layers));
  require(o.d_ff > 0, "d_ff: must be positive, got " + std::to_string(o.d_ff));
  require(o.num_queries > 0, "num_queries: must be positive, got " + std::to_string(o.num_queries));
  require(o.query_groups > 0, "query_groups: must be positive, got " + std::to_string(o.query_groups));
  require(o.dropout >= 0 && o.dropout < 1, "dropout: must be in [0, 1), got " + std::to_string(o.dropout));
}

Detr::Detr(const DetrOptions& options, Generator& init_gen, Generator& dropout_gen, const models::TensorParallel& tp)
    : Module("Detr"), options_(options) {
  check_options(options);
  const DetrOptions& o = options_;
  nn::ResNetOptions backbone_options = o.backbone;
  backbone_options.dtype = o.dtype;
  backbone_ = register_module("backbone", std::make_shared<nn::ResNet>(backbone_options, init_gen));
  // DETR's freeze: with train_backbone everything but the stem and layer1 trains (unless freeze_stem is off).
  if (!o.train_backbone) {
    backbone_->freeze_stages(o.backbone.stages);
  } else if (o.freeze_stem) {
    backbone_->freeze_stages(1);
  }
  input_proj_ = register_module(
      "input_proj", std::make_shared<nn::Conv2d>(backbone_->out_channels(), o.d_model, 1, init_gen,
                                                 Conv2dOptions{}, /*bias=*/true, o.dtype));
  query_embed_ = register_module("query_embed", std::make_shared<nn::Embedding>(o.num_queries * o.query_groups, o.d_model, init_gen,
                                                                                o.dtype));
  auto transformer = register_module("transformer", std::make_shared<nn::Container>("DetrTransformer"));
  auto encoder = transformer->add("encoder", std::make_shared<nn::Container>("DetrEncoder"));
  auto encoder_layers = encoder->add("layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < o.encoder_layers; ++i) {
    encoder_.push_back(encoder_layers->push_back(std::make_shared<models::TransformerEncoderLayer>(
        o.d_model, o.num_heads, o.d_ff, o.dropout, o.dropout, o.activation, o.pre_norm, init_gen, dropout_gen,
        o.dtype, tp)));
  }
  if (o.pre_norm) encoder_norm_ = encoder->add("norm", std::make_shared<nn::LayerNorm>(o.d_model, 1e-5, true, o.dtype));
  auto decoder = transformer->add("decoder", std::make_shared<nn::Container>("DetrDecoder"));
  auto decoder_layers = decoder->add("layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < o.decoder_layers; ++i) {
    decoder_.push_back(decoder_layers->push_back(std::make_shared<models::TransformerDecoderLayer>(
        o.d_model, o.num_heads, o.d_ff, o.dropout, o.dropout, o.activation, o.pre_norm, init_gen, dropout_gen,
        o.dtype, tp)));
  }
  decoder_norm_ = decoder->add("norm", std::make_shared<nn::LayerNorm>(o.d_model, 1e-5, true, o.dtype));
  class_embed_ = register_module("class_embed",
                                 std::make_shared<nn::Linear>(o.d_model, o.num_classes + 1, init_gen, true, o.dtype));
  auto bbox = register_module("bbox_embed", std::make_shared<nn::Container>("MLP"));
  auto bbox_layers = bbox->add("layers", std::make_shared<nn::ModuleList>());
  for (int64_t out : {o.d_model, o.d_model, int64_t{4}})
    bbox_embed_.push_back(bbox_layers->push_back(std::make_shared<nn::Linear>(o.d_model, out, init_gen, true, o.dtype)));
}

std::pair<int64_t, int64_t> Detr::feature_size(int64_t height, int64_t width) const {
  for (int64_t s = backbone_->stride(); s > 1; s /= 2) {
    height = (height - 1) / 2 + 1;
    width = (width - 1) / 2 + 1;
  }
  return {height, width};
}

FeaturePositions Detr::feature_positions(const Tensor& mask, Device device) const {
  CHECK(mask.dim() == 3 && mask.dtype() == DType::boolean && mask.device().is_cpu())
      << "Detr::feature_positions: mask must be a bool (B, H, W) host tensor, got " << mask.str();
  const auto [h, w] = feature_size(mask.size(1), mask.size(2));
  const Tensor small = interpolate_nearest(mask, h, w);
  FeaturePositions out;
  out.pos = to_device(nn::sine_position_encoding_2d(small, options_.d_model / 2, dtype()), device);
  out.mask = to_device(small, device);
  return out;
}

// memory = encoder(proj(backbone(x)) + pos at every layer); h_l = decoder_l(h_{l-1}, memory) from h_0 = 0 with the
// query embedding added at every layer; prediction_l = heads(decoder_norm(h_l))
std::vector<DetrPrediction> Detr::forward(const Tensor& images, const FeaturePositions& positions, bool aux) const {
  CHECK(images.dim() == 4 && images.size(1) == 3) << "Detr: images must be (B, 3, H, W), got " << images.str();
  const int64_t batch = images.size(0), d = options_.d_model;
  const Tensor features = input_proj_->forward(backbone_->forward(images));  // (B, d, h, w)
  const int64_t h = features.size(2), w = features.size(3);
  CHECK(positions.mask.dim() == 3 && positions.mask.size(0) == batch && positions.mask.size(1) == h &&
        positions.mask.size(2) == w)
      << "Detr: feature mask " << positions.mask.str() << " for a feature map (" << batch << ", " << d << ", " << h
      << ", " << w << ") of images " << images.str() << " (use feature_positions)";
  CHECK(positions.pos.dim() == 3 && positions.pos.size(1) == h * w && positions.pos.size(2) == d)
      << "Detr: positions " << positions.pos.str() << " for " << h * w << " features of width " << d;
  const Tensor mask = reshape(positions.mask, {batch, h * w});                       // (B, hw)
  Tensor memory = contiguous(transpose(reshape(features, {batch, d, h * w}), 1, 2));  // (B, hw, d)
  for (const auto& layer : encoder_) memory = layer->forward(memory, mask, positions.pos);
  if (encoder_norm_) memory = encoder_norm_->forward(memory);

  // G query groups: the decoder runs B G entries, entry b G + g with image b's memory and group g's queries.
  const int64_t groups = running_groups(), queries = options_.num_queries;
  const auto per_group = [&](const Tensor& t) {  // (B, ...) -> (B G, ...), each entry repeated G times
    if (groups == 1) return t;
    Shape expanded = t.shape(), merged = t.shape();
    expanded.insert(expanded.begin() + 1, groups);
    merged[0] *= groups;
    return reshape(expand(unsqueeze(t, 1), expanded), merged);
  };
  models::TransformerDecoderLayer::Positions decoder_positions;
  // (1, Q, d) for one group, else (B G, Q, d): entry b G + g holds rows [g Q, (g + 1) Q) of the table
  const Tensor query = narrow(query_embed_->weight(), 0, 0, groups * queries);
  decoder_positions.query =
      groups == 1 ? unsqueeze(query, 0)
                  : reshape(expand(reshape(query, {1, groups, queries, d}), {batch, groups, queries, d}),
                            {batch * groups, queries, d});
  decoder_positions.memory = per_group(positions.pos);
  memory = per_group(memory);
  const Tensor memory_mask = per_group(mask);
  Tensor hidden = zeros({batch * groups, queries, d}, dtype(), images.device());
  std::vector<DetrPrediction> predictions;
  for (size_t i = 0; i < decoder_.size(); ++i) {
    hidden = decoder_[i]->forward(hidden, memory, memory_mask, nullptr, /*causal=*/false, decoder_positions);
    if (!aux && i + 1 < decoder_.size()) continue;
    const Tensor normed = decoder_norm_->forward(hidden);
    Tensor box = normed;
    for (size_t k = 0; k < bbox_embed_.size(); ++k) {
      box = bbox_embed_[k]->forward(box);
      if (k + 1 < bbox_embed_.size()) box = relu(box);
    }
    predictions.push_back({class_embed_->forward(normed), sigmoid(box)});
  }
  return predictions;
}

int64_t Detr::running_groups() const { return is_training() ? options_.query_groups : 1; }

DType Detr::dtype() const { return query_embed_->weight().dtype(); }

std::vector<Tensor> Detr::backbone_parameters() const { return trainable(backbone_->parameters()); }

std::vector<Tensor> Detr::other_parameters() const {
  std::vector<Tensor> out;
  const std::vector<Tensor> backbone = backbone_->parameters();
  for (const Tensor& p : trainable(parameters())) {
    bool in_backbone = false;
    for (const Tensor& b : backbone) in_backbone = in_backbone || b.impl() == p.impl();
    if (!in_backbone) out.push_back(p);
  }
  return out;
}

}  // namespace px::detr

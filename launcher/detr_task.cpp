// DETR's side of a run: the detection dataset a config names, the Detr built from it, model.detr's checks and
// DetrTask (batches with their feature positions, the set criterion's loss and box normaliser, COCO evaluation).
#include "launcher/detr_task.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/ops/ops.h"
#include "core/util/error.h"
#include "data/dataset_index.h"
#include "data/sampler.h"
#include "launcher/config.h"
#include "launcher/detr_eval.h"
#include "launcher/device_batches.h"
#include "parallel/comm/process_group.h"

namespace px {

namespace fs = std::filesystem;

std::vector<std::string> DetectionData::shards(const std::string& split) const {
  return data::shard_paths(dir, data::find_split(index, split, dir));
}

DetectionData open_detection_data(const config::Config& config) {
  DetectionData data;
  data.dir = config.data().dir();
  if (!fs::is_directory(data.dir)) {
    throw DataError(data.dir + ": data.dir is not a directory (build shards with `parallax data build-detection` "
                    "or `make data`)");
  }
  data.index = data::read_index(data.dir);
  if (data.index.schema() != "parallax.detection") {
    throw DataError(data.dir + ": a " + data.index.schema() + " dataset, DETR needs parallax.detection");
  }
  data.category_names.assign(data.index.category_names().begin(), data.index.category_names().end());
  if (data.category_names.empty()) throw DataError(data.dir + "/dataset.pbtxt: no category_names");
  return data;
}

namespace {

constexpr char kFields[] = "model.detr.";

std::string field(const char* name) { return std::string(kFields) + name; }

nn::Activation activation_of(const config::DetrConfig& m) {
  try {
    return nn::parse_activation(m.activation());
  } catch (const ConfigError& e) {
    throw ConfigError(field("activation") + ": " + e.what());
  }
}

}  // namespace

detr::DetrOptions detr_options(const config::Config& config, int64_t num_classes) {
  const config::DetrConfig& m = config.model().detr();
  detr::DetrOptions o;
  o.backbone.depth = m.backbone();
  o.backbone.width_multiplier = m.backbone_width();
  o.backbone.stages = m.backbone_stages();
  o.backbone.frozen_bn = m.frozen_bn();
  o.train_backbone = m.backbone_lr() > 0;
  o.freeze_stem = m.freeze_stem();
  o.num_classes = num_classes;
  o.d_model = m.d_model();
  o.num_heads = m.num_heads();
  o.encoder_layers = m.encoder_layers();
  o.decoder_layers = m.decoder_layers();
  o.d_ff = m.d_ff();
  o.dropout = m.dropout();
  o.activation = activation_of(m);
  o.pre_norm = m.pre_norm();
  o.num_queries = m.num_queries();
  o.query_groups = m.query_groups();
  return o;
}

detr::CriterionOptions criterion_options(const config::Config& config, int64_t num_classes) {
  const config::DetrConfig& m = config.model().detr();
  detr::CriterionOptions o;
  o.num_classes = num_classes;
  o.eos_coef = m.eos_coef();
  o.loss_ce = m.loss_ce();
  o.loss_bbox = m.loss_bbox();
  o.loss_giou = m.loss_giou();
  o.matcher.cost_class = m.cost_class();
  o.matcher.cost_bbox = m.cost_bbox();
  o.matcher.cost_giou = m.cost_giou();
  return o;
}

data::DetectionAugment augment_options(const config::Config& config, bool train) {
  const config::DetectionAugmentConfig& a = config.data().augment();
  data::DetectionAugment o;
  o.train = train;
  o.flip_prob = static_cast<float>(a.flip_prob());
  if (a.scales_size() > 0) o.scales.assign(a.scales().begin(), a.scales().end());
  o.max_size = a.max_size();
  if (a.crop_resize_scales_size() > 0) o.crop_resize_scales.assign(a.crop_resize_scales().begin(),
                                                                    a.crop_resize_scales().end());
  o.crop_min = a.crop_min();
  o.crop_max = a.crop_max();
  o.eval_size = a.eval_size();
  return o;
}

DetrBundle build_detr(const config::Config& config, const DetectionData& data, parallel::ParallelGrid* grid,
                      const DevicePlan& plan) {
  DetrBundle bundle;
  bundle.generators = model_generators(config.train().seed(), /*domain=*/0xDE7A, grid);
  const detr::DetrOptions options = detr_options(config, static_cast<int64_t>(data.category_names.size()));
  const ModelGenerators& g = bundle.generators;
  bundle.model = std::make_unique<detr::Detr>(options, *g.init, *g.dropout, g.tp);
  if (!plan.device.is_cpu() || plan.dtype != options.dtype) bundle.model->to(plan.device, plan.dtype);
  return bundle;
}

namespace {

// data.augment: the sizes and probabilities of DETR's transforms.
void validate_augment(const config::DetectionAugmentConfig& a) {
  if (!(a.flip_prob() >= 0 && a.flip_prob() <= 1)) {
    char got[32];
    std::snprintf(got, sizeof got, "%g", a.flip_prob());
    throw ConfigError(std::string("data.augment.flip_prob: must be in [0, 1], got ") + got);
  }
  for (const int size : a.scales()) require_at_least("data.augment.scales", size, 1);
  for (const int size : a.crop_resize_scales()) require_at_least("data.augment.crop_resize_scales", size, 1);
  require_at_least("data.augment.max_size", a.max_size(), 0);
  require_at_least("data.augment.crop_min", a.crop_min(), 1);
  require_at_least("data.augment.crop_max", a.crop_max(), 1);
  require_at_least("data.augment.eval_size", a.eval_size(), 1);
}

void validate_detr(const config::Config& config) {
  const config::DetrConfig& m = config.model().detr();
  require_one_of(field("backbone"), m.backbone(), {"resnet18", "resnet34", "resnet50"});
  require_positive(field("backbone_width"), m.backbone_width());
  if (m.backbone_stages() < 1 || m.backbone_stages() > 4)
    throw ConfigError(field("backbone_stages") + ": must be in [1, 4], got " + std::to_string(m.backbone_stages()));
  require_non_negative(field("backbone_lr"), m.backbone_lr());
  require_at_least(field("d_model"), m.d_model(), 2);
  if (m.d_model() % 2 != 0)
    throw ConfigError(field("d_model") + ": must be even (the 2D positions split it), got " +
                      std::to_string(m.d_model()));
  require_at_least(field("num_heads"), m.num_heads(), 1);
  if (m.d_model() % m.num_heads() != 0)
    throw ConfigError(field("num_heads") + ": " + std::to_string(m.num_heads()) + " does not divide " +
                      field("d_model") + " " + std::to_string(m.d_model()));
  require_at_least(field("encoder_layers"), m.encoder_layers(), 0);
  require_at_least(field("decoder_layers"), m.decoder_layers(), 1);
  require_at_least(field("d_ff"), m.d_ff(), 1);
  require_unit_interval(field("dropout"), m.dropout());
  activation_of(m);
  require_at_least(field("num_queries"), m.num_queries(), 1);
  require_at_least(field("query_groups"), m.query_groups(), 1);
  validate_augment(config.data().augment());
  for (const auto& [name, value] : {std::pair<const char*, double>{"cost_class", m.cost_class()},
                                    {"cost_bbox", m.cost_bbox()}, {"cost_giou", m.cost_giou()},
                                    {"loss_ce", m.loss_ce()}, {"loss_bbox", m.loss_bbox()},
                                    {"loss_giou", m.loss_giou()}, {"eos_coef", m.eos_coef()}})
    require_non_negative(field(name), value);
  const int tp = config.parallel().tp();
  if (tp < 1) return;  // validate_config names parallel.tp
  for (const auto& [name, size] : {std::pair<const char*, int>{"num_heads", m.num_heads()}, {"d_ff", m.d_ff()}}) {
    if (size % tp != 0)
      throw ConfigError("parallel.tp: " + std::to_string(tp) + " does not divide " + field(name) + " " +
                        std::to_string(size));
  }
}

std::string detr_shape_difference(const config::Config& checkpoint, const config::Config& current) {
  return shape_difference_of_fields(checkpoint.model().detr(), current.model().detr(),
                                    {"backbone", "backbone_width", "backbone_stages", "frozen_bn", "d_model",
                                     "num_heads", "encoder_layers", "decoder_layers", "d_ff", "pre_norm",
                                     "num_queries", "query_groups"},
                                    kFields);
}

// A rank's images of one global batch with their feature mask and positions (computed on the host as the batch is
// read) and targets.
class DetrBatch : public TaskBatch {
 public:
  DetrBatch(data::DetectionBatch batch, detr::FeaturePositions positions)
      : batch_(std::move(batch)), positions_(std::move(positions)) {
    after = batch_.after;
  }
  bool empty() const override { return batch_.images.size(0) == 0; }
  std::vector<Tensor*> device_tensors() override { return {&batch_.images, &positions_.mask, &positions_.pos}; }
  const data::DetectionBatch& batch() const { return batch_; }
  const detr::FeaturePositions& positions() const { return positions_; }

 private:
  data::DetectionBatch batch_;
  detr::FeaturePositions positions_;
};

class DetrBatches : public BatchSource {
 public:
  DetrBatches(const data::DetectionLoaderOptions& options, const data::DataCursor& cursor, const detr::Detr& model)
      : loader_(options, cursor), model_(model) {}
  std::unique_ptr<TaskBatch> next() override {
    std::optional<data::DetectionBatch> batch = loader_.next();
    if (!batch) return nullptr;
    detr::FeaturePositions positions = model_.feature_positions(batch->mask, cpu());
    return std::make_unique<DetrBatch>(std::move(*batch), std::move(positions));
  }

 private:
  data::DetectionLoader loader_;
  const detr::Detr& model_;
};

const DetrBatch& detr_batch(const TaskBatch& batch) {
  const auto* b = dynamic_cast<const DetrBatch*>(&batch);
  CHECK(b != nullptr) << "DetrTask: a batch of another task";
  return *b;
}

class DetrTask : public Task {
 public:
  DetrTask(config::Config config, DetectionData data)
      : config_(std::move(config)),
        data_(std::move(data)),
        criterion_(criterion_options(config_, static_cast<int64_t>(data_.category_names.size()))) {}

  void check_set_up(const RunDir& /*run*/, int world_size) const override {
    const int dp = world_size / config_.parallel().tp();
    for (const auto& [name, size] : {std::pair<const char*, int>{"train.batch_size", config_.train().batch_size()},
                                     {"eval.batch_size", config_.eval().batch_size()}}) {
      if (dp > 0 && size % dp != 0)
        throw ConfigError(std::string(name) + ": " + std::to_string(size) + " images are not divisible by the " +
                          std::to_string(dp) + " data-parallel ranks");
    }
  }
  void record_run(const RunDir& /*run*/) const override {}

  void build_model(parallel::ParallelGrid& grid, const DevicePlan& plan) override {
    bundle_ = build_detr(config_, data_, &grid, plan);
    device_ = plan.device;
  }
  nn::Module& model() override { return detr(); }
  std::string describe() const override {
    const detr::DetrOptions& o = detr().options();
    return std::to_string(o.num_classes) + " classes, " + config_.model().detr().backbone() + " backbone";
  }
  std::vector<optim::ParamGroup> param_groups() const override {
    const auto& o = config_.optimizer();
    std::vector<optim::ParamGroup> groups{{detr().other_parameters(), o.lr(), o.weight_decay(), "", -1.0}};
    std::vector<Tensor> backbone = detr().backbone_parameters();
    if (!backbone.empty())
      groups.push_back({std::move(backbone), config_.model().detr().backbone_lr(), o.weight_decay(), "backbone", -1.0});
    return groups;
  }
  std::vector<RngStream> rng_streams() const override {
    return bundle_.generators.streams();
  }

  std::unique_ptr<BatchSource> train_batches(const data::DataCursor& cursor, int dp_rank, int dp_size) override {
    data::DetectionLoaderOptions options;
    options.shards = data_.shards(config_.data().train_split());
    options.batch_size = config_.train().batch_size();
    options.shuffle = true;
    options.drop_last = true;
    options.max_epochs = config_.train().max_epochs();
    options.rank = dp_rank;
    options.world = dp_size;
    options.prefetch = config_.data().prefetch();
    options.augment = augment_options(config_, /*train=*/true);
    return std::make_unique<DeviceBatches>(std::make_unique<DetrBatches>(options, cursor, detr()), device_);
  }
  // The box count of the update: targets of every micro-batch over every dp rank (at least 1), as the reference's
  // num_boxes (which also divides by the world size, as its gradients are averaged, and clamps at 1). The
  // cross-entropy is the weighted mean over every query of the update: loss_sum scales each rank's weighted sum by
  // count / (the class weights of every query), so every layout and accumulation computes the same loss; at one
  // process it is the reference's.
  double normaliser(const std::vector<std::unique_ptr<TaskBatch>>& micro_batches,
                    parallel::ProcessGroup& dp) const override {
    const int64_t queries = config_.model().detr().num_queries();
    const double eos_coef = config_.model().detr().eos_coef();
    std::vector<double> sums{0.0, 0.0};  // boxes, class weights
    for (const auto& b : micro_batches)
      for (const data::DetectionTarget& t : detr_batch(*b).batch().targets) {
        sums[0] += static_cast<double>(t.labels.size(0));
        sums[1] += detr::class_weight_sum(queries, t.labels.size(0), eos_coef);
      }
    const Tensor global = from_vector(sums, {2}, DType::f64);
    dp.all_reduce(global, parallel::ReduceOp::sum)->wait();
    // Each of the G query groups is matched to every target: G times the boxes and class weights (Group DETR
    // averages its groups' losses).
    const double groups = static_cast<double>(config_.model().detr().query_groups());
    const double boxes = groups * std::max(global.data<double>()[0], 1.0);
    const double weights = groups * global.data<double>()[1];
    ce_scale_ = weights > 0 ? boxes / weights : 0.0;  // 0 only with eos_coef 0 and no targets: no cross-entropy
    return boxes;
  }
  double units(const std::vector<std::unique_ptr<TaskBatch>>& micro_batches) const override {
    return static_cast<double>(config_.train().batch_size()) * static_cast<double>(micro_batches.size());
  }
  Tensor loss_sum(const TaskBatch& batch) override {
    const DetrBatch& b = detr_batch(batch);
    CHECK(b.batch().images.device() == device_)
        << "DetrTask::loss_sum: images " << b.batch().images.str() << " are not on the model's device "
        << device_.str() << " (batches come from train_batches)";
    CHECK_GE(ce_scale_, 0) << "DetrTask::loss_sum before normaliser";
    const Tensor images = to_dtype(b.batch().images, detr().dtype());
    const auto predictions = detr().forward(images, b.positions(), config_.model().detr().aux_loss());
    const int64_t groups = detr().running_groups();
    if (groups == 1) return criterion_(predictions, b.batch().targets, ce_scale_).loss_sum;
    std::vector<data::DetectionTarget> per_group;  // (B G): image b's targets for each of its G entries
    for (const data::DetectionTarget& t : b.batch().targets) per_group.insert(per_group.end(), groups, t);
    return criterion_(predictions, per_group, ce_scale_).loss_sum;
  }
  ThroughputUnit throughput_unit() const override { return {"img", "images_per_s"}; }

  EvalReport evaluate(parallel::ParallelGrid& grid) override {
    DetectionEvalOptions options;
    options.split = config_.data().valid_split();
    options.batch_size = config_.eval().batch_size();
    options.max_images = config_.eval().max_images();
    options.augment = augment_options(config_, /*train=*/false);
    options.shard = grid.dp_rank();
    options.num_shards = grid.dp_size();
    options.dp = &grid.dp();
    const DetectionEvalResult r = evaluate_detection(detr(), data_, options);
    EvalReport report;
    report.metrics = coco_metrics(r.stats);
    char summary[200];
    std::snprintf(summary, sizeof summary, "valid mAP %.4f | AP50 %.4f | AP75 %.4f | AR100 %.4f on %lld images",
                  r.stats.values[0], r.stats.values[1], r.stats.values[2], r.stats.values[8],
                  static_cast<long long>(r.images));
    report.summary = summary;
    return report;
  }

 private:
  detr::Detr& detr() const {
    CHECK(bundle_.model != nullptr) << "DetrTask: build_model() first";
    return *bundle_.model;
  }

  config::Config config_;
  DetectionData data_;
  detr::SetCriterion criterion_;
  DetrBundle bundle_;
  Device device_;
  mutable double ce_scale_ = -1;  // set by normaliser() for the loss_sum() calls of the same update
};

}  // namespace

const TaskKind kDetrKind{"detr", validate_detr, detr_shape_difference, open_detr_task};

std::unique_ptr<Task> open_detr_task(const config::Config& config) {
  DetectionData data = open_detection_data(config);
  data.shards(config.data().train_split());
  data.shards(config.data().valid_split());
  return std::make_unique<DetrTask>(config, std::move(data));
}

}  // namespace px

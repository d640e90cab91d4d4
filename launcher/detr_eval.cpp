// COCO evaluation of a Detr on a split: batches through the eval transform, every query post-processed to the
// original image's pixels, the per-image records gathered over dp, then pycocotools' metrics (models/detr).
#include "launcher/detr_eval.h"

#include <algorithm>
#include <cctype>
#include <chrono>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "models/detr/postprocess.h"

namespace px {

namespace {

// One image's ground truth and detections, flattened for the gather: image id, counts, then per box
// (label, x, y, w, h) and per detection (label, score, x, y, w, h), pixels of the original image.
void append_image(std::vector<double>& out, int64_t image_id, const data::DetectionTarget& target,
                  const std::vector<detr::Detection>& detections) {
  const std::vector<double> labels = to_vector(target.labels), boxes = to_vector(target.boxes);
  out.insert(out.end(), {static_cast<double>(image_id), static_cast<double>(labels.size()),
                         static_cast<double>(detections.size())});
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::array<float, 4> box{static_cast<float>(boxes[4 * i]), static_cast<float>(boxes[4 * i + 1]),
                                   static_cast<float>(boxes[4 * i + 2]), static_cast<float>(boxes[4 * i + 3])};
    const auto xywh = detr::cxcywh_to_xywh_pixels(box, target.orig_height, target.orig_width);
    out.insert(out.end(), {labels[i], xywh[0], xywh[1], xywh[2], xywh[3]});
  }
  for (const detr::Detection& d : detections)
    out.insert(out.end(), {static_cast<double>(d.label), d.score, d.box[0], d.box[1], d.box[2] - d.box[0],
                           d.box[3] - d.box[1]});
}

// Every shard's records in shard order (an all_gather of equal-length, padded buffers whose first value is the
// real length).
std::vector<double> gather_records(const std::vector<double>& mine, parallel::ProcessGroup* dp) {
  if (dp == nullptr || dp->size() == 1) return mine;
  const auto longest = static_cast<int64_t>(
      parallel::all_reduce_value(*dp, static_cast<double>(mine.size()), parallel::ReduceOp::max));
  std::vector<double> padded(static_cast<size_t>(longest + 1), 0.0);
  padded[0] = static_cast<double>(mine.size());
  std::copy(mine.begin(), mine.end(), padded.begin() + 1);
  const Tensor part = from_vector(padded, {longest + 1}, DType::f64);
  const Tensor whole = Tensor::empty({dp->size() * (longest + 1)}, DType::f64);
  dp->all_gather(part, whole)->wait();
  std::vector<double> all;
  const double* p = whole.data<double>();
  for (int r = 0; r < dp->size(); ++r, p += longest + 1) all.insert(all.end(), p + 1, p + 1 + static_cast<int64_t>(p[0]));
  return all;
}

}  // namespace

std::string coco_metric_key(const std::string& stat_name) {
  if (stat_name == "AP") return "map";
  std::string key = stat_name;
  for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return key;
}

std::vector<std::pair<std::string, double>> coco_metrics(const detr::CocoStats& stats, const std::string& prefix) {
  std::vector<std::pair<std::string, double>> metrics;
  for (int i = 0; i < detr::kCocoNumStats; ++i)
    metrics.emplace_back(prefix + coco_metric_key(detr::coco_stat_names()[i]), stats.values[i]);
  return metrics;
}

DetectionEvalResult evaluate_detection(detr::Detr& model, const DetectionData& data,
                                       const DetectionEvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  nn::EvalModeGuard eval_mode(model);
  NoGradGuard no_grad;
  data::DetectionLoaderOptions loader_options;
  loader_options.shards = data.shards(options.split);
  loader_options.batch_size = options.batch_size;
  loader_options.shuffle = false;
  loader_options.drop_last = false;
  loader_options.max_epochs = 1;
  loader_options.rank = options.shard;
  loader_options.world = options.num_shards;
  loader_options.augment = options.augment;
  loader_options.augment.train = false;
  data::DetectionLoader loader(loader_options, data::DataCursor{});
  const int64_t limit = options.max_images > 0 ? std::min(options.max_images, loader.num_examples())
                                               : loader.num_examples();
  const Device device = model.parameters().front().device();
  std::vector<double> records;
  for (int64_t seen = 0; seen < limit;) {
    std::optional<data::DetectionBatch> batch = loader.next();
    if (!batch) break;
    seen += options.batch_size;
    if (batch->images.size(0) == 0) continue;
    const detr::FeaturePositions positions = model.feature_positions(batch->mask, device);
    const auto predictions = model.forward(to_dtype(to_device(batch->images, device), model.dtype()), positions, false);
    std::vector<std::pair<int64_t, int64_t>> sizes;
    for (const data::DetectionTarget& t : batch->targets) sizes.emplace_back(t.orig_height, t.orig_width);
    const auto detections = detr::post_process(predictions.back(), sizes);
    for (size_t i = 0; i < detections.size(); ++i)
      if (batch->ids[i] < limit) append_image(records, batch->ids[i], batch->targets[i], detections[i]);
  }
  const std::vector<double> all = gather_records(records, options.dp);

  detr::CocoGroundTruth truth;
  std::vector<detr::CocoDetection> detections;
  for (int64_t c = 0; c < static_cast<int64_t>(data.category_names.size()); ++c) truth.category_ids.push_back(c);
  for (size_t i = 0; i < all.size();) {
    const auto image_id = static_cast<int64_t>(all[i]);
    const auto boxes = static_cast<size_t>(all[i + 1]), dets = static_cast<size_t>(all[i + 2]);
    i += 3;
    truth.image_ids.push_back(image_id);
    for (size_t k = 0; k < boxes; ++k, i += 5) {
      detr::CocoAnnotation a;
      a.image_id = image_id;
      a.category_id = static_cast<int64_t>(all[i]);
      a.bbox = {all[i + 1], all[i + 2], all[i + 3], all[i + 4]};
      a.area = all[i + 3] * all[i + 4];
      truth.annotations.push_back(a);
    }
    for (size_t k = 0; k < dets; ++k, i += 6) {
      detections.push_back({image_id, static_cast<int64_t>(all[i]), {all[i + 2], all[i + 3], all[i + 4], all[i + 5]},
                            all[i + 1]});
    }
  }
  DetectionEvalResult result;
  result.images = static_cast<int64_t>(truth.image_ids.size());
  result.stats = detr::evaluate_coco(truth, detections);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace px

// COCO evaluation of a Detr on a split: each dp rank predicts its share of the images (every query, no threshold,
// as the reference), the detections and ground truth are gathered over dp, and every rank scores them alike.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/detection_loader.h"
#include "launcher/detr_task.h"
#include "models/detr/coco_eval.h"
#include "models/detr/detr.h"
#include "parallel/comm/process_group.h"

namespace px {

struct DetectionEvalOptions {
  std::string split = "valid";
  int64_t batch_size = 16;  // images per batch over all shards; divisible by num_shards
  int64_t max_images = 0;   // the first N images of the split; 0: all
  data::DetectionAugment augment;  // eval: the shorter side resized to eval_size
  int shard = 0, num_shards = 1;   // this dp rank's part
  parallel::ProcessGroup* dp = nullptr;  // the group of the shards (null: one shard)
};

struct DetectionEvalResult {
  detr::CocoStats stats;
  int64_t images = 0;  // over every shard
  double seconds = 0;
};

// The model is evaluated in eval mode without gradients, on its own device, and left in its previous mode.
DetectionEvalResult evaluate_detection(detr::Detr& model, const DetectionData& data, const DetectionEvalOptions& options);

// metrics.jsonl key of a COCO stat name: "AP" -> "map", "AP50" -> "ap50", "ARs" -> "ars".
std::string coco_metric_key(const std::string& stat_name);
// The 12 stats as metrics named prefix + coco_metric_key, in COCO's order.
std::vector<std::pair<std::string, double>> coco_metrics(const detr::CocoStats& stats, const std::string& prefix = "");

}  // namespace px

// Streams augmented, padded detection batches for one rank: fixed-size global batches from the
// sampler, DETR's train/eval transforms, images padded to the batch's largest with a padding mask.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"
#include "data/sampler.h"

namespace px::data {

struct DetectionTarget {
  Tensor boxes;   // (M, 4) f32, normalised cx, cy, w, h relative to the unpadded transformed image
  Tensor labels;  // (M,) i64
  int64_t image_id = 0;
  int32_t height = 0, width = 0;            // transformed, unpadded size
  int32_t orig_height = 0, orig_width = 0;  // as stored in the shard
};

struct DetectionBatch {
  // A rank whose slice is empty (a final batch smaller than the world) gets (0, 3, 1, 1) and (0, 1, 1).
  Tensor images;  // (B, 3, H, W) f32, normalised by the ImageNet mean/std, zero on padding
  Tensor mask;    // (B, H, W) boolean, true on padding
  std::vector<DetectionTarget> targets;  // (B,)
  std::vector<int64_t> ids;              // (B,) global example ids
  int64_t global_num_boxes = 0;          // boxes in the whole global batch before augmentation
  int64_t epoch = 0;
  DataCursor after;
};

// DETR's transforms. Train: horizontal flip with flip_prob, then with probability 1/2 a resize of
// the shorter side to a random `scales` entry (longer side <= max_size), otherwise a resize to a
// random `crop_resize_scales` entry, a random crop with sides in [crop_min, crop_max], and the same
// random resize. Eval: shorter side to eval_size (longer side <= max_size). Boxes are clipped to a
// crop; boxes left with zero area are dropped. Random draws come from Philox keyed by
// (seed, epoch, example id), so they do not depend on the world size and repeat on resume.
struct DetectionAugment {
  bool train = true;
  float flip_prob = 0.5f;
  std::vector<int> scales = {96, 104, 112, 120, 128};
  int max_size = 160;
  std::vector<int> crop_resize_scales = {80, 100, 120};
  int crop_min = 64, crop_max = 120;
  int eval_size = 128;
};

struct DetectionLoaderOptions {
  std::vector<std::string> shards;
  int64_t batch_size = 8;  // global batch (all ranks together); must be divisible by world
  bool shuffle = true;
  bool drop_last = true;
  int64_t max_epochs = 0;  // 0: endless; else as TranslationLoaderOptions::max_epochs
  int rank = 0, world = 1;
  int prefetch = 4;
  DetectionAugment augment;
};

class DetectionLoader {
 public:
  DetectionLoader(const DetectionLoaderOptions& options, const DataCursor& start);
  ~DetectionLoader();
  DetectionLoader(const DetectionLoader&) = delete;
  DetectionLoader& operator=(const DetectionLoader&) = delete;

  std::optional<DetectionBatch> next();
  DataCursor cursor() const;
  int64_t num_examples() const;
  const std::vector<std::string>& category_names() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace px::data

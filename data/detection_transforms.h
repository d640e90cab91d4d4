// DETR's detection transforms on an image with normalised boxes (flip, shorter-side resize, random
// size crop), their Philox-keyed train/eval pipeline, and ImageNet normalisation with padded collation.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"
#include "data/detection_loader.h"
#include "data/detection_shard.h"
#include "data/image_io.h"
#include "data/sampler.h"

namespace px::data {

// An image and its annotations while they are transformed.
struct DetectionSample {
  Image image;                  // (H, W, 3) u8
  std::vector<float> boxes;     // (M, 4) normalised cx, cy, w, h relative to `image`
  std::vector<int32_t> labels;  // (M,)
  int64_t num_boxes() const { return static_cast<int64_t>(labels.size()); }
};

DetectionSample to_sample(DetectionExample&& example);

// DETR's get_size_with_aspect_ratio: (height, width) with the shorter side `size`, unless the
// longer side would then exceed max_size (<= 0: no limit), in which case the shorter side becomes
// round(max_size * shorter / longer) (round half to even, as Python). Sides are truncated, not rounded.
std::pair<int32_t, int32_t> get_size_with_aspect_ratio(int32_t height, int32_t width, int32_t size, int32_t max_size);

// Mirror left-right: boxes' cx -> 1 - cx.
void hflip(DetectionSample& sample);
// Bilinear resize of the shorter side by get_size_with_aspect_ratio; normalised boxes are unchanged.
void resize(DetectionSample& sample, int32_t size, int32_t max_size);
// Keeps rows [top, top + height) and columns [left, left + width); boxes are clipped to the region
// and those left with no width or no height are dropped (with their labels).
void crop(DetectionSample& sample, int32_t top, int32_t left, int32_t height, int32_t width);
// DETR's RandomSizeCrop: sides uniform in [min_side, min(image side, max_side)] (a side shorter than
// min_side is kept whole), then a uniformly placed crop of that size.
void random_size_crop(DetectionSample& sample, int32_t min_side, int32_t max_side, PhiloxStream& rng);

// The stream of random draws for one example in one epoch: independent of rank and world size.
PhiloxStream augment_stream(uint64_t seed, int64_t epoch, int64_t example_id);
// The train or eval pipeline of DetectionAugment, drawing from rng.
void augment(DetectionSample& sample, const DetectionAugment& options, PhiloxStream& rng);

// Images divided by 255 and normalised by the ImageNet mean/std, zero-padded at the bottom and right
// to the largest height and width; an empty list gives (0, 3, 1, 1) and (0, 1, 1).
struct PaddedImages {
  Tensor images;  // (B, 3, H, W) f32
  Tensor mask;    // (B, H, W) boolean, true on padding
};
PaddedImages collate_images(const std::vector<DetectionSample>& samples);

}  // namespace px::data

// Detection scenes composed from Fashion-MNIST (Debian's dataset-fashion-mnist): each canvas holds
// 1-6 items at random positions and scales with exact boxes, deterministic from a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/detection_shard.h"

namespace px::data {

// Fashion-MNIST's ten class names, label order.
const std::vector<std::string>& fashion_mnist_classes();

// The idx files (gzipped or not) of one Fashion-MNIST split: 28x28 u8 images and labels.
struct FashionMnist {
  int64_t count = 0;
  std::vector<uint8_t> images;  // (count, 28, 28)
  std::vector<uint8_t> labels;  // (count,)
};
// split: "train" or "t10k". Missing or malformed files are a DataError naming the file.
FashionMnist read_fashion_mnist(const std::string& dir, const std::string& split);

struct SceneOptions {
  int32_t canvas = 128;                     // square canvas side
  int32_t min_items = 1, max_items = 6;
  int32_t min_item_size = 20, max_item_size = 64;  // item side in pixels (items are square)
  uint64_t seed = 0;
  // Source items are drawn from [item_begin, item_end) of the split (train/valid scenes use
  // disjoint ranges of the train split; test scenes use t10k).
  int64_t item_begin = 0, item_end = -1;  // -1: the whole split
};

// Scene i (0-based) of a set: a pure function of (options, i). Items are greyscale photos on a black
// canvas (replicated to RGB, overlapping items drawn with max()); boxes are the items' tight
// bounding boxes of nonzero pixels, normalised cx, cy, w, h. image_id = i.
DetectionExample compose_scene(const FashionMnist& source, const SceneOptions& options, int64_t i);

}  // namespace px::data

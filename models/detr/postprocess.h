// DETR's PostProcess: per query, the most likely real class (softmax without "no object") and its probability,
// and the box in pixels of the original image; every query is kept, as the reference hands all to COCO eval.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "models/detr/detr.h"

namespace px::detr {

struct Detection {
  int64_t label = 0;            // in [0, num_classes)
  double score = 0;             // its softmax probability
  std::array<double, 4> box{};  // x0, y0, x1, y1 in pixels of the original image
};

// prediction: one decoder layer's output (B images); image_sizes (B) original (height, width) -> per image, one
// Detection per query in query order.
std::vector<std::vector<Detection>> post_process(const DetrPrediction& prediction,
                                                 const std::vector<std::pair<int64_t, int64_t>>& image_sizes);

}  // namespace px::detr

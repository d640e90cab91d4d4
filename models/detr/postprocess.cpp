// DETR's PostProcess on the host in f64: softmax over the classes, the best real class per query, and the box's
// corners scaled from normalised (cx, cy, w, h) to the original image's pixels.
#include "models/detr/postprocess.h"

#include <algorithm>
#include <cmath>

#include "core/ops/ops.h"

namespace px::detr {

// score, label = max / argmax_{c < C} softmax(logits)_c; box = (cx - w/2, cy - h/2, cx + w/2, cy + h/2) * (W, H, W, H)
std::vector<std::vector<Detection>> post_process(const DetrPrediction& prediction,
                                                 const std::vector<std::pair<int64_t, int64_t>>& image_sizes) {
  const Tensor& logits = prediction.logits;  // (B, Q, C + 1)
  CHECK(logits.dim() == 3 && logits.size(2) >= 2) << "post_process: logits " << logits.str();
  const int64_t batch = logits.size(0), queries = logits.size(1), classes = logits.size(2) - 1;
  CHECK_EQ(static_cast<int64_t>(image_sizes.size()), batch) << "post_process: image sizes per image";
  std::vector<double> probs, boxes;
  {
    NoGradGuard no_grad;
    probs = to_vector(softmax(to_dtype(logits.detach(), DType::f64)));
    boxes = to_vector(prediction.boxes.detach());
  }
  CHECK_EQ(static_cast<int64_t>(boxes.size()), batch * queries * 4) << "post_process: boxes "
                                                                    << prediction.boxes.str();
  std::vector<std::vector<Detection>> out(batch);
  for (int64_t b = 0; b < batch; ++b) {
    const double height = static_cast<double>(image_sizes[b].first), width = static_cast<double>(image_sizes[b].second);
    out[b].resize(queries);
    for (int64_t q = 0; q < queries; ++q) {
      const double* p = probs.data() + (b * queries + q) * (classes + 1);
      Detection& d = out[b][q];
      d.label = std::max_element(p, p + classes) - p;
      d.score = p[d.label];
      const double* box = boxes.data() + (b * queries + q) * 4;
      d.box = {(box[0] - 0.5 * box[2]) * width, (box[1] - 0.5 * box[3]) * height, (box[0] + 0.5 * box[2]) * width,
               (box[1] + 0.5 * box[3]) * height};
    }
  }
  return out;
}

}  // namespace px::detr

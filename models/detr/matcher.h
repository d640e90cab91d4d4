// DETR's HungarianMatcher on the host: per image, the cost of every (query, target) pair from the class
// probability, the L1 box distance and the GIoU, and the exact min-cost one-to-one matching over it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace px::detr {

// One batch of predictions and targets as plain host arrays (row-major), T = float or double. A caller holding
// Tensors passes their contiguous host data; targets come per image because their counts M_b differ.
template <typename T>
struct MatcherInput {
  int64_t batch = 0, queries = 0, classes = 0;   // B, Q, C+1 (the last class is "no object")
  std::span<const T> probs;                      // (B, Q, C+1) softmax of the class logits
  std::span<const T> boxes;                      // (B, Q, 4) predicted (cx, cy, w, h), normalised
  std::vector<std::span<const int64_t>> labels;  // B x (M_b,) target classes in [0, C+1)
  std::vector<std::span<const T>> target_boxes;  // B x (M_b, 4) target (cx, cy, w, h), normalised
};

// The matching of one image: K = min(Q, M_b) pairs, pred ascending (empty when M_b = 0).
struct ImageMatch {
  std::vector<int64_t> pred;    // (K,) query indices
  std::vector<int64_t> target;  // (K,) target indices
};

// cost[q, t] = cost_class * -p[q, label_t] + cost_bbox * |box_q - box_t|_1 (over cx, cy, w, h)
//            + cost_giou * -GIoU(xyxy(box_q), xyxy(box_t)),
// computed in double; the defaults are DETR's (set_cost_class 1, set_cost_bbox 5, set_cost_giou 2).
struct HungarianMatcher {
  double cost_class = 1.0, cost_bbox = 5.0, cost_giou = 2.0;

  // One min-cost matching per image, (B,). CHECK-fails on inconsistent shapes, a label out of range or a
  // non-finite cost (NaN predictions), naming the image.
  template <typename T>
  std::vector<ImageMatch> match(const MatcherInput<T>& in) const;

  // The cost matrix of image b, (Q, M_b) row-major.
  template <typename T>
  std::vector<double> cost_matrix(const MatcherInput<T>& in, int64_t b) const;
};

}  // namespace px::detr

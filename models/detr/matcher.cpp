// DETR's HungarianMatcher on the host (see matcher.h): cost matrices in double, one exact assignment per image.
#include "models/detr/matcher.h"

#include <cmath>
#include <utility>

#include "core/util/check.h"
#include "models/detr/box_ops.h"
#include "models/detr/linear_assignment.h"

namespace px::detr {
namespace {

template <typename T>
Box box_at(std::span<const T> boxes, int64_t i) {  // boxes (N, 4)
  return {double(boxes[4 * i]), double(boxes[4 * i + 1]), double(boxes[4 * i + 2]), double(boxes[4 * i + 3])};
}

template <typename T>
void check_input(const MatcherInput<T>& in) {
  const int64_t B = in.batch, Q = in.queries, C = in.classes;
  CHECK(B >= 0 && Q >= 0 && C > 0) << "matcher: batch " << B << ", queries " << Q << ", classes " << C;
  CHECK_EQ(static_cast<int64_t>(in.probs.size()), B * Q * C) << "matcher: probs must be (B, Q, C+1)";
  CHECK_EQ(static_cast<int64_t>(in.boxes.size()), B * Q * 4) << "matcher: boxes must be (B, Q, 4)";
  CHECK_EQ(static_cast<int64_t>(in.labels.size()), B) << "matcher: one label array per image";
  CHECK_EQ(static_cast<int64_t>(in.target_boxes.size()), B) << "matcher: one target box array per image";
  for (int64_t b = 0; b < B; ++b) {
    CHECK_EQ(in.target_boxes[b].size(), 4 * in.labels[b].size())
        << "matcher: image " << b << " has " << in.labels[b].size() << " labels, so its target boxes must be ("
        << in.labels[b].size() << ", 4)";
    for (const int64_t label : in.labels[b]) {
      CHECK(label >= 0 && label < C) << "matcher: image " << b << " has label " << label << " outside [0, " << C << ")";
    }
  }
}

// The cost matrix of image b, (Q, M_b), for a checked input.
template <typename T>
std::vector<double> image_cost(const HungarianMatcher& weights, const MatcherInput<T>& in, int64_t b) {
  const int64_t Q = in.queries, C = in.classes, M = static_cast<int64_t>(in.labels[b].size());
  const std::span<const T> probs = in.probs.subspan(b * Q * C, Q * C);  // (Q, C+1)
  const std::span<const T> boxes = in.boxes.subspan(b * Q * 4, Q * 4);  // (Q, 4)
  std::vector<Box> preds(Q), preds_xyxy(Q), targets(M), targets_xyxy(M);  // (Q,), (M,)
  for (int64_t q = 0; q < Q; ++q) {
    preds[q] = box_at(boxes, q);
    preds_xyxy[q] = cxcywh_to_xyxy_host(preds[q]);
  }
  for (int64_t t = 0; t < M; ++t) {
    targets[t] = box_at(in.target_boxes[b], t);
    targets_xyxy[t] = cxcywh_to_xyxy_host(targets[t]);
  }
  std::vector<double> cost(Q * M);  // (Q, M): the GIoU first, then the whole cost in place
  pairwise_generalized_iou_host(preds_xyxy, targets_xyxy, cost);
  for (int64_t q = 0; q < Q; ++q) {
    for (int64_t t = 0; t < M; ++t) {
      double l1 = 0.0;
      for (int k = 0; k < 4; ++k) l1 += std::fabs(preds[q][k] - targets[t][k]);
      const double p = probs[q * C + in.labels[b][t]];
      double& c = cost[q * M + t];
      c = weights.cost_bbox * l1 + weights.cost_class * -p + weights.cost_giou * -c;
      CHECK(std::isfinite(c)) << "matcher: image " << b << ", query " << q << ", target " << t << ": cost " << c
                              << " (non-finite predictions or targets?)";
    }
  }
  return cost;
}

}  // namespace

template <typename T>
std::vector<double> HungarianMatcher::cost_matrix(const MatcherInput<T>& in, int64_t b) const {
  check_input(in);
  CHECK(b >= 0 && b < in.batch) << "matcher: image " << b << " of " << in.batch;
  return image_cost(*this, in, b);
}

template <typename T>
std::vector<ImageMatch> HungarianMatcher::match(const MatcherInput<T>& in) const {
  check_input(in);
  std::vector<ImageMatch> out(in.batch);
  for (int64_t b = 0; b < in.batch; ++b) {
    const std::vector<double> cost = image_cost(*this, in, b);
    Assignment a = linear_sum_assignment(cost, in.queries, static_cast<int64_t>(in.labels[b].size()));
    out[b] = {std::move(a.rows), std::move(a.cols)};
  }
  return out;
}

template std::vector<ImageMatch> HungarianMatcher::match(const MatcherInput<float>&) const;
template std::vector<ImageMatch> HungarianMatcher::match(const MatcherInput<double>&) const;
template std::vector<double> HungarianMatcher::cost_matrix(const MatcherInput<float>&, int64_t) const;
template std::vector<double> HungarianMatcher::cost_matrix(const MatcherInput<double>&, int64_t) const;

}  // namespace px::detr

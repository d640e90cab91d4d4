// SetCriterion: DETR's training loss. Each decoder layer's predictions are matched one-to-one to the targets
// (Hungarian matching), then scored: weighted cross-entropy over every query, L1 and GIoU over the matched pairs.
#pragma once

#include <vector>

#include "data/detection_loader.h"
#include "models/detr/detr.h"
#include "models/detr/matcher.h"

namespace px::detr {

struct CriterionOptions {
  int64_t num_classes = 91;    // "no object" is class num_classes, the last logit
  double eos_coef = 0.1;       // its cross-entropy weight (every other class weighs 1)
  double loss_ce = 1, loss_bbox = 5, loss_giou = 2;  // loss weights
  HungarianMatcher matcher;    // matching cost weights (1, 5, 2)
};

// One decoder layer's loss terms, unweighted, and its matching; f32 (f64 for an f64 model). The reference's
// cross-entropy is the weighted mean ce_sum / class_weight_sum.
struct LayerLoss {
  Tensor ce_sum;    // 0-d: sum_n w_n CE_n over the B * Q queries, w_n = 1 for a matched query, eos_coef otherwise
  double class_weight_sum = 0;  // sum_n w_n
  Tensor l1_sum;    // 0-d: sum over matched pairs of |box - target|_1 (cx, cy, w, h)
  Tensor giou_sum;  // 0-d: sum over matched pairs of 1 - GIoU(box, target)
  std::vector<ImageMatch> matches;  // (B)
};

struct CriterionResult {
  // sum over layers of loss_ce * ce_sum * ce_scale + loss_bbox * l1_sum + loss_giou * giou_sum. With ce_scale = the
  // box count / class_weight_sum, divided by the box count it is the reference's total loss; DetrTask takes both
  // over every rank and micro-batch of an update, so every layout computes the same loss.
  Tensor loss_sum;
  std::vector<LayerLoss> layers;  // as the predictions
};

// GIoU of matching rows, robust to empty boxes: unions and enclosing areas below 1e-12 count as 1e-12, so a zero-size
// box gives a finite value and gradient rather than NaN.
// a, b (N, 4) normalised cx, cy, w, h -> (N)
Tensor paired_generalized_iou(const Tensor& a, const Tensor& b);

// sum_n w_n over an image's queries, known before matching: min(Q, M) matched queries weigh 1, the rest eos_coef.
double class_weight_sum(int64_t queries, int64_t targets, double eos_coef);

class SetCriterion {
 public:
  explicit SetCriterion(const CriterionOptions& options);

  // predictions: one per decoder layer (Detr::forward); targets (B) on the host.
  CriterionResult operator()(const std::vector<DetrPrediction>& predictions,
                             const std::vector<data::DetectionTarget>& targets, double ce_scale) const;
  // The matching and unweighted terms of one layer.
  LayerLoss layer_loss(const DetrPrediction& prediction, const std::vector<data::DetectionTarget>& targets) const;

  const CriterionOptions& options() const { return options_; }

 private:
  CriterionOptions options_;
};

}  // namespace px::detr

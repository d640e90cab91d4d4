// SetCriterion: the matching of each decoder layer on the host (softmax probabilities and boxes read back once
// per layer), and the weighted cross-entropy, L1 and GIoU terms as differentiable ops on the model's device.
#include "models/detr/criterion.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "core/ops/ops.h"

namespace px::detr {

namespace {

constexpr double kAreaFloor = 1e-12;

// (N, 4) cx, cy, w, h -> the (N, 1) columns x0, y0, x1, y1
std::array<Tensor, 4> corners(const Tensor& box) {
  const Tensor cx = narrow(box, 1, 0, 1), cy = narrow(box, 1, 1, 1);
  const Tensor half_w = narrow(box, 1, 2, 1) * 0.5, half_h = narrow(box, 1, 3, 1) * 0.5;
  return {cx - half_w, cy - half_h, cx + half_w, cy + half_h};
}

// A tensor's values on the host in f64, without a graph.
std::vector<double> host_f64(const Tensor& t) {
  NoGradGuard no_grad;
  return to_vector(t.detach());
}

}  // namespace

// giou = iou - (area_c - union) / area_c with iou = inter / union, area_c the smallest enclosing box's area
Tensor paired_generalized_iou(const Tensor& a, const Tensor& b) {
  CHECK(a.dim() == 2 && a.size(1) == 4 && a.shape() == b.shape())
      << "paired_generalized_iou: boxes must both be (N, 4), got " << a.str() << " and " << b.str();
  const auto [ax0, ay0, ax1, ay1] = corners(a);
  const auto [bx0, by0, bx1, by1] = corners(b);
  const Tensor area_a = (ax1 - ax0) * (ay1 - ay0), area_b = (bx1 - bx0) * (by1 - by0);
  const Tensor inter = relu(minimum(ax1, bx1) - maximum(ax0, bx0)) * relu(minimum(ay1, by1) - maximum(ay0, by0));
  const Tensor uni = area_a + area_b - inter;
  const Tensor floor = scalar_tensor(kAreaFloor, a.dtype(), a.device());
  const Tensor iou = inter / maximum(uni, floor);
  const Tensor area_c = relu(maximum(ax1, bx1) - minimum(ax0, bx0)) * relu(maximum(ay1, by1) - minimum(ay0, by0));
  return reshape(iou - (area_c - uni) / maximum(area_c, floor), {a.size(0)});
}

double class_weight_sum(int64_t queries, int64_t targets, double eos_coef) {
  const int64_t matched = std::min(queries, targets);
  return static_cast<double>(matched) + eos_coef * static_cast<double>(queries - matched);
}

SetCriterion::SetCriterion(const CriterionOptions& options) : options_(options) {
  CHECK_GT(options.num_classes, 0) << "SetCriterion: num_classes";
  CHECK(options.eos_coef >= 0) << "SetCriterion: eos_coef " << options.eos_coef;
}

LayerLoss SetCriterion::layer_loss(const DetrPrediction& prediction,
                                   const std::vector<data::DetectionTarget>& targets) const {
  const Tensor& logits = prediction.logits;  // (B, Q, C + 1)
  const int64_t batch = logits.size(0), queries = logits.size(1), classes = options_.num_classes + 1;
  CHECK(logits.dim() == 3 && logits.size(2) == classes)
      << "SetCriterion: logits " << logits.str() << " for " << options_.num_classes << " classes + no object";
  CHECK(prediction.boxes.dim() == 3 && prediction.boxes.size(0) == batch && prediction.boxes.size(1) == queries &&
        prediction.boxes.size(2) == 4)
      << "SetCriterion: boxes " << prediction.boxes.str() << " for logits " << logits.str();
  CHECK_EQ(static_cast<int64_t>(targets.size()), batch) << "SetCriterion: targets per image";
  const Device device = logits.device();
  const DType dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;  // losses in f32 (f64 for checks)

  // The matching, on the host in f64. Non-finite predictions (a diverged step, which the trainer skips) are
  // matched as zeros so the matcher sees finite costs; the loss itself stays non-finite.
  std::vector<double> probs, boxes = host_f64(prediction.boxes);
  {
    NoGradGuard no_grad;
    probs = to_vector(softmax(to_dtype(logits.detach(), DType::f64)));
  }
  for (std::vector<double>* v : {&probs, &boxes})
    for (double& x : *v)
      if (!std::isfinite(x)) x = 0.0;
  std::vector<std::vector<int64_t>> labels(batch);
  std::vector<std::vector<double>> target_boxes(batch);
  MatcherInput<double> in;
  in.batch = batch;
  in.queries = queries;
  in.classes = classes;
  in.probs = probs;
  in.boxes = boxes;
  for (int64_t b = 0; b < batch; ++b) {
    const data::DetectionTarget& t = targets[b];
    for (double v : to_vector(t.labels)) labels[b].push_back(static_cast<int64_t>(v));
    target_boxes[b] = to_vector(t.boxes);
    CHECK_EQ(target_boxes[b].size(), 4 * labels[b].size()) << "SetCriterion: image " << b << " boxes and labels";
    in.labels.emplace_back(labels[b]);
    in.target_boxes.emplace_back(target_boxes[b]);
  }
  LayerLoss loss;
  loss.matches = options_.matcher.match(in);

  // Classes: "no object" (weight eos_coef) everywhere but at the matched queries.
  std::vector<int64_t> target_class(static_cast<size_t>(batch * queries), options_.num_classes);
  std::vector<double> weight(target_class.size(), options_.eos_coef);
  std::vector<int64_t> matched_rows;
  std::vector<double> matched_boxes;
  for (int64_t b = 0; b < batch; ++b) {
    const ImageMatch& m = loss.matches[b];
    for (size_t k = 0; k < m.pred.size(); ++k) {
      const int64_t row = b * queries + m.pred[k], t = m.target[k];
      target_class[row] = labels[b][t];
      weight[row] = 1.0;
      matched_rows.push_back(row);
      matched_boxes.insert(matched_boxes.end(), target_boxes[b].begin() + 4 * t, target_boxes[b].begin() + 4 * t + 4);
    }
  }
  for (double w : weight) loss.class_weight_sum += w;
  const int64_t rows = batch * queries, matched = static_cast<int64_t>(matched_rows.size());

  // ce_sum = sum_n w_n CE(logits_n, class_n)
  const Tensor flat_logits = reshape(to_dtype(logits, dtype), {rows, classes});
  const Tensor per_query = cross_entropy(flat_logits, to_device(from_vector(target_class, {rows}), device), -100, 0.0,
                                         Reduction::none);
  const Tensor w = to_device(from_vector(weight, {rows}, dtype), device);
  loss.ce_sum = sum(per_query * w);

  if (matched == 0) {
    loss.l1_sum = zeros({}, dtype, device);
    loss.giou_sum = zeros({}, dtype, device);
    return loss;
  }
  // l1 = sum |pred - target| over the matched pairs' coordinates; giou = sum (1 - GIoU)
  const Tensor pred = index_select(reshape(to_dtype(prediction.boxes, dtype), {rows, 4}), 0,
                                   to_device(from_vector(matched_rows, {matched}), device));
  const Tensor target = to_device(from_vector(matched_boxes, {matched, 4}, dtype), device);
  const Tensor diff = pred - target;
  loss.l1_sum = sum(relu(diff) + relu(-diff));
  loss.giou_sum = add(neg(sum(paired_generalized_iou(pred, target))), static_cast<double>(matched));
  return loss;
}

CriterionResult SetCriterion::operator()(const std::vector<DetrPrediction>& predictions,
                                         const std::vector<data::DetectionTarget>& targets, double ce_scale) const {
  CHECK(!predictions.empty()) << "SetCriterion: no predictions";
  CriterionResult result;
  for (const DetrPrediction& p : predictions) {
    LayerLoss layer = layer_loss(p, targets);
    const Tensor term = layer.ce_sum * (options_.loss_ce * ce_scale) + layer.l1_sum * options_.loss_bbox +
                        layer.giou_sum * options_.loss_giou;
    result.loss_sum = result.loss_sum.defined() ? result.loss_sum + term : term;
    result.layers.push_back(std::move(layer));
  }
  return result;
}

}  // namespace px::detr

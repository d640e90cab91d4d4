// Box helpers for DETR (see box_ops.h): the host functions on box pairs in double.
#include "models/detr/box_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/util/check.h"

namespace px::detr {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The area of an xyxy box, NaN when a coordinate is not finite; CHECK: not inverted.
double checked_area(const Box& b) {
  if (!(std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) && std::isfinite(b[3]))) return kNaN;
  CHECK(b[2] >= b[0] && b[3] >= b[1]) << "inverted xyxy box (" << b[0] << ", " << b[1] << ", " << b[2] << ", "
                                      << b[3] << ")";
  return (b[2] - b[0]) * (b[3] - b[1]);
}

struct Overlap {
  double inter, uni;  // areas of the intersection and the union
};

Overlap overlap(const Box& a, double area_a, const Box& b, double area_b) {
  const double w = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double h = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = w * h;
  return {inter, area_a + area_b - inter};
}

double iou(const Overlap& o) { return o.uni > 0.0 ? o.inter / o.uni : 0.0; }

// GIoU of two boxes with finite areas.
double giou(const Box& a, double area_a, const Box& b, double area_b) {
  const Overlap o = overlap(a, area_a, b, area_b);
  const double hull = (std::max(a[2], b[2]) - std::min(a[0], b[0])) * (std::max(a[3], b[3]) - std::min(a[1], b[1]));
  return hull > 0.0 ? iou(o) - (hull - o.uni) / hull : iou(o);
}

}  // namespace

Box cxcywh_to_xyxy_host(const Box& b) {
  return {b[0] - 0.5 * b[2], b[1] - 0.5 * b[3], b[0] + 0.5 * b[2], b[1] + 0.5 * b[3]};
}

Box xyxy_to_cxcywh_host(const Box& b) { return {0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]), b[2] - b[0], b[3] - b[1]}; }

double box_iou_host(const Box& a, const Box& b) {
  const double area_a = checked_area(a), area_b = checked_area(b);
  if (std::isnan(area_a) || std::isnan(area_b)) return kNaN;
  return iou(overlap(a, area_a, b, area_b));
}

double generalized_iou_host(const Box& a, const Box& b) {
  const double area_a = checked_area(a), area_b = checked_area(b);
  if (std::isnan(area_a) || std::isnan(area_b)) return kNaN;
  return giou(a, area_a, b, area_b);
}

void pairwise_generalized_iou_host(std::span<const Box> a, std::span<const Box> b, std::span<double> out) {
  CHECK_EQ(out.size(), a.size() * b.size()) << "pairwise_generalized_iou_host: out must be (N, M)";
  std::vector<double> area_b(b.size());  // (M,)
  for (size_t j = 0; j < b.size(); ++j) area_b[j] = checked_area(b[j]);
  for (size_t i = 0; i < a.size(); ++i) {
    const double area_a = checked_area(a[i]);
    double* row = out.data() + i * b.size();
    for (size_t j = 0; j < b.size(); ++j) {
      row[j] = std::isnan(area_a) || std::isnan(area_b[j]) ? kNaN : giou(a[i], area_a, b[j], area_b[j]);
    }
  }
}

}  // namespace px::detr

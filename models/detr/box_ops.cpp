// Box helpers for DETR (see box_ops.h): the host functions on one box pair in double.
#include "models/detr/box_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/util/check.h"

namespace px::detr {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool finite(const Box& b) {
  return std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) && std::isfinite(b[3]);
}

double area(const Box& b) {
  CHECK(b[2] >= b[0] && b[3] >= b[1]) << "inverted xyxy box (" << b[0] << ", " << b[1] << ", " << b[2] << ", "
                                      << b[3] << ")";
  return (b[2] - b[0]) * (b[3] - b[1]);
}

struct Overlap {
  double inter, uni;  // areas of the intersection and the union
};

// a, b finite xyxy boxes.
Overlap overlap(const Box& a, const Box& b) {
  const double w = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double h = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = w * h;
  return {inter, area(a) + area(b) - inter};
}

double iou(const Overlap& o) { return o.uni > 0.0 ? o.inter / o.uni : 0.0; }

}  // namespace

Box cxcywh_to_xyxy_host(const Box& b) {
  return {b[0] - 0.5 * b[2], b[1] - 0.5 * b[3], b[0] + 0.5 * b[2], b[1] + 0.5 * b[3]};
}

Box xyxy_to_cxcywh_host(const Box& b) { return {0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]), b[2] - b[0], b[3] - b[1]}; }

double box_iou_host(const Box& a, const Box& b) {
  if (!finite(a) || !finite(b)) return kNaN;
  return iou(overlap(a, b));
}

double generalized_iou_host(const Box& a, const Box& b) {
  if (!finite(a) || !finite(b)) return kNaN;
  const Overlap o = overlap(a, b);
  const double hull = (std::max(a[2], b[2]) - std::min(a[0], b[0])) * (std::max(a[3], b[3]) - std::min(a[1], b[1]));
  return hull > 0.0 ? iou(o) - (hull - o.uni) / hull : iou(o);
}

}  // namespace px::detr

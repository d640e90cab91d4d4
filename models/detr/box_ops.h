// Box helpers for DETR: cxcywh <-> xyxy conversion, IoU and generalized IoU (Rezatofighi et al. 2019).
// The *_host functions work in double on the host (the matcher's costs).
#pragma once

#include <array>
#include <span>

namespace px::detr {

// One box, (4,): (cx, cy, w, h) or (x0, y0, x1, y1), as each function's name says.
using Box = std::array<double, 4>;

Box cxcywh_to_xyxy_host(const Box& b);
Box xyxy_to_cxcywh_host(const Box& b);

// IoU and GIoU of two xyxy boxes. GIoU = IoU - (hull - union) / hull, hull = the smallest box around both.
// Degenerate cases (the reference divides by zero there and gets NaN; these values are defined instead):
//  * union area 0 (both boxes have zero width or height): IoU = 0;
//  * hull area 0 (both boxes lie on one horizontal or vertical line or point): GIoU = IoU (= 0);
//  * any NaN or infinite coordinate: NaN (never a trap; the matcher rejects a NaN cost);
//  * an inverted box (x1 < x0 or y1 < y0) is a CHECK failure, as the reference asserts.
double box_iou_host(const Box& a, const Box& b);
double generalized_iou_host(const Box& a, const Box& b);

// out[i, j] = generalized_iou_host(a[i], b[j]), each box checked once. a (N,), b (M,) xyxy; out (N, M).
void pairwise_generalized_iou_host(std::span<const Box> a, std::span<const Box> b, std::span<double> out);

}  // namespace px::detr

// COCO box detection metrics: pycocotools' COCOeval (iouType "bbox", default parameters) rewritten in C++,
// the 12 summary numbers and summarize()'s table, equal to pycocotools' own; DETR's box conversion.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace px::detr {

// One ground-truth annotation.
struct CocoAnnotation {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in pixels (x, y: top-left corner)
  double area = 0;               // the annotation's `area` field: it alone decides the area range
  bool iscrowd = false;          // crowd region: ignored, absorbs any number of detections
};

struct CocoGroundTruth {
  std::vector<int64_t> image_ids;     // (I,) every image evaluated, with or without annotations
  std::vector<int64_t> category_ids;  // (K,) every category evaluated, with or without annotations
  // In file order, which breaks ties between equally good matches. Annotations whose image or category is
  // not listed above are left out, as pycocotools leaves them out.
  std::vector<CocoAnnotation> annotations;
};

// One detection (a row of a COCO results file). Its area is w * h, as pycocotools' loadRes sets it.
struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in pixels
  double score = 0;
};

inline constexpr int kCocoNumStats = 12;

// pycocotools' COCOeval.stats: AP@[.50:.95], AP50, AP75, AP small/medium/large, AR@1, AR@10, AR@100,
// AR small/medium/large (maxDets 100 where not named). -1 where pycocotools gives -1 (no ground truth in
// any category for that area range).
struct CocoStats {
  std::array<double, kCocoNumStats> values{};
  std::string summary;  // the 12 lines summarize() prints, each ending in '\n'
};

// Short names of the 12 stats, in order: "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
// "AR100", "ARs", "ARm", "ARl".
const std::array<const char*, kCocoNumStats>& coco_stat_names();

// The IoU thresholds .50:.05:.95 and recall thresholds 0:.01:1 bit for bit as numpy.linspace makes them.
const std::array<double, 10>& coco_iou_thresholds();
const std::array<double, 101>& coco_recall_thresholds();

// Evaluates `detections` against `ground_truth` exactly as pycocotools' COCOeval evaluate(), accumulate()
// and summarize() do. A detection on an image that ground_truth does not list is a DataError (pycocotools'
// loadRes asserts); detections of unlisted categories are left out. Any box, score or area, NaN and
// negative sizes included, is evaluated as pycocotools evaluates it. Time O(n log n) in the detections
// per category (plus detections x annotations within each image and category).
CocoStats evaluate_coco(const CocoGroundTruth& ground_truth, const std::vector<CocoDetection>& detections);

// DETR's box, normalised (cx, cy, w, h) on an image of height x width pixels, as COCO's x, y, w, h in
// pixels the way DETR's reference converts it: corners (cx -+ w/2, cy -+ h/2) scaled by the image size,
// then w = x1 - x0 and h = y1 - y0 (computed in double).
std::array<double, 4> cxcywh_to_xywh_pixels(const std::array<float, 4>& cxcywh, int64_t image_height,
                                            int64_t image_width);

}  // namespace px::detr

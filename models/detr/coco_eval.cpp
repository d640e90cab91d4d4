// COCO box evaluation: per (image, category) greedy matching at 10 IoU thresholds and 4 area ranges, per
// category precision/recall over the score-sorted detections of all images, then the 12 means and the table.
#include "models/detr/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <optional>

#include "core/util/check.h"
#include "core/util/error.h"

// This file is compiled with -ffp-contract=off (models/CMakeLists.txt): every product and sum is rounded on
// its own, as numpy and pycocotools' C code round them, so IoUs and thresholds agree to the bit and a
// detection whose IoU equals a threshold matches here exactly when it matches there.

namespace px::detr {
namespace {

constexpr int kNumIou = 10, kNumRecall = 101, kNumAreas = 4, kNumMaxDets = 3;
constexpr std::array<int, kNumMaxDets> kMaxDets = {1, 10, 100};
constexpr int kMaxDet = kMaxDets[kNumMaxDets - 1];  // detections kept per image and category
constexpr int kFlagsPerDet = kNumAreas * kNumIou;

struct AreaRange {
  const char* label;
  double lo, hi;  // inclusive both ends
};
constexpr std::array<AreaRange, kNumAreas> kAreas = {
    {{"all", 0, 1e10}, {"small", 0, 32 * 32}, {"medium", 32 * 32, 96 * 96}, {"large", 96 * 96, 1e10}}};

// A detection's outcome at one (area range, IoU threshold): matched to a ground truth, and/or ignored
// (matched to an ignored ground truth, or unmatched with its area outside the range).
constexpr uint8_t kMatched = 1, kIgnored = 2;

// numpy.linspace(start, stop, N): i * ((stop - start) / (N - 1)) + start, the last one set to stop.
template <size_t N>
std::array<double, N> linspace(double start, double stop) {
  std::array<double, N> y{};
  const double step = (stop - start) / static_cast<double>(N - 1);
  for (size_t i = 0; i < N; ++i) y[i] = static_cast<double>(i) * step + start;
  y[N - 1] = stop;
  return y;
}

// numpy's order of -score (argsort, kind='mergesort', used with a stable sort): higher scores first, NaN last.
bool score_before(double a, double b) { return std::isnan(b) ? !std::isnan(a) : a > b; }

// maskApi.c's bbIou for one pair: x + w is the right edge (no +1); a crowd's union is the detection's area.
double box_iou(const std::array<double, 4>& d, const std::array<double, 4>& g, bool crowd) {
  const double w = std::fmin(d[2] + d[0], g[2] + g[0]) - std::fmax(d[0], g[0]);
  if (w <= 0) return 0;
  const double h = std::fmin(d[3] + d[1], g[3] + g[1]) - std::fmax(d[1], g[1]);
  if (h <= 0) return 0;
  const double inter = w * h;
  const double det_area = d[2] * d[3];
  const double uni = crowd ? det_area : det_area + g[2] * g[3] - inter;
  return inter / uni;
}

// numpy's pairwise summation of one inner-loop call: 8 accumulators up to 128 elements, halves above.
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += a[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    std::copy(a, a + 8, r);
    size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += a[i];
    return s;
  }
  size_t half = n / 2;
  half -= half % 8;
  return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

// numpy 1.24's float64 add.reduce over a contiguous array: 0, plus the pairwise sum of each 8192-element
// buffer (NPY_BUFSIZE) in turn; so a mean of the same values in the same order is the same double.
double numpy_sum(const double* a, size_t n) {
  constexpr size_t kBuffer = 8192;
  double s = 0;
  for (size_t i = 0; i < n; i += kBuffer) s += pairwise_sum(a + i, std::min(kBuffer, n - i));
  return s;
}

// Index of `id` in the sorted unique `ids`, or -1.
int64_t index_of(const std::vector<int64_t>& ids, int64_t id) {
  const auto it = std::lower_bound(ids.begin(), ids.end(), id);
  return it != ids.end() && *it == id ? it - ids.begin() : -1;
}

std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// An annotation or detection placed by (category, image) index; `index` points into the caller's list.
struct Placed {
  int64_t cat = 0, img = 0;
  size_t index = 0;
};

// The evaluation state of one category: its detections over all images (image order, then rank) with their
// outcome flags, and its count of non-ignored ground truths per area range.
struct CategoryEval {
  std::vector<double> scores;   // (n,) detection scores
  std::vector<int32_t> ranks;   // (n,) rank by score within its image, < kMaxDet
  std::vector<uint8_t> flags;   // (n, kNumAreas, kNumIou) kMatched | kIgnored
  std::array<int64_t, kNumAreas> num_gt{};  // non-ignored ground truths per area range

  void clear() {
    scores.clear();
    ranks.clear();
    flags.clear();
    num_gt.fill(0);
  }
};

// evaluate_image's buffers, kept across calls.
struct MatchScratch {
  std::vector<double> ious;     // (D, G) in the ground truths' file order
  std::vector<uint8_t> ignored;  // (G,) at one area range
  std::vector<size_t> order;    // (G,) ground truths, ignored ones last (stable)
  std::vector<uint8_t> taken;   // (T, G) by position in `order`: matched at that threshold
};

// pycocotools' evaluateImg for one image and category at every area range: `gts` in file order, `dets`
// sorted by score and cut to kMaxDet. Appends the detections' scores, ranks and flags to `out`.
void evaluate_image(const std::vector<const CocoAnnotation*>& gts, const std::vector<const CocoDetection*>& dets,
                    const std::array<double, kNumIou>& iou_thresholds, MatchScratch& scratch, CategoryEval& out) {
  const size_t G = gts.size(), D = dets.size();
  CHECK_LE(D, size_t(kMaxDet)) << "coco eval: detections of one image and category are cut before matching";
  std::vector<double>& ious = scratch.ious;
  ious.resize(D * G);
  for (size_t d = 0; d < D; ++d)
    for (size_t g = 0; g < G; ++g) ious[d * G + g] = box_iou(dets[d]->bbox, gts[g]->bbox, gts[g]->iscrowd);

  const size_t first = out.flags.size();
  out.flags.resize(first + D * kFlagsPerDet, 0);
  for (size_t d = 0; d < D; ++d) {
    out.scores.push_back(dets[d]->score);
    out.ranks.push_back(static_cast<int32_t>(d));
  }
  std::vector<uint8_t>& ignored = scratch.ignored;
  std::vector<size_t>& order = scratch.order;
  std::vector<uint8_t>& taken = scratch.taken;
  ignored.resize(G);
  taken.resize(kNumIou * G);
  for (int a = 0; a < kNumAreas; ++a) {
    const AreaRange& range = kAreas[a];
    for (size_t g = 0; g < G; ++g)
      ignored[g] = gts[g]->iscrowd || gts[g]->area < range.lo || gts[g]->area > range.hi;
    order.clear();
    for (size_t g = 0; g < G; ++g)
      if (!ignored[g]) order.push_back(g);
    out.num_gt[a] += static_cast<int64_t>(order.size());
    for (size_t g = 0; g < G; ++g)
      if (ignored[g]) order.push_back(g);
    std::fill(taken.begin(), taken.end(), 0);

    for (int t = 0; t < kNumIou; ++t) {
      for (size_t d = 0; d < D; ++d) {
        // The best available ground truth; non-ignored ones (first in `order`) win over ignored ones, and
        // among equal IoUs the later one wins, as in pycocotools' loop.
        double best = std::min(iou_thresholds[t], 1 - 1e-10);
        int64_t m = -1;
        for (size_t j = 0; j < G; ++j) {
          const size_t g = order[j];
          if (taken[t * G + j] && !gts[g]->iscrowd) continue;
          if (m > -1 && !ignored[order[m]] && ignored[g]) break;
          if (ious[d * G + g] < best) continue;
          best = ious[d * G + g];
          m = static_cast<int64_t>(j);
        }
        uint8_t& flag = out.flags[first + d * kFlagsPerDet + a * kNumIou + t];
        if (m == -1) {
          const double area = dets[d]->bbox[2] * dets[d]->bbox[3];
          if (area < range.lo || area > range.hi) flag = kIgnored;
          continue;
        }
        taken[t * G + m] = 1;
        flag = kMatched | (ignored[order[m]] ? kIgnored : 0);
      }
    }
  }
}

// pycocotools' accumulate and summarize state: precision at maxDets 100 and recall at every maxDets.
class Accumulator {
 public:
  explicit Accumulator(size_t num_categories)
      : K_(num_categories),
        precision_(size_t(kNumAreas) * kNumIou * kNumRecall * K_, -1.0),
        recall_(size_t(kNumAreas) * kNumMaxDets * kNumIou * K_, -1.0) {}

  // One category's precision and recall: its detections of all images sorted by score (stable, so ties go by
  // image order, then rank), cumulative true and false positives. Cutting each image to maxDets 1 or 10
  // leaves a subsequence of the same order, whose recall is its true positives over the ground truths.
  void add_category(size_t k, const CategoryEval& cat, const std::array<double, kNumRecall>& recall_thresholds) {
    const size_t n = cat.scores.size();
    CHECK_EQ(cat.flags.size(), n * kFlagsPerDet) << "coco eval: category " << k;
    sorted_.resize(n);
    std::iota(sorted_.begin(), sorted_.end(), size_t(0));
    std::stable_sort(sorted_.begin(), sorted_.end(),
                     [&](size_t i, size_t j) { return score_before(cat.scores[i], cat.scores[j]); });
    flags_.resize(n * kFlagsPerDet);  // (A, T, n) in score order, so each pass below reads contiguously
    for (size_t p = 0; p < n; ++p)
      for (int at = 0; at < kFlagsPerDet; ++at) flags_[at * n + p] = cat.flags[sorted_[p] * kFlagsPerDet + at];
    rc_.resize(n);
    pr_.resize(n);
    for (int a = 0; a < kNumAreas; ++a) {
      if (cat.num_gt[a] == 0) continue;  // no ground truth in this range: stays -1
      const double num_gt = static_cast<double>(cat.num_gt[a]);
      for (int t = 0; t < kNumIou; ++t) {
        const uint8_t* f = &flags_[size_t(a * kNumIou + t) * n];
        std::array<int64_t, kNumMaxDets> tp_within{};  // true positives ranked below each maxDets
        int64_t fp = 0;
        int64_t& tp = tp_within[kNumMaxDets - 1];  // every rank is below the last maxDets
        for (size_t p = 0; p < n; ++p) {
          if (!(f[p] & kIgnored)) {
            if (f[p] & kMatched) {
              ++tp;
              for (int mi = 0; mi < kNumMaxDets - 1; ++mi) tp_within[mi] += cat.ranks[sorted_[p]] < kMaxDets[mi];
            } else {
              ++fp;
            }
          }
          const double tpd = static_cast<double>(tp), fpd = static_cast<double>(fp);
          rc_[p] = tpd / num_gt;
          pr_[p] = tpd / (fpd + tpd + std::numeric_limits<double>::epsilon());
        }
        for (int mi = 0; mi < kNumMaxDets; ++mi)
          recall_[((a * kNumMaxDets + mi) * kNumIou + t) * K_ + k] = static_cast<double>(tp_within[mi]) / num_gt;
        interpolate(a, t, k, recall_thresholds);
      }
    }
  }

  // summarize()'s mean over the categories with ground truth: AP over (IoU, recall, category) or AR over
  // (IoU, category), numpy's order and summation; -1 when nothing is > -1.
  double mean(bool ap, std::optional<double> iou, int area, int max_dets,
              const std::array<double, kNumIou>& iou_thresholds) const {
    const int mi = static_cast<int>(std::find(kMaxDets.begin(), kMaxDets.end(), max_dets) - kMaxDets.begin());
    CHECK_LT(mi, kNumMaxDets) << "coco eval: maxDets " << max_dets;
    std::vector<double> values;
    for (int t = 0; t < kNumIou; ++t) {
      if (iou && !(*iou == iou_thresholds[t])) continue;  // np.where(iouThr == p.iouThrs): exact equality
      const double* s = ap ? &precision_[size_t(area * kNumIou + t) * kNumRecall * K_]
                           : &recall_[size_t((area * kNumMaxDets + mi) * kNumIou + t) * K_];
      const size_t count = ap ? kNumRecall * K_ : K_;
      for (size_t i = 0; i < count; ++i)
        if (s[i] > -1) values.push_back(s[i]);
    }
    if (values.empty()) return -1;
    return numpy_sum(values.data(), values.size()) / static_cast<double>(values.size());
  }

 private:
  // pr_ made non-increasing from the right, read at the first detection whose rc_ reaches each recall
  // threshold (searchsorted 'left'); 0 past the last detection.
  void interpolate(int a, int t, size_t k, const std::array<double, kNumRecall>& recall_thresholds) {
    const size_t nd = pr_.size();
    for (size_t i = nd; i-- > 1;)
      if (pr_[i] > pr_[i - 1]) pr_[i - 1] = pr_[i];
    double* q = &precision_[size_t(a * kNumIou + t) * kNumRecall * K_];
    size_t i = 0;
    for (int r = 0; r < kNumRecall; ++r) {
      while (i < nd && rc_[i] < recall_thresholds[r]) ++i;
      q[r * K_ + k] = i < nd ? pr_[i] : 0;
    }
  }

  size_t K_;
  std::vector<double> precision_;  // (A, T, R, K) at maxDets 100; -1: no ground truth
  std::vector<double> recall_;     // (A, M, T, K); -1: no ground truth
  // One category's scratch: detection order by score, flags in that order, recall and precision.
  std::vector<size_t> sorted_;  // (n,)
  std::vector<uint8_t> flags_;  // (A, T, n)
  std::vector<double> rc_, pr_;  // (n,) each, at one (area range, IoU threshold)
};

// One line of summarize()'s table.
std::string summary_line(bool ap, std::optional<double> iou, int area, int max_dets, double value,
                         const std::array<double, kNumIou>& iou_thresholds) {
  char iou_text[32];
  if (iou)
    std::snprintf(iou_text, sizeof iou_text, "%0.2f", *iou);
  else
    std::snprintf(iou_text, sizeof iou_text, "%0.2f:%0.2f", iou_thresholds.front(), iou_thresholds.back());
  char line[160];
  std::snprintf(line, sizeof line, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                ap ? "Average Precision" : "Average Recall", ap ? "(AP)" : "(AR)", iou_text, kAreas[area].label,
                max_dets, value);
  return line;
}

}  // namespace

const std::array<const char*, kCocoNumStats>& coco_stat_names() {
  static const std::array<const char*, kCocoNumStats> names = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};
  return names;
}

const std::array<double, 10>& coco_iou_thresholds() {
  static const std::array<double, kNumIou> t = linspace<kNumIou>(.5, 0.95);
  return t;
}

const std::array<double, 101>& coco_recall_thresholds() {
  static const std::array<double, kNumRecall> t = linspace<kNumRecall>(.0, 1.00);
  return t;
}

CocoStats evaluate_coco(const CocoGroundTruth& ground_truth, const std::vector<CocoDetection>& detections) {
  const std::vector<int64_t> images = sorted_unique(ground_truth.image_ids);
  const std::vector<int64_t> categories = sorted_unique(ground_truth.category_ids);
  const std::array<double, kNumIou>& iou_thresholds = coco_iou_thresholds();

  // Annotations and detections by (category, image); annotations keep file order within a pair, detections
  // go by score (stable) within a pair.
  std::vector<Placed> gts, dets;
  for (size_t i = 0; i < ground_truth.annotations.size(); ++i) {
    const CocoAnnotation& a = ground_truth.annotations[i];
    const int64_t img = index_of(images, a.image_id), cat = index_of(categories, a.category_id);
    if (img >= 0 && cat >= 0) gts.push_back({cat, img, i});
  }
  for (size_t i = 0; i < detections.size(); ++i) {
    const CocoDetection& d = detections[i];
    const int64_t img = index_of(images, d.image_id);
    if (img < 0)
      throw DataError("coco eval: detection " + std::to_string(i) + " is on image " + std::to_string(d.image_id) +
                      ", which the ground truth does not list (pycocotools: 'Results do not correspond to current "
                      "coco set')");
    const int64_t cat = index_of(categories, d.category_id);
    if (cat >= 0) dets.push_back({cat, img, i});
  }
  const auto pair_before = [](const Placed& x, const Placed& y) {
    return x.cat != y.cat ? x.cat < y.cat : x.img < y.img;
  };
  std::stable_sort(gts.begin(), gts.end(), pair_before);
  std::stable_sort(dets.begin(), dets.end(), [&](const Placed& x, const Placed& y) {
    if (x.cat != y.cat || x.img != y.img) return pair_before(x, y);
    return score_before(detections[x.index].score, detections[y.index].score);
  });

  Accumulator acc(categories.size());
  CategoryEval cat_eval;
  MatchScratch scratch;
  std::vector<const CocoAnnotation*> pair_gts;
  std::vector<const CocoDetection*> pair_dets;
  size_t gi = 0, di = 0;
  for (int64_t k = 0; k < static_cast<int64_t>(categories.size()); ++k) {
    cat_eval.clear();
    while ((gi < gts.size() && gts[gi].cat == k) || (di < dets.size() && dets[di].cat == k)) {
      int64_t img = std::numeric_limits<int64_t>::max();
      if (gi < gts.size() && gts[gi].cat == k) img = gts[gi].img;
      if (di < dets.size() && dets[di].cat == k) img = std::min(img, dets[di].img);
      pair_gts.clear();
      pair_dets.clear();
      for (; gi < gts.size() && gts[gi].cat == k && gts[gi].img == img; ++gi)
        pair_gts.push_back(&ground_truth.annotations[gts[gi].index]);
      for (; di < dets.size() && dets[di].cat == k && dets[di].img == img; ++di)
        if (pair_dets.size() < size_t(kMaxDet)) pair_dets.push_back(&detections[dets[di].index]);
      evaluate_image(pair_gts, pair_dets, iou_thresholds, scratch, cat_eval);
    }
    acc.add_category(static_cast<size_t>(k), cat_eval, coco_recall_thresholds());
  }
  CHECK(gi == gts.size() && di == dets.size()) << "coco eval: " << gts.size() - gi << " annotations and "
                                               << dets.size() - di << " detections were not visited";

  // summarize(): (AP?, IoU threshold or all, area range, maxDets) per stat.
  struct Stat {
    bool ap;
    std::optional<double> iou;
    int area, max_dets;
  };
  const std::array<Stat, kCocoNumStats> stats = {{{true, std::nullopt, 0, 100},
                                                  {true, .5, 0, 100},
                                                  {true, .75, 0, 100},
                                                  {true, std::nullopt, 1, 100},
                                                  {true, std::nullopt, 2, 100},
                                                  {true, std::nullopt, 3, 100},
                                                  {false, std::nullopt, 0, 1},
                                                  {false, std::nullopt, 0, 10},
                                                  {false, std::nullopt, 0, 100},
                                                  {false, std::nullopt, 1, 100},
                                                  {false, std::nullopt, 2, 100},
                                                  {false, std::nullopt, 3, 100}}};
  CocoStats out;
  for (int s = 0; s < kCocoNumStats; ++s) {
    const Stat& st = stats[s];
    out.values[s] = acc.mean(st.ap, st.iou, st.area, st.max_dets, iou_thresholds);
    out.summary += summary_line(st.ap, st.iou, st.area, st.max_dets, out.values[s], iou_thresholds);
  }
  return out;
}

std::array<double, 4> cxcywh_to_xywh_pixels(const std::array<float, 4>& cxcywh, int64_t image_height,
                                            int64_t image_width) {
  CHECK(image_height > 0 && image_width > 0) << "cxcywh_to_xywh_pixels: image size " << image_height << "x"
                                             << image_width;
  const double cx = cxcywh[0], cy = cxcywh[1], w = cxcywh[2], h = cxcywh[3];
  const double W = static_cast<double>(image_width), H = static_cast<double>(image_height);
  const double x0 = (cx - 0.5 * w) * W, y0 = (cy - 0.5 * h) * H;
  const double x1 = (cx + 0.5 * w) * W, y1 = (cy + 0.5 * h) * H;
  return {x0, y0, x1 - x0, y1 - y0};
}

}  // namespace px::detr

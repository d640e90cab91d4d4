// models/detr/ host matching: linear_sum_assignment against brute force and scipy, the host box ops against
// torch and on degenerate boxes, and HungarianMatcher's costs and matches against tests/oracle/gen_matcher.py.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "models/detr/box_ops.h"
#include "models/detr/linear_assignment.h"
#include "models/detr/matcher.h"
#include "tests/common/pxt.h"

namespace px::detr {
namespace {

using test::PxtFile;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const PxtFile& oracle() {
  static const PxtFile file("matcher.pxt");
  return file;
}

template <typename T>
std::span<const T> span_of(const Tensor& t) {
  return {t.data<T>(), static_cast<size_t>(t.numel())};
}

std::vector<int64_t> vec_of(const Tensor& t) {
  const std::span<const int64_t> s = span_of<int64_t>(t);
  return {s.begin(), s.end()};
}

// Sum of the assigned costs, in double.
template <typename T>
double total(std::span<const T> cost, int64_t cols, const Assignment& a) {
  double sum = 0.0;
  for (size_t k = 0; k < a.rows.size(); ++k) sum += cost[a.rows[k] * cols + a.cols[k]];
  return sum;
}

// min(rows, cols) pairs, rows strictly ascending, every index in range and every column used once.
::testing::AssertionResult is_assignment(const Assignment& a, int64_t rows, int64_t cols) {
  const size_t k = static_cast<size_t>(std::min(rows, cols));
  if (a.rows.size() != k || a.cols.size() != k) return ::testing::AssertionFailure() << a.rows.size() << " pairs";
  std::vector<bool> used(cols, false);
  for (size_t i = 0; i < k; ++i) {
    if (a.rows[i] < 0 || a.rows[i] >= rows || (i > 0 && a.rows[i] <= a.rows[i - 1]))
      return ::testing::AssertionFailure() << "row " << a.rows[i] << " at " << i;
    if (a.cols[i] < 0 || a.cols[i] >= cols || used[a.cols[i]])
      return ::testing::AssertionFailure() << "column " << a.cols[i] << " at " << i;
    used[a.cols[i]] = true;
  }
  return ::testing::AssertionSuccess();
}

// The minimum over every assignment, by trying them all: each row of the shorter side in turn takes each free
// column of the longer one.
double brute_force_min(const std::vector<double>& c, int64_t rows, int64_t cols) {
  const bool tall = rows > cols;
  const int64_t n = tall ? cols : rows, m = tall ? rows : cols;
  auto at = [&](int64_t i, int64_t j) { return tall ? c[j * cols + i] : c[i * cols + j]; };
  std::vector<bool> used(m, false);
  double best = kInf;
  auto search = [&](auto&& self, int64_t i, double sum) -> void {
    if (i == n) {
      best = std::min(best, sum);
      return;
    }
    for (int64_t j = 0; j < m; ++j) {
      if (used[j]) continue;
      used[j] = true;
      self(self, i + 1, sum + at(i, j));
      used[j] = false;
    }
  };
  search(search, 0, 0.0);
  return n == 0 ? 0.0 : best;
}

// Every shape up to 6 x 6 (both orientations), `trials` matrices each from draw(rng).
template <typename Draw>
void against_brute_force(int trials, Draw draw, double tol) {
  std::mt19937_64 rng(42);
  for (int64_t rows = 0; rows <= 6; ++rows) {
    for (int64_t cols = 0; cols <= 6; ++cols) {
      for (int trial = 0; trial < trials; ++trial) {
        std::vector<double> c(rows * cols);
        for (double& x : c) x = draw(rng);
        const Assignment a = linear_sum_assignment(std::span<const double>(c), rows, cols);
        const std::string where = std::to_string(rows) + "x" + std::to_string(cols) + " trial " + std::to_string(trial);
        ASSERT_TRUE(is_assignment(a, rows, cols)) << where;
        EXPECT_NEAR(total(std::span<const double>(c), cols, a), brute_force_min(c, rows, cols), tol) << where;
        // Deterministic: the same matrix gives the same pairs, and so does its f32 copy when exact in f32.
        const Assignment again = linear_sum_assignment(std::span<const double>(c), rows, cols);
        EXPECT_EQ(a.cols, again.cols) << where;
        const std::vector<float> cf(c.begin(), c.end());
        if (std::equal(c.begin(), c.end(), cf.begin())) {
          EXPECT_EQ(a.cols, linear_sum_assignment(std::span<const float>(cf), rows, cols).cols) << where;
        }
      }
    }
  }
}

TEST(LinearSumAssignment, MatchesBruteForceOnRandomCosts) {
  std::uniform_real_distribution<double> u(-10.0, 10.0);
  against_brute_force(40, [&](std::mt19937_64& rng) { return u(rng); }, 1e-12);
}

TEST(LinearSumAssignment, MatchesBruteForceWithTies) {
  // Integer costs from {0, 1, 2}: many optimal assignments; the total must still be the minimum, exactly.
  std::uniform_int_distribution<int> u(0, 2);
  against_brute_force(40, [&](std::mt19937_64& rng) { return double(u(rng)); }, 0.0);
}

TEST(LinearSumAssignment, EmptyAndVectorShapes) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{0, 0}, {0, 5}, {5, 0}}) {
    const Assignment a = linear_sum_assignment(std::span<const double>(), rows, cols);
    EXPECT_TRUE(a.rows.empty() && a.cols.empty()) << rows << "x" << cols;
  }
  const std::vector<double> v = {3.0, -1.0, 4.0, 1.0, -5.0, 9.0};
  const Assignment wide = linear_sum_assignment(std::span<const double>(v), 1, 6);  // 1 x 6: the smallest
  EXPECT_EQ(wide.rows, std::vector<int64_t>{0});
  EXPECT_EQ(wide.cols, std::vector<int64_t>{4});
  const Assignment tall = linear_sum_assignment(std::span<const double>(v), 6, 1);  // 6 x 1: the same, by row
  EXPECT_EQ(tall.rows, std::vector<int64_t>{4});
  EXPECT_EQ(tall.cols, std::vector<int64_t>{0});
}

TEST(LinearSumAssignment, InfiniteCostsForbidPairs) {
  // +inf marks a forbidden pair: the only finite assignment of this matrix is (0, 1), (1, 0), (2, 2).
  const std::vector<double> c = {kInf, 1.0, 0.0, 2.0, kInf, kInf, kInf, kInf, 3.0};
  const Assignment a = linear_sum_assignment(std::span<const double>(c), 3, 3);
  EXPECT_EQ(a.cols, (std::vector<int64_t>{1, 0, 2}));
}

TEST(LinearSumAssignmentDeathTest, RejectsInvalidAndInfeasibleCosts) {
  const std::vector<double> nan = {1.0, kNaN, 2.0, 3.0}, minus_inf = {1.0, 2.0, -kInf, 3.0};
  EXPECT_DEATH(linear_sum_assignment(std::span<const double>(nan), 2, 2), "invalid cost nan at \\(0, 1\\)");
  EXPECT_DEATH(linear_sum_assignment(std::span<const double>(minus_inf), 2, 2), "invalid cost -inf at \\(1, 0\\)");
  // Rows 0 and 1 can only use column 0.
  const std::vector<double> infeasible = {1.0, kInf, 2.0, kInf};
  EXPECT_DEATH(linear_sum_assignment(std::span<const double>(infeasible), 2, 2), "cost matrix is infeasible");
  EXPECT_DEATH(linear_sum_assignment(std::span<const double>(nan), 2, 3), "wrong size");
}

template <typename T>
void expect_scipy_case(const std::string& p) {
  const Tensor& cost = oracle().get(p + "cost");
  const int64_t rows = cost.shape()[0], cols = cost.shape()[1];
  const Assignment a = linear_sum_assignment(span_of<T>(cost), rows, cols);
  ASSERT_TRUE(is_assignment(a, rows, cols)) << p;
  const double expected = oracle().get(p + "total").item();
  EXPECT_NEAR(total(span_of<T>(cost), cols, a), expected, 1e-9 * std::fabs(expected)) << p;
  if (oracle().get(p + "unique").item() != 0.0) {  // continuous costs: the optimum is unique
    EXPECT_EQ(a.rows, vec_of(oracle().get(p + "rows"))) << p;
    EXPECT_EQ(a.cols, vec_of(oracle().get(p + "cols"))) << p;
  }
}

TEST(LinearSumAssignment, MatchesScipy) {
  int cases = 0;
  for (; oracle().has("lsa/" + std::to_string(cases) + "/cost"); ++cases) {
    const std::string p = "lsa/" + std::to_string(cases) + "/";
    if (oracle().get(p + "cost").dtype() == DType::f32) {
      expect_scipy_case<float>(p);
    } else {
      expect_scipy_case<double>(p);
    }
  }
  EXPECT_GE(cases, 16);
}

TEST(BoxOps, ConversionsRoundTrip) {
  const Box cxcywh = {0.5, 0.25, 0.2, 0.1};
  const Box xyxy = cxcywh_to_xyxy_host(cxcywh);
  EXPECT_DOUBLE_EQ(xyxy[0], 0.4);
  EXPECT_DOUBLE_EQ(xyxy[1], 0.2);
  EXPECT_DOUBLE_EQ(xyxy[2], 0.6);
  EXPECT_DOUBLE_EQ(xyxy[3], 0.3);
  const Box back = xyxy_to_cxcywh_host(xyxy);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(back[k], cxcywh[k], 1e-15) << k;
}

std::vector<Box> boxes_of(const Tensor& t) {  // t (N, 4)
  std::vector<Box> out(t.shape()[0]);
  for (size_t i = 0; i < out.size(); ++i) std::copy_n(t.data<double>() + 4 * i, 4, out[i].begin());
  return out;
}

TEST(BoxOps, IouAndGiouMatchTorch) {
  const std::vector<Box> a = boxes_of(oracle().get("giou/a")), b = boxes_of(oracle().get("giou/b"));
  const std::span<const double> iou = span_of<double>(oracle().get("giou/iou"));    // (N,)
  const std::span<const double> giou = span_of<double>(oracle().get("giou/giou"));  // (N, N)
  const size_t n = a.size();
  std::vector<double> pairwise(n * n);
  pairwise_generalized_iou_host(a, b, pairwise);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(box_iou_host(a[i], b[i]), iou[i], 1e-14) << "pair " << i;
    EXPECT_NEAR(generalized_iou_host(b[i], a[i]), giou[i * n + i], 1e-14) << "pair " << i << " swapped";
    for (size_t j = 0; j < n; ++j) EXPECT_NEAR(pairwise[i * n + j], giou[i * n + j], 1e-14) << i << ", " << j;
  }
}

// Values from the definition: GIoU = IoU - (hull - union) / hull, with box_ops.h's choices where a ratio is 0/0.
TEST(BoxOps, DegenerateBoxes) {
  const Box unit = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(generalized_iou_host(unit, unit), 1.0);                   // identical
  EXPECT_DOUBLE_EQ(generalized_iou_host(unit, {2, 0, 3, 1}), -1.0 / 3.0);    // disjoint: union 2, hull 3
  EXPECT_DOUBLE_EQ(generalized_iou_host({0, 0, 2, 2}, {0.5, 0.5, 1, 1}), 1.0 / 16.0);  // contained: hull = union
  EXPECT_DOUBLE_EQ(generalized_iou_host(unit, {0.5, 0, 0.5, 1}), 0.0);        // zero width inside: iou 0, hull 1
  EXPECT_DOUBLE_EQ(generalized_iou_host(unit, {2, 0, 2, 1}), -0.5);           // zero width outside: hull 2
  // Union 0 (both zero-area): IoU 0 by definition; distinct points still have a hull.
  EXPECT_DOUBLE_EQ(box_iou_host({1, 1, 1, 1}, {1, 1, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(generalized_iou_host({0, 0, 0, 0}, {1, 1, 1, 1}), -1.0);  // hull 1, union 0
  // Hull 0 too (same point, or segments on one line): GIoU = IoU = 0.
  EXPECT_DOUBLE_EQ(generalized_iou_host({1, 1, 1, 1}, {1, 1, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(generalized_iou_host({0, 0, 1, 0}, {2, 0, 3, 0}), 0.0);
  // Non-finite coordinates give NaN, whichever box has them.
  EXPECT_TRUE(std::isnan(generalized_iou_host({kNaN, 0, 1, 1}, unit)));
  EXPECT_TRUE(std::isnan(generalized_iou_host(unit, {0, 0, kInf, 1})));
  EXPECT_TRUE(std::isnan(box_iou_host(unit, {0, kNaN, 1, 1})));
  const std::vector<Box> a = {unit, {kNaN, 0, 1, 1}}, b = {unit, {2, 0, 3, 1}};
  std::vector<double> pairwise(4);
  pairwise_generalized_iou_host(a, b, pairwise);
  EXPECT_DOUBLE_EQ(pairwise[0], 1.0);
  EXPECT_DOUBLE_EQ(pairwise[1], -1.0 / 3.0);
  EXPECT_TRUE(std::isnan(pairwise[2]) && std::isnan(pairwise[3]));
}

TEST(BoxOpsDeathTest, InvertedBoxIsAnError) {
  EXPECT_DEATH(generalized_iou_host({0, 0, 1, 1}, {1, 0, 0, 1}), "inverted xyxy box");
}

// MatcherInput over the tensors of oracle case m/<i>/ (probs and boxes in T).
template <typename T>
MatcherInput<T> oracle_input(const std::string& p) {
  const Tensor& probs = oracle().get(p + "probs");
  MatcherInput<T> in;
  in.batch = probs.shape()[0];
  in.queries = probs.shape()[1];
  in.classes = probs.shape()[2];
  in.probs = span_of<T>(probs);
  in.boxes = span_of<T>(oracle().get(p + "boxes"));
  for (int64_t b = 0; b < in.batch; ++b) {
    in.labels.push_back(span_of<int64_t>(oracle().get(p + std::to_string(b) + "/labels")));
    in.target_boxes.push_back(span_of<T>(oracle().get(p + std::to_string(b) + "/tboxes")));
  }
  return in;
}

template <typename T>
void expect_matcher_case(const std::string& p) {
  const MatcherInput<T> in = oracle_input<T>(p);
  const std::span<const double> w = span_of<double>(oracle().get(p + "weights"));
  const HungarianMatcher matcher{w[0], w[1], w[2]};
  const std::vector<ImageMatch> matches = matcher.match(in);
  ASSERT_EQ(static_cast<int64_t>(matches.size()), in.batch);
  for (int64_t b = 0; b < in.batch; ++b) {
    const std::string pb = p + std::to_string(b) + "/";
    const std::vector<double> cost = matcher.cost_matrix(in, b);
    const std::span<const double> expected = span_of<double>(oracle().get(pb + "cost"));
    ASSERT_EQ(cost.size(), expected.size()) << pb;
    for (size_t k = 0; k < cost.size(); ++k) EXPECT_NEAR(cost[k], expected[k], 1e-12) << pb << "cost " << k;
    EXPECT_EQ(matches[b].pred, vec_of(oracle().get(pb + "pred"))) << pb;
    EXPECT_EQ(matches[b].target, vec_of(oracle().get(pb + "target"))) << pb;
  }
}

TEST(HungarianMatcher, CostsAndMatchesAgainstTorchAndScipy) {
  int cases = 0;
  for (; oracle().has("m/" + std::to_string(cases) + "/probs"); ++cases) {
    const std::string p = "m/" + std::to_string(cases) + "/";
    if (oracle().get(p + "probs").dtype() == DType::f32) {
      expect_matcher_case<float>(p);
    } else {
      expect_matcher_case<double>(p);
    }
  }
  EXPECT_GE(cases, 3);
}

// One image, two queries, one target of class 1 at (0.5, 0.5, 0.2, 0.2); query 1 sits on it.
struct TinyBatch {
  std::vector<double> probs = {0.5, 0.3, 0.2, 0.1, 0.6, 0.3};                // (1, 2, 3)
  std::vector<double> boxes = {0.2, 0.2, 0.1, 0.1, 0.5, 0.5, 0.2, 0.2};      // (1, 2, 4)
  std::vector<int64_t> labels = {1};                                        // (1,)
  std::vector<double> tboxes = {0.5, 0.5, 0.2, 0.2};                        // (1, 4)
  MatcherInput<double> input() const { return {1, 2, 3, probs, boxes, {labels}, {tboxes}}; }
};

TEST(HungarianMatcher, PicksTheOverlappingQueryAndHandlesEmptyImages) {
  TinyBatch t;
  const HungarianMatcher matcher;
  // Query 1: -0.6 (class) + 0 (L1) - 2 * 1 (GIoU of identical boxes).
  EXPECT_DOUBLE_EQ(matcher.cost_matrix(t.input(), 0)[1], -2.6);
  const std::vector<ImageMatch> m = matcher.match(t.input());
  EXPECT_EQ(m[0].pred, std::vector<int64_t>{1});
  EXPECT_EQ(m[0].target, std::vector<int64_t>{0});
  t.labels.clear();
  t.tboxes.clear();
  const std::vector<ImageMatch> none = matcher.match(t.input());
  EXPECT_TRUE(none[0].pred.empty() && none[0].target.empty());
  EXPECT_TRUE(matcher.match(MatcherInput<double>{.batch = 0, .queries = 2, .classes = 3}).empty());
}

TEST(HungarianMatcherDeathTest, RejectsBadInputs) {
  const HungarianMatcher matcher;
  TinyBatch nan;
  nan.boxes[5] = kNaN;
  EXPECT_DEATH(matcher.match(nan.input()), "image 0, query 1, target 0: cost nan");
  TinyBatch label;
  label.labels[0] = 3;
  EXPECT_DEATH(matcher.match(label.input()), "image 0 has label 3 outside \\[0, 3\\)");
  TinyBatch shape;
  shape.tboxes.push_back(0.1);
  EXPECT_DEATH(matcher.match(shape.input()), "target boxes must be \\(1, 4\\)");
}

}  // namespace
}  // namespace px::detr

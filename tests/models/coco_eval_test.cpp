// models/detr/coco_eval against pycocotools 2.0.11: hand-made cases and random detections over labelme's
// annotations (oracle/gen_coco_eval.py), Fashion-MNIST scenes (oracle/coco_oracle.py run from the test).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/util/check.h"
#include "core/util/error.h"
#include "data/fashion_scenes.h"
#include "models/detr/coco_eval.h"
#include "tests/common/temp_dir.h"

namespace px::detr {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kOracleDir = PX_ORACLE_DIR;
const std::string kFashionDir = "/usr/share/datasets/fashion-mnist";

// Why the pycocotools oracle is unavailable (the generator's skip marker), or "".
std::string oracle_skip_reason() {
  std::ifstream marker(kOracleDir / "coco_eval.skip");
  std::string line;
  if (marker && std::getline(marker, line)) return line;
  return "";
}

#define SKIP_WITHOUT_PYCOCOTOOLS()                                                     \
  if (const std::string why = oracle_skip_reason(); !why.empty()) GTEST_SKIP() << why

// <PX_ORACLE_DIR>/coco_eval.json, read once.
const json& oracle() {
  static const json doc = [] {
    const fs::path path = kOracleDir / "coco_eval.json";
    std::ifstream in(path);
    CHECK(in) << "cannot open " << path << " (the oracle_data target writes it)";
    return json::parse(in);
  }();
  return doc;
}

// A number, or the string "nan" (coco_oracle.py's NaN).
double number(const json& j) {
  if (j.is_string()) {
    CHECK(j.get<std::string>() == "nan") << j.dump();
    return std::numeric_limits<double>::quiet_NaN();
  }
  return j.get<double>();
}

std::array<double, 4> box_of(const json& j) {
  CHECK_EQ(j.size(), 4u) << j.dump();
  return {number(j[0]), number(j[1]), number(j[2]), number(j[3])};
}

// A coco_oracle.py document as the evaluator's input.
struct Input {
  CocoGroundTruth gt;
  std::vector<CocoDetection> dets;
};
Input parse_input(const json& doc) {
  Input in;
  in.gt.image_ids = doc.at("images").get<std::vector<int64_t>>();
  in.gt.category_ids = doc.at("categories").get<std::vector<int64_t>>();
  for (const json& a : doc.at("annotations"))
    in.gt.annotations.push_back({a.at("image_id").get<int64_t>(), a.at("category_id").get<int64_t>(),
                                 box_of(a.at("bbox")), number(a.at("area")), a.at("iscrowd").get<int>() != 0});
  for (const json& d : doc.at("detections"))
    in.dets.push_back({d.at("image_id").get<int64_t>(), d.at("category_id").get<int64_t>(), box_of(d.at("bbox")),
                       number(d.at("score"))});
  return in;
}

json to_document(const Input& in) {
  json doc = {{"images", in.gt.image_ids}, {"categories", in.gt.category_ids},
              {"annotations", json::array()}, {"detections", json::array()}};
  for (const CocoAnnotation& a : in.gt.annotations)
    doc["annotations"].push_back({{"image_id", a.image_id}, {"category_id", a.category_id}, {"bbox", a.bbox},
                                  {"area", a.area}, {"iscrowd", a.iscrowd ? 1 : 0}});
  for (const CocoDetection& d : in.dets)
    doc["detections"].push_back(
        {{"image_id", d.image_id}, {"category_id", d.category_id}, {"bbox", d.bbox}, {"score", d.score}});
  return doc;
}

// Every stat within 1e-6 of pycocotools' and the table equal to what its summarize() printed.
void expect_matches_pycocotools(const CocoStats& got, const json& expected) {
  const std::vector<double> stats = expected.at("stats").get<std::vector<double>>();
  ASSERT_EQ(stats.size(), size_t(kCocoNumStats));
  for (int i = 0; i < kCocoNumStats; ++i)
    EXPECT_NEAR(got.values[i], stats[i], 1e-6) << coco_stat_names()[i];
  EXPECT_EQ(got.summary, expected.at("summary").get<std::string>());
}

TEST(CocoEval, ThresholdsAreNumpysToTheBit) {
  SKIP_WITHOUT_PYCOCOTOOLS();
  const std::vector<double> iou = oracle().at("iou_thresholds").get<std::vector<double>>();
  const std::vector<double> recall = oracle().at("recall_thresholds").get<std::vector<double>>();
  ASSERT_EQ(iou.size(), coco_iou_thresholds().size());
  ASSERT_EQ(recall.size(), coco_recall_thresholds().size());
  for (size_t i = 0; i < iou.size(); ++i) EXPECT_EQ(coco_iou_thresholds()[i], iou[i]) << i;
  for (size_t i = 0; i < recall.size(); ++i) EXPECT_EQ(coco_recall_thresholds()[i], recall[i]) << i;
}

// The generator's cases by name (see oracle/gen_coco_eval.py for what each one exercises).
class OracleCase : public ::testing::TestWithParam<const char*> {};

TEST_P(OracleCase, MatchesPycocotools) {
  SKIP_WITHOUT_PYCOCOTOOLS();
  const json& cases = oracle().at("cases");
  const std::string name = GetParam();
  if (name.rfind("labelme_", 0) == 0 && !cases.contains(name))
    GTEST_SKIP() << "labelme-examples is not installed (the generator made no " << name << ")";
  ASSERT_TRUE(cases.contains(name)) << name << " is not in " << kOracleDir / "coco_eval.json";
  const json& c = cases.at(name);
  const Input in = parse_input(c.at("input"));
  expect_matches_pycocotools(evaluate_coco(in.gt, in.dets), c);
}

INSTANTIATE_TEST_SUITE_P(HandMade, OracleCase,
                         ::testing::Values("perfect", "no_detections", "category_without_gt", "crowd",
                                           "score_ties_across_images", "area_ranges", "max_dets",
                                           "image_without_gt", "iou_at_thresholds", "greedy_order", "odd_input",
                                           "nan_input"),
                         [](const auto& info) { return std::string(info.param); });
INSTANTIATE_TEST_SUITE_P(Labelme, OracleCase, ::testing::Values("labelme_0", "labelme_1", "labelme_2"),
                         [](const auto& info) { return std::string(info.param); });

// Fashion-MNIST scenes of 8-160 pixel items on a 256 canvas as ground truth (a few marked crowd) and 100
// detections per image as DETR gives them, normalised cx, cy, w, h: jittered copies of the boxes (sometimes
// of the wrong class) and random boxes, scores partly on a coarse grid.
Input fashion_input(const data::FashionMnist& source, int64_t num_scenes) {
  data::SceneOptions options;
  options.canvas = 256;
  options.min_item_size = 8;
  options.max_item_size = 160;
  options.seed = 11;
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int num_classes = static_cast<int>(data::fashion_mnist_classes().size());
  Input in;
  for (int c = 0; c < num_classes; ++c) in.gt.category_ids.push_back(c + 1);
  for (int64_t i = 0; i < num_scenes; ++i) {
    const data::DetectionExample scene = data::compose_scene(source, options, i);
    in.gt.image_ids.push_back(scene.image_id);
    std::vector<std::array<float, 4>> queries;  // (100, 4) normalised cx, cy, w, h
    std::vector<int64_t> classes;               // (100,)
    for (int64_t b = 0; b < scene.num_boxes(); ++b) {
      const std::array<float, 4> box = {scene.boxes[4 * b], scene.boxes[4 * b + 1], scene.boxes[4 * b + 2],
                                        scene.boxes[4 * b + 3]};
      const std::array<double, 4> xywh = cxcywh_to_xywh_pixels(box, scene.height, scene.width);
      in.gt.annotations.push_back(
          {scene.image_id, scene.labels[b] + 1, xywh, xywh[2] * xywh[3], uniform(rng) < 0.03});
      const int copies = static_cast<int>(uniform(rng) * 4);
      for (int k = 0; k < copies; ++k) {
        const double sigma = 0.01 + 0.2 * uniform(rng);
        std::array<float, 4> q = box;
        for (int j = 0; j < 4; ++j) q[j] = static_cast<float>(q[j] + sigma * normal(rng) * box[2 + j % 2]);
        queries.push_back(q);
        classes.push_back(uniform(rng) < 0.8 ? scene.labels[b] + 1 : 1 + int64_t(uniform(rng) * num_classes));
      }
    }
    const size_t jittered = queries.size();
    while (queries.size() < 100) {
      const float w = static_cast<float>(0.02 + 0.6 * uniform(rng)), h = static_cast<float>(0.02 + 0.6 * uniform(rng));
      queries.push_back({static_cast<float>(uniform(rng)), static_cast<float>(uniform(rng)), w, h});
      classes.push_back(1 + int64_t(uniform(rng) * num_classes));
    }
    for (size_t q = 0; q < queries.size(); ++q) {
      double score = q < jittered ? 0.3 + 0.7 * uniform(rng) : 0.6 * uniform(rng);
      if (uniform(rng) < 0.3) score = std::round(score * 10) / 10;
      in.dets.push_back({scene.image_id, classes[q], cxcywh_to_xywh_pixels(queries[q], scene.height, scene.width),
                         score});
    }
  }
  return in;
}

class FashionScenes : public px::test::TempDirTest {};

TEST_F(FashionScenes, MatchPycocotools) {
  SKIP_WITHOUT_PYCOCOTOOLS();
  if (!fs::exists(kFashionDir + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const Input in = fashion_input(data::read_fashion_mnist(kFashionDir, "t10k"), 300);
  ASSERT_EQ(in.dets.size(), 300u * 100u);
  const std::string doc_path = path("scenes.json"), result_path = path("pycocotools.json");
  std::ofstream(doc_path) << to_document(in).dump();
  const std::string command =
      std::string(PX_PYTHON) + " '" + PX_COCO_ORACLE + "' '" + doc_path + "' '" + result_path + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::ifstream result(result_path);
  ASSERT_TRUE(result) << result_path;
  const json expected = json::parse(result);
  const CocoStats got = evaluate_coco(in.gt, in.dets);
  expect_matches_pycocotools(got, expected);
  EXPECT_GT(got.values[0], 0.05) << "the scenes' detections should find something";
}

TEST(CocoEval, DetectionOnAnUnlistedImageIsADataError) {
  CocoGroundTruth gt;
  gt.image_ids = {1, 2};
  gt.category_ids = {1};
  gt.annotations = {{1, 1, {0, 0, 10, 10}, 100, false}};
  const std::vector<CocoDetection> dets = {{1, 1, {0, 0, 10, 10}, 0.5}, {7, 1, {0, 0, 10, 10}, 0.4}};
  px::test::expect_data_error([&] { evaluate_coco(gt, dets); }, {"detection 1", "image 7"});
}

TEST(CocoEval, NoImagesGivesMinusOneEverywhere) {
  const CocoStats stats = evaluate_coco({}, {});
  for (int i = 0; i < kCocoNumStats; ++i) EXPECT_EQ(stats.values[i], -1) << coco_stat_names()[i];
  std::istringstream lines(stats.summary);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) EXPECT_NE(line.find("= -1.000"), std::string::npos);
  EXPECT_EQ(count, kCocoNumStats);
}

TEST(CocoEval, CxcywhToXywhPixels) {
  // Centre (0.5, 0.25) of a 200 x 100 (w x h) image, 0.2 x 0.4 of it: corners (80, 5) and (120, 45).
  const std::array<double, 4> b = cxcywh_to_xywh_pixels({0.5f, 0.25f, 0.2f, 0.4f}, 100, 200);
  EXPECT_NEAR(b[0], 80, 1e-5);
  EXPECT_NEAR(b[1], 5, 1e-5);
  EXPECT_NEAR(b[2], 40, 1e-5);
  EXPECT_NEAR(b[3], 40, 1e-5);
}

}  // namespace
}  // namespace px::detr

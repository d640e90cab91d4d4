// `parallax data build-*` as library calls: text and annotations in, shards + dataset.pbtxt out, read
// back equal to the (normalised) input; verify passes on good shards and names a corrupted one.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/annotations.h"
#include "data/dataset_index.h"
#include "data/image_io.h"
#include "data/inspect.h"
#include "data/shard_builder.h"
#include "data/sharded_dataset.h"
#include "data/tokenizer.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::data_error_of;
using px::test::make_temp_dir;

const char* kVocDir = "/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc";
const char* kCocoDir = "/usr/share/doc/labelme-examples/examples/instance_segmentation/data_dataset_coco";

// Parallel lines with messy whitespace, one empty-target pair (skipped) and accents.
void write_parallel(const fs::path& src, const fs::path& tgt, int n, int offset) {
  const char* en[] = {"the", "lord", "spake", "unto", "moses", "saying", "and", "light", "was", "good"};
  const char* es[] = {"el", "señor", "habló", "á", "moisés", "diciendo", "y", "luz", "fué", "buena"};
  std::ofstream s(src), t(tgt);
  for (int i = 0; i < n; ++i) {
    const int k = i + offset;
    std::string a = "  ", b;
    for (int j = 0; j < 3 + k % 11; ++j) {
      a += std::string(en[(k * 3 + j) % 10]) + (j % 4 == 3 ? "\t " : " ");
      b += std::string(es[(k * 7 + j) % 10]) + " ";
    }
    s << a << k << "\n";
    t << (i == 5 ? std::string("   ") : b + std::to_string(k)) << "\n";
  }
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// 300 parallel lines written to dir/a.en and dir/a.es, and options that build them into dir/out as a
// "train" split of 2 shards with a 350-piece vocabulary.
TranslationBuildOptions small_translation(const fs::path& dir) {
  write_parallel(dir / "a.en", dir / "a.es", 300, 0);
  TranslationBuildOptions o;
  o.inputs = {{"train", (dir / "a.en").string(), (dir / "a.es").string()}};
  o.out_dir = (dir / "out").string();
  o.shards = 2;
  o.vocab_size = 350;
  return o;
}

TEST(BuildTranslation, ShardsDecodeToTheNormalisedInput) {
  const fs::path dir = make_temp_dir("px_build_test_translation");
  write_parallel(dir / "train.en", dir / "train.es", 600, 0);
  write_parallel(dir / "valid.en", dir / "valid.es", 40, 1000);
  TranslationBuildOptions o;
  o.inputs = {{"train", (dir / "train.en").string(), (dir / "train.es").string()},
              {"valid", (dir / "valid.en").string(), (dir / "valid.es").string()}};
  o.out_dir = (dir / "out").string();
  o.shards = 3;
  o.vocab_size = 400;
  build_translation(o);

  const auto index = read_index(o.out_dir);
  EXPECT_EQ(index.schema(), "parallax.translation");
  const auto& train = find_split(index, "train", o.out_dir);
  EXPECT_EQ(train.shards_size(), 3);
  EXPECT_EQ(train.num_examples(), 599);
  EXPECT_EQ(train.skipped_examples(), 1);
  EXPECT_EQ(find_split(index, "valid", o.out_dir).num_examples(), 39);
  EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / ".work"));

  const Tokenizer tok((fs::path(o.out_dir) / index.tokenizer().src_model()).string());
  EXPECT_EQ(tok.hash(), index.tokenizer().hash());
  const TranslationDataset data(shard_paths(o.out_dir, train));
  ASSERT_EQ(data.size(), 599);
  EXPECT_EQ(data.tokenizer_hash(), tok.hash());
  const auto en = read_lines(dir / "train.en"), es = read_lines(dir / "train.es");
  std::vector<int32_t> src, tgt;
  for (int64_t id = 0, line = 0; id < data.size(); ++id, ++line) {
    if (line == 5) ++line;  // the skipped pair
    data.read(id, src, tgt);
    EXPECT_EQ(tok.decode(src), normalize_text(en[line])) << id;
    EXPECT_EQ(tok.decode(tgt), normalize_text(es[line])) << id;
  }
  std::ostringstream report;
  verify_dataset(o.out_dir, report);
  EXPECT_NE(report.str().find("ok train-00002-of-00003.h5 (200 examples)"), std::string::npos) << report.str();
  fs::remove_all(dir);
}

TEST(BuildTranslation, SeparateVocabulariesAndBadInputs) {
  const fs::path dir = make_temp_dir("px_build_test_separate");
  TranslationBuildOptions o = small_translation(dir);
  o.joint_vocab = false;
  build_translation(o);
  const auto index = read_index(o.out_dir);
  EXPECT_EQ(index.tokenizer().src_model(), "spm.src.model");
  EXPECT_EQ(index.tokenizer().tgt_model(), "spm.tgt.model");
  const Tokenizer es((fs::path(o.out_dir) / "spm.tgt.model").string());
  const TranslationDataset data(shard_paths(o.out_dir, index.splits(0)));
  std::vector<int32_t> src, tgt;
  data.read(0, src, tgt);
  EXPECT_EQ(es.decode(tgt), normalize_text(read_lines(dir / "a.es")[0]));

  std::ofstream(dir / "short.es") << "uno\ndos\n";
  o.inputs = {{"train", (dir / "a.en").string(), (dir / "short.es").string()}};
  o.out_dir = (dir / "out2").string();
  const std::string msg = data_error_of([&] { build_translation(o); });
  EXPECT_NE(msg.find("different line counts"), std::string::npos) << msg;
  EXPECT_NE(msg.find("short.es"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(BuildTranslation, VerifyNamesACorruptedShard) {
  const fs::path dir = make_temp_dir("px_build_test_corrupt");
  const TranslationBuildOptions o = small_translation(dir);
  build_translation(o);
  const auto index = read_index(o.out_dir);
  const fs::path shard = fs::path(o.out_dir) / index.splits(0).shards(1).file();
  fs::resize_file(shard, fs::file_size(shard) / 2);  // truncated
  const std::string msg = data_error_of([&] {
    std::ostringstream out;
    verify_dataset(o.out_dir, out);
  });
  EXPECT_NE(msg.find(shard.filename().string()), std::string::npos) << msg;
  fs::remove_all(dir);
}

// Boxes stored in a shard, in pixels of the stored image, for comparison with annotations.
std::vector<std::array<float, 4>> pixel_boxes(const DetectionExample& ex) {
  std::vector<std::array<float, 4>> out;
  for (int64_t b = 0; b < ex.num_boxes(); ++b) {
    const float* x = &ex.boxes[4 * b];
    out.push_back({(x[0] - x[2] / 2) * ex.width, (x[1] - x[3] / 2) * ex.height, (x[0] + x[2] / 2) * ex.width,
                   (x[1] + x[3] / 2) * ex.height});
  }
  return out;
}

void expect_set_in_shards(const AnnotatedSet& set, const std::string& out_dir, const std::string& split) {
  const auto index = read_index(out_dir);
  const std::vector<std::string> names(index.category_names().begin(), index.category_names().end());
  EXPECT_EQ(names, set.category_names);
  const DetectionDataset data(shard_paths(out_dir, find_split(index, split, out_dir)));
  ASSERT_EQ(data.size(), static_cast<int64_t>(set.images.size()));
  DetectionExample ex;
  for (size_t i = 0; i < set.images.size(); ++i) {
    const AnnotatedImage& a = set.images[i];
    data.read(static_cast<int64_t>(i), ex);
    EXPECT_EQ(ex.image_id, a.image_id);
    const Image img = read_image(a.path);
    EXPECT_EQ(ex.height, img.height);
    EXPECT_EQ(ex.width, img.width);
    EXPECT_EQ(ex.pixels, img.pixels) << a.path;
    const auto boxes = pixel_boxes(ex);
    ASSERT_EQ(boxes.size(), a.boxes.size()) << a.path;
    for (size_t b = 0; b < boxes.size(); ++b) {
      EXPECT_EQ(ex.labels[b], a.boxes[b].label);
      EXPECT_NEAR(boxes[b][0], a.boxes[b].x0, 1e-3 * img.width);
      EXPECT_NEAR(boxes[b][1], a.boxes[b].y0, 1e-3 * img.height);
      EXPECT_NEAR(boxes[b][2], a.boxes[b].x1, 1e-3 * img.width);
      EXPECT_NEAR(boxes[b][3], a.boxes[b].y1, 1e-3 * img.height);
    }
  }
}

TEST(BuildDetection, VocAndCocoRoundTrip) {
  if (!fs::exists(kVocDir)) GTEST_SKIP() << "labelme-examples is not installed";
  const fs::path dir = make_temp_dir("px_build_test_voc");
  DetectionBuildOptions o;
  o.voc_dir = kVocDir;
  o.out_dir = (dir / "voc").string();
  o.shards = 2;
  build_detection(o);
  expect_set_in_shards(read_voc(kVocDir), o.out_dir, "train");

  DetectionBuildOptions c;
  c.coco_json = std::string(kCocoDir) + "/annotations.json";
  c.image_dir = kCocoDir;
  c.out_dir = (dir / "coco").string();
  c.split = "valid";
  c.shards = 1;
  build_detection(c);
  expect_set_in_shards(read_coco(c.coco_json, c.image_dir), c.out_dir, "valid");
  std::ostringstream report;
  verify_dataset(c.out_dir, report);
  fs::remove_all(dir);
}

TEST(BuildDetection, MaxSizeShrinksImagesAndKeepsNormalisedBoxes) {
  if (!fs::exists(kVocDir)) GTEST_SKIP() << "labelme-examples is not installed";
  const fs::path dir = make_temp_dir("px_build_test_maxsize");
  DetectionBuildOptions o;
  o.voc_dir = kVocDir;
  o.out_dir = (dir / "small").string();
  o.shards = 1;
  o.max_size = 100;
  build_detection(o);
  const auto index = read_index(o.out_dir);
  EXPECT_EQ(index.splits(0).image_size().max(), 100);
  const DetectionDataset data(shard_paths(o.out_dir, index.splits(0)));
  const AnnotatedSet set = read_voc(kVocDir);
  DetectionExample ex;
  data.read(0, ex);
  EXPECT_EQ(ex.width, 100);
  EXPECT_EQ(ex.height, std::lround(set.images[0].height * 100.0 / set.images[0].width));
  const auto& b = set.images[0].boxes[0];
  EXPECT_NEAR(ex.boxes[0], (b.x0 + b.x1) / 2 / set.images[0].width, 1e-5);
  fs::remove_all(dir);
}

TEST(BuildDetection, FashionScenesMakeThreeSplits) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const fs::path dir = make_temp_dir("px_build_test_fashion");
  DetectionBuildOptions o;
  o.fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
  o.out_dir = (dir / "scenes").string();
  o.scenes_train = 40;
  o.scenes_valid = 10;
  o.scenes_test = 10;
  o.shards = 2;
  build_detection(o);
  const auto index = read_index(o.out_dir);
  ASSERT_EQ(index.splits_size(), 3);
  EXPECT_EQ(index.category_names_size(), 10);
  EXPECT_EQ(find_split(index, "train", o.out_dir).num_examples(), 40);
  const DetectionDataset test(shard_paths(o.out_dir, find_split(index, "test", o.out_dir)));
  DetectionExample ex;
  test.read(3, ex);
  EXPECT_EQ(ex.height, 128);
  EXPECT_GE(ex.num_boxes(), 1);
  EXPECT_LE(ex.num_boxes(), 6);
  std::ostringstream report;
  verify_dataset(o.out_dir, report);
  fs::remove_all(dir);
}

TEST(BuildDetection, OneSourceOnly) {
  DetectionBuildOptions o;
  o.out_dir = (fs::temp_directory_path() / "px_build_test_none").string();
  EXPECT_THROW(build_detection(o), UsageError);
  o.voc_dir = kVocDir;
  o.coco_json = "x.json";
  EXPECT_THROW(build_detection(o), UsageError);
}

TEST(DatasetIndex, MalformedIndexNamesTheField) {
  const fs::path dir = make_temp_dir("px_build_test_index");
  EXPECT_NE(data_error_of([&] { read_index(dir.string()); }).find("dataset.pbtxt"), std::string::npos);
  std::ofstream(dir / "dataset.pbtxt") << "schema: \"parallax.translation\"\nsplitz { name: \"x\" }\n";
  EXPECT_NE(data_error_of([&] { read_index(dir.string()); }).find("splitz"), std::string::npos);
  std::ofstream(dir / "dataset.pbtxt") << "schema: \"parallax.translation\"\n"
                                          "splits { name: \"train\" num_examples: 3 shards { file: \"a.h5\" num_examples: 2 } }\n";
  EXPECT_NE(data_error_of([&] { read_index(dir.string()); }).find("num_examples"), std::string::npos);
  std::ofstream(dir / "dataset.pbtxt") << "schema: \"parallax.translation\"\n"
                                          "splits { name: \"train\" num_examples: 2 shards { file: \"../a.h5\" num_examples: 2 } }\n";
  EXPECT_NE(data_error_of([&] { read_index(dir.string()); }).find("../a.h5"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace px::data

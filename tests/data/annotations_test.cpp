// data/annotations: labelme's VOC folder and COCO JSON parse to exactly the boxes, labels and sizes in
// those files; malformed JSON and XML (bad syntax, missing fields, dangling ids, bad sizes) are DataErrors.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/annotations.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::expect_data_error;

const fs::path kLabelme = "/usr/share/doc/labelme-examples/examples";
const fs::path kVocDir = kLabelme / "bbox_detection/data_dataset_voc";
const fs::path kCocoDir = kLabelme / "instance_segmentation/data_dataset_coco";

struct Expected {
  std::string file;
  int64_t id;
  int32_t height, width;
  std::vector<AnnotatedBox> boxes;
};

void expect_set(const AnnotatedSet& set, const fs::path& image_dir, const std::vector<Expected>& expected) {
  ASSERT_EQ(set.images.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const AnnotatedImage& got = set.images[i];
    const Expected& want = expected[i];
    SCOPED_TRACE(want.file);
    EXPECT_EQ(got.path, (image_dir / want.file).string());
    EXPECT_EQ(got.image_id, want.id);
    EXPECT_EQ(got.height, want.height);
    EXPECT_EQ(got.width, want.width);
    ASSERT_EQ(got.boxes.size(), want.boxes.size());
    for (size_t b = 0; b < want.boxes.size(); ++b) {
      SCOPED_TRACE("box " + std::to_string(b));
      EXPECT_FLOAT_EQ(got.boxes[b].x0, want.boxes[b].x0);
      EXPECT_FLOAT_EQ(got.boxes[b].y0, want.boxes[b].y0);
      EXPECT_FLOAT_EQ(got.boxes[b].x1, want.boxes[b].x1);
      EXPECT_FLOAT_EQ(got.boxes[b].y1, want.boxes[b].y1);
      EXPECT_EQ(got.boxes[b].label, want.boxes[b].label);
    }
  }
}

TEST(Voc, LabelmeFolderParsesToItsBoxes) {
  if (!fs::exists(kVocDir)) GTEST_SKIP() << "labelme-examples is not installed";
  const AnnotatedSet set = read_voc(kVocDir.string());
  // class_names.txt without its "_background_" line.
  EXPECT_EQ(set.category_names,
            (std::vector<std::string>{"aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                                      "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant",
                                      "sheep", "sofa", "train", "tv/monitor"}));
  constexpr int32_t kPerson = 14, kBus = 5, kCar = 6;
  expect_set(set, kVocDir / "JPEGImages",
             {{"2011_000003.jpg", 0, 338, 500,
               {{191.0f, 107.36900369003689f, 313.0f, 329.36900369003695f, kPerson},
                {365.0f, 83.0f, 500.0f, 333.0f, kPerson}}},
              {"2011_000006.jpg", 1, 375, 500,
               {{91.0f, 107.0f, 240.0f, 330.0f, kPerson},
                {178.0f, 110.0f, 298.0f, 282.0f, kPerson},
                {254.38461538461536f, 115.38461538461539f, 369.38461538461536f, 292.38461538461536f, kPerson},
                {395.0f, 81.0f, 447.0f, 117.0f, kPerson}}},
              {"2011_000025.jpg", 2, 375, 500,
               {{84.0f, 20.384615384615387f, 435.0f, 373.38461538461536f, kBus},
                {1.0f, 99.0f, 107.0f, 282.0f, kBus},
                {409.0f, 167.0f, 500.0f, 266.0f, kCar}}}});
}

TEST(Coco, LabelmeJsonParsesToItsBoxes) {
  if (!fs::exists(kCocoDir)) GTEST_SKIP() << "labelme-examples is not installed";
  const AnnotatedSet set = read_coco((kCocoDir / "annotations.json").string(), kCocoDir.string());
  // Category ids 0..20 in increasing order, "_background_" included: label = id.
  EXPECT_EQ(set.category_names,
            (std::vector<std::string>{"_background_", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                                      "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                                      "potted plant", "sheep", "sofa", "train", "tv/monitor"}));
  constexpr int32_t kBottle = 5, kBus = 6, kCar = 7, kChair = 9, kPerson = 15, kSofa = 18;
  // Images in file order; bbox [x, y, w, h] -> (x, y, x + w, y + h).
  expect_set(set, kCocoDir,
             {{"JPEGImages/2011_000003.jpg", 0, 338, 500,
               {{191, 107, 314, 328, kPerson}, {365, 87, 500, 338, kPerson}, {369, 159, 388, 213, kBottle}}},
              {"JPEGImages/2011_000025.jpg", 1, 375, 500,
               {{81, 20, 434, 375, kBus}, {0, 96, 109, 284, kBus}, {408, 168, 498, 259, kCar}}},
              {"JPEGImages/2011_000006.jpg", 2, 375, 500,
               {{92, 108, 243, 330, kPerson},
                {170, 109, 309, 279, kPerson},
                {252, 115, 372, 292, kPerson},
                {149, 193, 499, 375, kChair},
                {400, 82, 449, 115, kPerson},
                {18, 140, 478, 312, kSofa}}}});
}

// A fresh directory per test and write(), which makes a file of `text` (and its parent directories) in it.
class AnnotationFiles : public px::test::TempDirTest {
 protected:
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
};

// A valid COCO document with `annotation` as its single annotation and `image` as its single image.
std::string coco_json(const std::string& image, const std::string& annotation) {
  return R"({"images": [)" + image + R"(], "annotations": [)" + annotation +
         R"(], "categories": [{"id": 12, "name": "hat"}, {"id": 3, "name": "coat"}, {"id": 7, "name": "shoe"}]})";
}
const std::string kImage = R"({"id": 5, "file_name": "a.jpg", "height": 40, "width": 60})";

using CocoFiles = AnnotationFiles;

TEST_F(CocoFiles, SparseCategoryIdsBecomeContiguousLabelsAndCrowdsAreSkipped) {
  const std::string path = write("ok.json", coco_json(kImage, R"({"image_id": 5, "category_id": 12, "bbox": [1, 2, 3, 4]},
      {"image_id": 5, "category_id": 3, "bbox": [0.5, 0, 10, 20], "iscrowd": 1},
      {"image_id": 5, "category_id": 7, "bbox": [10, 20, 5.5, 6], "iscrowd": 0})"));
  const AnnotatedSet set = read_coco(path, "/images");
  EXPECT_EQ(set.category_names, (std::vector<std::string>{"coat", "shoe", "hat"}));
  expect_set(set, "/images", {{"a.jpg", 5, 40, 60, {{1, 2, 4, 6, 2}, {10, 20, 15.5f, 26, 1}}}});
}

TEST_F(CocoFiles, MalformedFilesAreDataErrorsNamingFileAndEntry) {
  const std::string ann = R"({"image_id": 5, "category_id": 3, "bbox": [1, 2, 3, 4]})";
  const std::string bad_syntax = write("syntax.json", coco_json(kImage, ann).substr(0, 40));
  expect_data_error([&] { read_coco(bad_syntax, ""); }, {bad_syntax, "invalid JSON"});

  const std::string no_bbox = write("no_bbox.json", coco_json(kImage, R"({"image_id": 5, "category_id": 3})"));
  expect_data_error([&] { read_coco(no_bbox, ""); }, {no_bbox, "annotations[0]", "bbox"});

  const std::string short_bbox =
      write("short_bbox.json", coco_json(kImage, R"({"image_id": 5, "category_id": 3, "bbox": [1, 2, 3]})"));
  expect_data_error([&] { read_coco(short_bbox, ""); }, {short_bbox, "annotations[0]", "bbox"});

  const std::string dangling_category = write(
      "dangling_category.json", coco_json(kImage, ann + R"(, {"image_id": 5, "category_id": 4, "bbox": [1, 2, 3, 4]})"));
  expect_data_error([&] { read_coco(dangling_category, ""); }, {dangling_category, "annotations[1]", "category_id 4"});

  const std::string dangling_image =
      write("dangling_image.json", coco_json(kImage, R"({"image_id": 6, "category_id": 3, "bbox": [1, 2, 3, 4]})"));
  expect_data_error([&] { read_coco(dangling_image, ""); }, {dangling_image, "annotations[0]", "image_id 6"});

  const std::string negative_box =
      write("negative_box.json", coco_json(kImage, R"({"image_id": 5, "category_id": 3, "bbox": [1, 2, -3, 4]})"));
  expect_data_error([&] { read_coco(negative_box, ""); }, {negative_box, "annotations[0]", "non-positive"});

  const std::string negative_size = write(
      "negative_size.json", coco_json(R"({"id": 5, "file_name": "a.jpg", "height": 40, "width": -60})", ann));
  expect_data_error([&] { read_coco(negative_size, ""); }, {negative_size, "images[0]", "width"});

  const std::string string_id = write(
      "string_id.json", coco_json(R"({"id": "5", "file_name": "a.jpg", "height": 40, "width": 60})", ann));
  expect_data_error([&] { read_coco(string_id, ""); }, {string_id, "images[0]", "'id' is not an integer"});

  const std::string no_categories = write("no_categories.json", R"({"images": [], "annotations": []})");
  expect_data_error([&] { read_coco(no_categories, ""); }, {no_categories, "categories"});

  const std::string not_object = write("not_object.json", coco_json(kImage, "[1, 2]"));
  expect_data_error([&] { read_coco(not_object, ""); }, {not_object, "annotations[0]", "not an object"});

  const std::string missing = (dir_ / "missing.json").string();
  expect_data_error([&] { read_coco(missing, ""); }, {missing});
}

// One VOC annotation file with `objects` inside and the given size.
std::string voc_xml(const std::string& size, const std::string& objects) {
  return "<annotation><filename>a.jpg</filename><size>" + size + "<depth>3</depth></size>" + objects +
         "</annotation>";
}
std::string voc_object(const std::string& name, const std::string& box) {
  return "<object><name>" + name + "</name><bndbox>" + box + "</bndbox></object>";
}
const std::string kSize = "<height>30</height><width>50</width>";
const std::string kBox = "<xmin>1</xmin><ymin>2</ymin><xmax>10.5</xmax><ymax>20</ymax>";

using VocFiles = AnnotationFiles;

TEST_F(VocFiles, WithoutClassListLabelsAreTheSortedNames) {
  write("Annotations/b.xml", voc_xml(kSize, voc_object("dog", kBox) + voc_object("cat", kBox)));
  write("Annotations/a.xml", voc_xml(kSize, voc_object(" dog ", kBox)));
  write("Annotations/notes.txt", "not an annotation");
  const AnnotatedSet set = read_voc(dir_.string());
  EXPECT_EQ(set.category_names, (std::vector<std::string>{"cat", "dog"}));
  expect_set(set, dir_ / "JPEGImages",
             {{"a.jpg", 0, 30, 50, {{1, 2, 10.5f, 20, 1}}},
              {"a.jpg", 1, 30, 50, {{1, 2, 10.5f, 20, 1}, {1, 2, 10.5f, 20, 0}}}});
}

TEST_F(VocFiles, ClassListOrderWinsAndBackgroundIsSkipped) {
  write("class_names.txt", "__background__\ndog\r\n_background_\ncat\n\n");
  write("Annotations/a.xml", voc_xml(kSize, voc_object("cat", kBox)));
  const AnnotatedSet set = read_voc(dir_.string());
  EXPECT_EQ(set.category_names, (std::vector<std::string>{"dog", "cat"}));
  ASSERT_EQ(set.images.size(), 1u);
  ASSERT_EQ(set.images[0].boxes.size(), 1u);
  EXPECT_EQ(set.images[0].boxes[0].label, 1);
}

TEST_F(VocFiles, MalformedFilesAreDataErrorsNamingTheFile) {
  const std::string a = (dir_ / "Annotations/a.xml").string();
  const auto expect_bad = [&](const std::string& xml, const std::vector<std::string>& parts) {
    write("Annotations/a.xml", xml);
    std::vector<std::string> all = {a};
    all.insert(all.end(), parts.begin(), parts.end());
    expect_data_error([&] { read_voc(dir_.string()); }, all);
  };
  expect_bad(voc_xml(kSize, voc_object("cat", kBox)).substr(0, 60), {"invalid XML"});
  expect_bad(voc_xml(kSize, "<object><name>cat</name></object>"), {"<object> 0", "bndbox"});
  expect_bad(voc_xml(kSize, voc_object("cat", "<xmin>1</xmin><ymin>2</ymin><xmax>10</xmax>")), {"ymax"});
  expect_bad(voc_xml(kSize, voc_object("cat", "<xmin>1</xmin><ymin>2</ymin><xmax>x</xmax><ymax>3</ymax>")),
             {"xmax", "not a number"});
  expect_bad(voc_xml(kSize, voc_object("cat", "<xmin>9</xmin><ymin>2</ymin><xmax>3</xmax><ymax>20</ymax>")),
             {"<object> 0", "inverted"});
  expect_bad(voc_xml("<height>30</height><width>-50</width>", ""), {"width"});
  expect_bad(voc_xml("<height>30</height>", ""), {"width"});
  expect_bad("<notvoc/>", {"<annotation>"});
  write("class_names.txt", "dog\n");
  expect_bad(voc_xml(kSize, voc_object("cat", kBox)), {"'cat'", "class_names.txt"});
}

TEST_F(VocFiles, MissingOrEmptyFolderIsADataError) {
  expect_data_error([&] { read_voc(dir_.string()); }, {(dir_ / "Annotations").string()});
  fs::create_directories(dir_ / "Annotations");
  expect_data_error([&] { read_voc(dir_.string()); }, {(dir_ / "Annotations").string(), "no .xml"});
}

}  // namespace
}  // namespace px::data

// data/fashion_scenes: idx reading (Debian's gzipped files, plain and malformed ones), and scenes that are
// deterministic per (options, i), hold 1-6 tight boxes in [0, 1] and draw only from their item range.
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/fashion_scenes.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::expect_data_error;

const std::string kDebianDir = "/usr/share/datasets/fashion-mnist";

// The Debian train split, read once for all tests (null when the package is absent).
const FashionMnist* debian_train() {
  static const std::optional<FashionMnist> train =
      fs::exists(kDebianDir + "/train-images-idx3-ubyte.gz")
          ? std::optional<FashionMnist>(read_fashion_mnist(kDebianDir, "train"))
          : std::nullopt;
  return train ? &*train : nullptr;
}

#define REQUIRE_DEBIAN_FASHION_MNIST() \
  if (debian_train() == nullptr) GTEST_SKIP() << "dataset-fashion-mnist is not installed"

TEST(FashionMnistFiles, DebianSplitsHaveTheirSizesAndTenClasses) {
  REQUIRE_DEBIAN_FASHION_MNIST();
  const FashionMnist& train = *debian_train();
  const FashionMnist test = read_fashion_mnist(kDebianDir, "t10k");
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  for (const FashionMnist* split : {&train, &test}) {
    EXPECT_EQ(split->images.size(), size_t(split->count) * 28 * 28);
    ASSERT_EQ(split->labels.size(), size_t(split->count));
    EXPECT_LT(*std::max_element(split->labels.begin(), split->labels.end()), 10);
    EXPECT_EQ(std::set<uint8_t>(split->labels.begin(), split->labels.end()).size(), 10u);
  }
  EXPECT_EQ(fashion_mnist_classes().size(), 10u);
  EXPECT_EQ(fashion_mnist_classes()[9], "Ankle boot");
}

// Big-endian idx files written by the test.
std::vector<uint8_t> idx(const std::vector<uint32_t>& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  for (uint32_t v : header) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

class IdxFiles : public px::test::TempDirTest {
 protected:
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return p;
  }
  std::string write_gz(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string p = path(name);
    gzFile f = gzopen(p.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return p;
  }
};

const std::vector<uint8_t> kThreeImages(3 * 28 * 28, 9);
const std::vector<uint8_t> kThreeLabels = {4, 0, 9};

TEST_F(IdxFiles, PlainAndGzippedFilesRead) {
  write("s-images-idx3-ubyte", idx({2051, 3, 28, 28}, kThreeImages));
  write_gz("s-labels-idx1-ubyte.gz", idx({2049, 3}, kThreeLabels));
  const FashionMnist s = read_fashion_mnist(dir_.string(), "s");
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.images, kThreeImages);
  EXPECT_EQ(s.labels, kThreeLabels);
}

TEST_F(IdxFiles, MalformedFilesAreDataErrorsNamingTheFile) {
  const std::string labels = write("s-labels-idx1-ubyte", idx({2049, 3}, kThreeLabels));
  const auto read = [&] { read_fashion_mnist(dir_.string(), "s"); };
  expect_data_error(read, {(dir_ / "s-images-idx3-ubyte.gz").string()});  // missing

  const std::string images = write("s-images-idx3-ubyte", idx({2049, 3, 28, 28}, kThreeImages));
  expect_data_error(read, {images});  // labels' magic
  write("s-images-idx3-ubyte", idx({2051, 3, 28, 27}, kThreeImages));
  expect_data_error(read, {images});  // not 28 x 28
  write("s-images-idx3-ubyte", idx({2051, 4, 28, 28}, kThreeImages));
  expect_data_error(read, {images});  // truncated
  write("s-images-idx3-ubyte", idx({2051, 2, 28, 28}, kThreeImages));
  expect_data_error(read, {images});  // trailing bytes
  write("s-images-idx3-ubyte", idx({2051, 0xFFFFFFFF, 28, 28}, kThreeImages));
  expect_data_error(read, {images});  // absurd count, no huge allocation

  write("s-images-idx3-ubyte", idx({2051, 3, 28, 28}, kThreeImages));
  write("s-labels-idx1-ubyte", idx({2049, 2}, {4, 0}));
  expect_data_error(read, {labels});  // count differs from the images'
  write("s-labels-idx1-ubyte", idx({2049, 3}, {4, 10, 9}));
  expect_data_error(read, {labels});  // label out of range

  std::vector<uint8_t> gz_cut;  // a gzip stream cut short
  const std::string gz = write_gz("s-labels-idx1-ubyte.gz", idx({2049, 3}, kThreeLabels));
  {
    std::ifstream in(gz, std::ios::binary);
    gz_cut.assign(std::istreambuf_iterator<char>(in), {});
  }
  gz_cut.resize(gz_cut.size() - 10);
  write("s-labels-idx1-ubyte.gz", gz_cut);
  expect_data_error(read, {gz});
}

// A box's pixel edges on the canvas: x0 = first column, x1 = last column + 1.
struct PixelBox {
  int x0, y0, x1, y1;
};

PixelBox pixel_box(const DetectionExample& ex, int64_t b) {
  const float* v = &ex.boxes[4 * b];
  const auto edge = [&](float centre, float size, float sign, int side) {
    const double e = (centre + sign * size / 2) * side;
    EXPECT_NEAR(e, std::round(e), 1e-3) << "box " << b << " edge off the pixel grid";
    return static_cast<int>(std::lround(e));
  };
  return {edge(v[0], v[2], -1, ex.width), edge(v[1], v[3], -1, ex.height), edge(v[0], v[2], 1, ex.width),
          edge(v[1], v[3], 1, ex.height)};
}

bool lit(const DetectionExample& ex, int x, int y) {
  const uint8_t* p = &ex.pixels[(size_t(y) * ex.width + x) * 3];
  EXPECT_TRUE(p[0] == p[1] && p[1] == p[2]) << "pixel " << x << "," << y << " is not grey";
  return p[0] != 0;
}

// Every box lies in [0, 1] with a lit pixel on each of its four edges, and every lit pixel is inside a box.
void expect_tight_boxes(const DetectionExample& ex) {
  ASSERT_EQ(ex.boxes.size(), size_t(4 * ex.num_boxes()));
  ASSERT_EQ(ex.pixels.size(), size_t(ex.height) * ex.width * 3);
  std::vector<PixelBox> boxes;
  for (int64_t b = 0; b < ex.num_boxes(); ++b) {
    const PixelBox p = pixel_box(ex, b);
    ASSERT_TRUE(0 <= p.x0 && p.x0 < p.x1 && p.x1 <= ex.width && 0 <= p.y0 && p.y0 < p.y1 && p.y1 <= ex.height);
    bool top = false, bottom = false, left = false, right = false;
    for (int x = p.x0; x < p.x1; ++x) top |= lit(ex, x, p.y0), bottom |= lit(ex, x, p.y1 - 1);
    for (int y = p.y0; y < p.y1; ++y) left |= lit(ex, p.x0, y), right |= lit(ex, p.x1 - 1, y);
    EXPECT_TRUE(top && bottom && left && right) << "box " << b << " of scene " << ex.image_id << " is loose";
    boxes.push_back(p);
  }
  for (int y = 0; y < ex.height; ++y) {
    for (int x = 0; x < ex.width; ++x) {
      if (!lit(ex, x, y)) continue;
      const bool covered = std::any_of(boxes.begin(), boxes.end(), [&](const PixelBox& p) {
        return p.x0 <= x && x < p.x1 && p.y0 <= y && y < p.y1;
      });
      ASSERT_TRUE(covered) << "pixel " << x << "," << y << " of scene " << ex.image_id << " is outside every box";
    }
  }
}

TEST(Scenes, AreAPureFunctionOfOptionsAndIndex) {
  REQUIRE_DEBIAN_FASHION_MNIST();
  const SceneOptions options{.seed = 17};
  const DetectionExample a = compose_scene(*debian_train(), options, 5);
  const DetectionExample b = compose_scene(*debian_train(), options, 5);
  compose_scene(*debian_train(), options, 6);  // composing another scene in between changes nothing
  const DetectionExample c = compose_scene(*debian_train(), options, 5);
  for (const DetectionExample* same : {&b, &c}) {
    EXPECT_EQ(same->pixels, a.pixels);
    EXPECT_EQ(same->boxes, a.boxes);
    EXPECT_EQ(same->labels, a.labels);
  }
  EXPECT_EQ(a.image_id, 5);
  EXPECT_EQ(a.height, 128);
  EXPECT_EQ(a.width, 128);
  EXPECT_EQ(a.channels, 3);
  EXPECT_NE(compose_scene(*debian_train(), options, 6).pixels, a.pixels);
  EXPECT_NE(compose_scene(*debian_train(), SceneOptions{.seed = 18}, 5).pixels, a.pixels);
}

TEST(Scenes, HoldOneToSixTightBoxes) {
  REQUIRE_DEBIAN_FASHION_MNIST();
  const SceneOptions options{.seed = 3};
  std::set<int64_t> counts;
  for (int64_t i = 0; i < 200; ++i) {
    const DetectionExample ex = compose_scene(*debian_train(), options, i);
    ASSERT_GE(ex.num_boxes(), 1);
    ASSERT_LE(ex.num_boxes(), 6);
    counts.insert(ex.num_boxes());
    for (float v : ex.boxes) ASSERT_TRUE(v >= 0.f && v <= 1.f) << v;
    for (int32_t label : ex.labels) ASSERT_TRUE(label >= 0 && label < 10);
    expect_tight_boxes(ex);
  }
  EXPECT_EQ(counts, (std::set<int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST(Scenes, SingleItemBoxIsTheExtentOfTheLitPixels) {
  REQUIRE_DEBIAN_FASHION_MNIST();
  const SceneOptions options{.canvas = 96, .min_items = 1, .max_items = 1, .min_item_size = 28,
                             .max_item_size = 96, .seed = 9};
  for (int64_t i = 0; i < 50; ++i) {
    const DetectionExample ex = compose_scene(*debian_train(), options, i);
    ASSERT_EQ(ex.num_boxes(), 1);
    PixelBox lit_extent{ex.width, ex.height, 0, 0};
    for (int y = 0; y < ex.height; ++y) {
      for (int x = 0; x < ex.width; ++x) {
        if (!lit(ex, x, y)) continue;
        lit_extent = {std::min(lit_extent.x0, x), std::min(lit_extent.y0, y), std::max(lit_extent.x1, x + 1),
                      std::max(lit_extent.y1, y + 1)};
      }
    }
    const PixelBox box = pixel_box(ex, 0);
    EXPECT_EQ(box.x0, lit_extent.x0);
    EXPECT_EQ(box.y0, lit_extent.y0);
    EXPECT_EQ(box.x1, lit_extent.x1);
    EXPECT_EQ(box.y1, lit_extent.y1);
  }
}

// A synthetic split of 30 items: item k is a bright square with label k % 10, except blank items.
FashionMnist synthetic_split(const std::set<int64_t>& blank) {
  FashionMnist s;
  s.count = 30;
  s.images.assign(30 * 28 * 28, 0);
  for (int64_t k = 0; k < 30; ++k) {
    s.labels.push_back(static_cast<uint8_t>(k % 10));
    if (blank.count(k)) continue;
    for (int y = 6; y < 22; ++y) std::fill_n(s.images.begin() + k * 784 + y * 28 + 6, 16, 200);
  }
  return s;
}

TEST(Scenes, DrawOnlyFromTheirItemRange) {
  const FashionMnist source = synthetic_split({});
  std::set<int32_t> in_range, whole;
  for (int64_t i = 0; i < 100; ++i) {
    const DetectionExample ex = compose_scene(source, SceneOptions{.item_begin = 12, .item_end = 15}, i);
    in_range.insert(ex.labels.begin(), ex.labels.end());
    expect_tight_boxes(ex);
    const DetectionExample all = compose_scene(source, SceneOptions{}, i);
    whole.insert(all.labels.begin(), all.labels.end());
  }
  EXPECT_EQ(in_range, (std::set<int32_t>{2, 3, 4}));
  EXPECT_EQ(whole.size(), 10u);
}

TEST(Scenes, BlankItemsAreSkipped) {
  const FashionMnist source = synthetic_split({20, 22});  // [20, 23) holds one drawable item, label 1
  for (int64_t i = 0; i < 50; ++i) {
    const DetectionExample ex = compose_scene(source, SceneOptions{.item_begin = 20, .item_end = 23}, i);
    ASSERT_GE(ex.num_boxes(), 1);
    for (int32_t label : ex.labels) EXPECT_EQ(label, 1);
    expect_tight_boxes(ex);
  }
}

TEST(Scenes, ItemsLargerThanTheCanvasAreClampedToIt) {
  const FashionMnist source = synthetic_split({});
  for (int64_t i = 0; i < 20; ++i) {
    const DetectionExample ex = compose_scene(source, SceneOptions{.canvas = 32}, i);  // items 20..64 asked
    EXPECT_EQ(ex.height, 32);
    expect_tight_boxes(ex);
  }
}

}  // namespace
}  // namespace px::data

// data/image_io: PNG round trips, JPEG decoding of labelme's VOC photos, DataErrors for missing,
// truncated and corrupt files, bilinear resize against hand-computed values, and clipped box drawing.
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/image_io.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::expect_data_error;

const fs::path kVocJpegs = "/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc/JPEGImages";

using ImageIoTest = px::test::TempDirTest;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A deterministic (H, W, C) pattern with every byte value represented.
Image pattern_image(int32_t h, int32_t w, int32_t c) {
  Image image{h, w, c, std::vector<uint8_t>(static_cast<size_t>(h) * w * c)};
  for (size_t k = 0; k < image.pixels.size(); ++k) image.pixels[k] = static_cast<uint8_t>((k * 37 + k / 7) % 256);
  return image;
}


TEST_F(ImageIoTest, PngRoundTripIsExact) {
  const Image rgb = pattern_image(17, 23, 3);
  write_png(path("rgb.png"), rgb);
  const Image back = read_image(path("rgb.png"));
  EXPECT_EQ(back.height, 17);
  EXPECT_EQ(back.width, 23);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.pixels, rgb.pixels);
}

TEST_F(ImageIoTest, GreyPngExpandsAndAlphaIsDropped) {
  const Image grey = pattern_image(5, 4, 1), rgba = pattern_image(5, 4, 4);
  write_png(path("grey.png"), grey);
  write_png(path("rgba.png"), rgba);
  const Image grey_back = read_image(path("grey.png")), rgba_back = read_image(path("rgba.png"));
  ASSERT_EQ(grey_back.channels, 3);
  ASSERT_EQ(rgba_back.channels, 3);
  for (size_t p = 0; p < 20; ++p) {
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(grey_back.pixels[3 * p + k], grey.pixels[p]);
      EXPECT_EQ(rgba_back.pixels[3 * p + k], rgba.pixels[4 * p + k]);
    }
  }
}

TEST_F(ImageIoTest, JpegSizesMatchTheVocAnnotations) {
  if (!fs::exists(kVocJpegs)) GTEST_SKIP() << "labelme-examples is not installed";
  // <size> of Annotations/2011_000003.xml, 2011_000006.xml and 2011_000025.xml.
  const std::vector<std::pair<std::string, std::pair<int, int>>> expected = {
      {"2011_000003.jpg", {338, 500}}, {"2011_000006.jpg", {375, 500}}, {"2011_000025.jpg", {375, 500}}};
  for (const auto& [name, hw] : expected) {
    const Image image = read_image((kVocJpegs / name).string());
    EXPECT_EQ(image.height, hw.first) << name;
    EXPECT_EQ(image.width, hw.second) << name;
    EXPECT_EQ(image.channels, 3);
    ASSERT_EQ(image.pixels.size(), size_t(hw.first) * hw.second * 3);
    EXPECT_NE(std::set<uint8_t>(image.pixels.begin(), image.pixels.end()).size(), 1u) << name << " decoded flat";
  }
}

TEST_F(ImageIoTest, TruncatedAndCorruptJpegsAreDataErrors) {
  if (!fs::exists(kVocJpegs)) GTEST_SKIP() << "labelme-examples is not installed";
  const std::vector<uint8_t> jpeg = read_bytes((kVocJpegs / "2011_000003.jpg").string());
  ASSERT_GT(jpeg.size(), 1000u);

  write_bytes(path("truncated.jpg"), std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2));
  expect_data_error([&] { read_image(path("truncated.jpg")); }, {path("truncated.jpg")});

  std::vector<uint8_t> garbage_header = jpeg;  // keeps the SOI marker, scrambles the markers after it
  for (size_t k = 3; k < 64; ++k) garbage_header[k] = static_cast<uint8_t>(k * 13);
  write_bytes(path("header.jpg"), garbage_header);
  expect_data_error([&] { read_image(path("header.jpg")); }, {path("header.jpg")});

  std::vector<uint8_t> bad_entropy = jpeg;  // scrambles the middle of the entropy-coded data
  for (size_t k = jpeg.size() / 2; k < jpeg.size() / 2 + 256; ++k) bad_entropy[k] = 0xFF;
  write_bytes(path("entropy.jpg"), bad_entropy);
  expect_data_error([&] { read_image(path("entropy.jpg")); }, {path("entropy.jpg")});
}

TEST_F(ImageIoTest, TruncatedAndCorruptPngsAreDataErrors) {
  write_png(path("ok.png"), pattern_image(40, 30, 3));
  const std::vector<uint8_t> png = read_bytes(path("ok.png"));

  write_bytes(path("truncated.png"), std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
  expect_data_error([&] { read_image(path("truncated.png")); }, {path("truncated.png")});

  write_bytes(path("no_end.png"), std::vector<uint8_t>(png.begin(), png.end() - 12));  // IEND cut off
  expect_data_error([&] { read_image(path("no_end.png")); }, {path("no_end.png")});

  std::vector<uint8_t> flipped = png;  // a flipped pixel-data byte breaks the IDAT CRC
  flipped[png.size() / 2] ^= 0x5A;
  write_bytes(path("crc.png"), flipped);
  expect_data_error([&] { read_image(path("crc.png")); }, {path("crc.png")});
}

TEST_F(ImageIoTest, MissingEmptyAndForeignFilesAreDataErrors) {
  expect_data_error([&] { read_image(path("missing.png")); }, {path("missing.png")});
  write_bytes(path("empty.jpg"), {});
  expect_data_error([&] { read_image(path("empty.jpg")); }, {path("empty.jpg")});
  write_bytes(path("text.png"), {'h', 'e', 'l', 'l', 'o'});
  expect_data_error([&] { read_image(path("text.png")); }, {path("text.png")});
  expect_data_error([&] { write_png(path("no_such_dir/x.png"), pattern_image(2, 2, 3)); },
                    {path("no_such_dir/x.png")});
}

TEST(ResizeBilinear, UpsamplesOneRowByHand) {
  // src = (dst + 0.5) / 2 - 0.5 -> -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  const Image in{1, 2, 1, {0, 100}};
  EXPECT_EQ(resize_bilinear(in, 1, 4).pixels, (std::vector<uint8_t>{0, 25, 75, 100}));
}

TEST(ResizeBilinear, TwoByTwoToThreeByThreeByHand) {
  // src = (dst + 0.5) * 2 / 3 - 0.5 -> 0 (clamped), 0.5, 1 (clamped); the centre is the mean 87.5 -> 88.
  const Image in{2, 2, 1, {0, 100, 200, 50}};
  EXPECT_EQ(resize_bilinear(in, 3, 3).pixels, (std::vector<uint8_t>{0, 50, 100, 100, 88, 75, 200, 125, 50}));
}

TEST(ResizeBilinear, DownsamplesAndKeepsChannelsApart) {
  // 4 -> 2 columns: src = 0.5 and 2.5, the means of columns (0, 1) and (2, 3); 35.5 rounds to 36.
  const Image in{1, 4, 2, {10, 200, 20, 100, 30, 0, 41, 255}};
  EXPECT_EQ(resize_bilinear(in, 1, 2).pixels, (std::vector<uint8_t>{15, 150, 36, 128}));
}

TEST(ResizeBilinear, SameSizeIsIdentity) {
  const Image in = pattern_image(7, 5, 3);
  const Image out = resize_bilinear(in, 7, 5);
  EXPECT_EQ(out.height, 7);
  EXPECT_EQ(out.width, 5);
  EXPECT_EQ(out.channels, 3);
  EXPECT_EQ(out.pixels, in.pixels);
}

// (x, y) of every pixel that is not black.
std::set<std::pair<int, int>> lit_pixels(const Image& image) {
  std::set<std::pair<int, int>> lit;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const uint8_t* p = &image.pixels[(size_t(y) * image.width + x) * 3];
      if (p[0] || p[1] || p[2]) {
        EXPECT_TRUE(p[0] == 9 && p[1] == 8 && p[2] == 7) << x << "," << y;
        lit.insert({x, y});
      }
    }
  }
  return lit;
}

TEST(DrawBox, ClipsToTheImage) {
  const uint8_t colour[3] = {9, 8, 7};
  Image image{8, 10, 3, std::vector<uint8_t>(8 * 10 * 3, 0)};
  // The left edge (x = -3) and bottom edge (y = 20) lie outside: only the top and right edges show.
  draw_box(image, -3.f, 2.f, 5.f, 20.f, colour);
  std::set<std::pair<int, int>> expected;
  for (int x = 0; x <= 5; ++x) expected.insert({x, 2});
  for (int y = 2; y < 8; ++y) expected.insert({5, y});
  EXPECT_EQ(lit_pixels(image), expected);

  draw_box(image, 20.f, 20.f, 30.f, 30.f, colour);  // wholly outside: nothing
  EXPECT_EQ(lit_pixels(image), expected);
}

TEST(DrawBox, ThicknessGrowsInward) {
  const uint8_t colour[3] = {9, 8, 7};
  Image image{8, 10, 3, std::vector<uint8_t>(8 * 10 * 3, 0)};
  draw_box(image, 1.f, 1.f, 6.f, 6.f, colour, 2);
  std::set<std::pair<int, int>> expected;
  for (int y = 1; y <= 6; ++y) {
    for (int x = 1; x <= 6; ++x) {
      if (x <= 2 || x >= 5 || y <= 2 || y >= 5) expected.insert({x, y});
    }
  }
  EXPECT_EQ(lit_pixels(image), expected);
}

}  // namespace
}  // namespace px::data

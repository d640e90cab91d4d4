// data/image_io: PNG round trips, every PNG colour type and bit depth (written with libpng here) as PIL's
// convert("RGB"), JPEG decoding of labelme's VOC photos, DataErrors for missing, truncated, corrupt, CMYK, empty,
// zero-sized and non-regular files, bilinear resize against hand-computed values, and clipped drawing.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <jpeglib.h>
#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

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

// A PNG of any colour type, bit depth and interlacing, written by libpng from packed rows (16-bit samples
// big-endian, as PNG stores them).
struct PngSpec {
  int width = 0, height = 0, bit_depth = 8, colour_type = PNG_COLOR_TYPE_RGB;
  bool interlaced = false;
  std::vector<png_color> palette;
  std::vector<uint8_t> palette_alpha;  // tRNS of a palette image
};

void write_png_spec(const std::string& path, const PngSpec& spec, std::vector<std::vector<uint8_t>> rows) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, file);
  png_set_IHDR(png, info, spec.width, spec.height, spec.bit_depth, spec.colour_type,
               spec.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!spec.palette.empty()) png_set_PLTE(png, info, spec.palette.data(), static_cast<int>(spec.palette.size()));
  if (!spec.palette_alpha.empty()) {
    png_set_tRNS(png, info, spec.palette_alpha.data(), static_cast<int>(spec.palette_alpha.size()), nullptr);
  }
  std::vector<png_bytep> pointers;
  for (auto& row : rows) pointers.push_back(row.data());
  png_set_rows(png, info, pointers.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(file);
}

// A 16-bit RGB image's pixel (x, y) and an 8-bit grey image's: distinct high and low bytes everywhere.
uint16_t sample16(int x, int y, int c) { return static_cast<uint16_t>((x * 4099 + y * 257 * 7 + c * 11111) % 65536); }

// Replaces a PNG's IHDR width with `width` and recomputes the chunk's CRC, so only the size is wrong.
std::vector<uint8_t> with_ihdr_width(std::vector<uint8_t> png, uint32_t width) {
  // signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), 5 bytes, CRC (4).
  for (int k = 0; k < 4; ++k) png[16 + k] = static_cast<uint8_t>(width >> (24 - 8 * k));
  const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, nullptr, 0), png.data() + 12, 17));
  for (int k = 0; k < 4; ++k) png[29 + k] = static_cast<uint8_t>(crc >> (24 - 8 * k));
  return png;
}

// A 4x3 CMYK JPEG written by libjpeg.
void write_cmyk_jpeg(const std::string& path) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = 4;
  cinfo.image_height = 3;
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<uint8_t> row(16, 100);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  write_bytes(path, std::vector<uint8_t>(buffer, buffer + size));
  jpeg_destroy_compress(&cinfo);
  std::free(buffer);
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

TEST_F(ImageIoTest, SixteenBitPngsKeepTheHighByte) {
  for (const bool interlaced : {false, true}) {
    const int w = 9, h = 7;
    PngSpec rgb{w, h, 16, PNG_COLOR_TYPE_RGB, interlaced, {}, {}};
    PngSpec grey{w, h, 16, PNG_COLOR_TYPE_GRAY, interlaced, {}, {}};
    std::vector<std::vector<uint8_t>> rgb_rows(h), grey_rows(h);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) rgb_rows[y].insert(rgb_rows[y].end(), {uint8_t(sample16(x, y, c) >> 8),
                                                                           uint8_t(sample16(x, y, c) & 0xFF)});
        grey_rows[y].insert(grey_rows[y].end(), {uint8_t(sample16(x, y, 0) >> 8), uint8_t(sample16(x, y, 0) & 0xFF)});
      }
    }
    write_png_spec(path("rgb16.png"), rgb, rgb_rows);
    write_png_spec(path("grey16.png"), grey, grey_rows);
    const Image rgb_back = read_image(path("rgb16.png")), grey_back = read_image(path("grey16.png"));
    ASSERT_EQ(rgb_back.channels, 3);
    ASSERT_EQ(grey_back.channels, 3);
    ASSERT_EQ(rgb_back.pixels.size(), size_t(w * h * 3));
    ASSERT_EQ(grey_back.pixels.size(), size_t(w * h * 3));
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) {
          const size_t at = (size_t(y) * w + x) * 3 + c;
          EXPECT_EQ(rgb_back.pixels[at], sample16(x, y, c) >> 8) << x << "," << y << " interlaced " << interlaced;
          EXPECT_EQ(grey_back.pixels[at], sample16(x, y, 0) >> 8) << x << "," << y << " interlaced " << interlaced;
        }
      }
    }
  }
}

TEST_F(ImageIoTest, PalettePngsExpandAndTheirTransparencyIsDropped) {
  const std::vector<png_color> palette = {{10, 20, 30}, {200, 100, 50}, {0, 255, 0}, {255, 255, 255}};
  // 2 bits per index, 4 pixels a byte: the row 0 1 2 3 3 2 (padded).
  const std::vector<std::vector<uint8_t>> rows = {{0b00011011, 0b11100000}, {0b11111111, 0b00000000}};
  const std::vector<int> indices = {0, 1, 2, 3, 3, 2, 3, 3, 3, 3, 0, 0};
  write_png_spec(path("palette.png"), {6, 2, 2, PNG_COLOR_TYPE_PALETTE, false, palette, {}}, rows);
  write_png_spec(path("palette_trns.png"), {6, 2, 2, PNG_COLOR_TYPE_PALETTE, false, palette, {0, 128}}, rows);
  for (const char* name : {"palette.png", "palette_trns.png"}) {
    const Image back = read_image(path(name));
    ASSERT_EQ(back.height, 2);
    ASSERT_EQ(back.width, 6);
    ASSERT_EQ(back.channels, 3);
    for (size_t p = 0; p < indices.size(); ++p) {
      const png_color& c = palette[indices[p]];
      EXPECT_EQ(back.pixels[3 * p], c.red) << name << " pixel " << p;
      EXPECT_EQ(back.pixels[3 * p + 1], c.green) << name << " pixel " << p;
      EXPECT_EQ(back.pixels[3 * p + 2], c.blue) << name << " pixel " << p;
    }
  }
}

TEST_F(ImageIoTest, LowBitGreyAndGreyAlphaPngsExpand) {
  // 1-bit grey: 0 -> 0, 1 -> 255. Grey + alpha (8 bits): the alpha is dropped.
  write_png_spec(path("bits.png"), {5, 1, 1, PNG_COLOR_TYPE_GRAY, false, {}, {}}, {{0b10110000}});
  write_png_spec(path("grey_alpha.png"), {2, 1, 8, PNG_COLOR_TYPE_GRAY_ALPHA, true, {}, {}}, {{77, 0, 199, 255}});
  const Image bits = read_image(path("bits.png")), grey_alpha = read_image(path("grey_alpha.png"));
  EXPECT_EQ(bits.pixels, (std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0}));
  EXPECT_EQ(grey_alpha.pixels, (std::vector<uint8_t>{77, 77, 77, 199, 199, 199}));
}

TEST_F(ImageIoTest, ZeroSizedAndCmykImagesAreDataErrors) {
  write_png(path("ok.png"), pattern_image(4, 4, 3));
  write_bytes(path("zero_width.png"), with_ihdr_width(read_bytes(path("ok.png")), 0));
  expect_data_error([&] { read_image(path("zero_width.png")); }, {path("zero_width.png"), "width"});
  write_bytes(path("huge.png"), with_ihdr_width(read_bytes(path("ok.png")), 1u << 30));  // 2^30 x 4: refused
  expect_data_error([&] { read_image(path("huge.png")); }, {path("huge.png")});
  write_cmyk_jpeg(path("cmyk.jpg"));
  expect_data_error([&] { read_image(path("cmyk.jpg")); }, {path("cmyk.jpg"), "CMYK"});
}

TEST_F(ImageIoTest, DirectoriesAndOtherNonRegularFilesAreRefusedUnread) {
  fs::create_directory(path("folder.png"));
  expect_data_error([&] { read_image(path("folder.png")); }, {path("folder.png"), "directory"});
  ASSERT_EQ(mkfifo(path("pipe.png").c_str(), 0600), 0);  // opening it would block until a writer came
  expect_data_error([&] { read_image(path("pipe.png")); }, {path("pipe.png"), "not a regular file"});
  expect_data_error([&] { read_image("/dev/zero"); }, {"/dev/zero", "not a regular file"});  // would never end
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

TEST(FillRect, FillsTheInclusiveRectangleClipped) {
  const uint8_t colour[3] = {9, 8, 7};
  Image image{4, 5, 3, std::vector<uint8_t>(4 * 5 * 3, 0)};
  fill_rect(image, 3, -2, 9, 1, colour);
  EXPECT_EQ(lit_pixels(image), (std::set<std::pair<int, int>>{{3, 0}, {4, 0}, {3, 1}, {4, 1}}));
  fill_rect(image, 2, 2, 1, 3, colour);  // empty: x1 < x0
  fill_rect(image, -10, -10, -1, -1, colour);
  EXPECT_EQ(lit_pixels(image).size(), 4u);
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

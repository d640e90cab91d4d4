// data/bitmap_font: text sizes, glyphs drawn where the font says (upper-case for lower-case, '?' for unknown
// characters), clipping at every edge, and labels on their background in a readable ink.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "data/bitmap_font.h"

namespace px::data {
namespace {

Image black(int32_t h, int32_t w) { return Image{h, w, 3, std::vector<uint8_t>(size_t(h) * w * 3, 0)}; }

// (x, y) of every pixel of colour rgb.
std::set<std::pair<int, int>> pixels_of(const Image& image, const uint8_t rgb[3]) {
  std::set<std::pair<int, int>> found;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const uint8_t* p = &image.pixels[(size_t(y) * image.width + x) * 3];
      if (p[0] == rgb[0] && p[1] == rgb[1] && p[2] == rgb[2]) found.insert({x, y});
    }
  }
  return found;
}

const uint8_t kInk[3] = {200, 10, 10};

TEST(BitmapFont, TextSizeCountsGlyphsAndGaps) {
  EXPECT_EQ(text_size(""), (std::pair<int64_t, int64_t>{0, 0}));
  EXPECT_EQ(text_size("A"), (std::pair<int64_t, int64_t>{5, 7}));
  EXPECT_EQ(text_size("Bag 0.93"), (std::pair<int64_t, int64_t>{8 * 6 - 1, 7}));
  EXPECT_EQ(text_size("Bag 0.93", 3), (std::pair<int64_t, int64_t>{(8 * 6 - 1) * 3, 21}));
}

TEST(BitmapFont, DrawsTheGlyphsRows) {
  Image image = black(9, 8);
  draw_text(image, 1, 1, "L", kInk);  // '#' down column 0, and the whole bottom row
  std::set<std::pair<int, int>> expected;
  for (int y = 1; y <= 7; ++y) expected.insert({1, y});
  for (int x = 1; x <= 5; ++x) expected.insert({x, 7});
  EXPECT_EQ(pixels_of(image, kInk), expected);

  Image scaled = black(16, 12);
  draw_text(scaled, 0, 0, "L", kInk, 2);
  EXPECT_EQ(pixels_of(scaled, kInk).size(), expected.size() * 4);
}

TEST(BitmapFont, LowerCaseIsUpperCaseAndUnknownIsAQuestionMark) {
  Image lower = black(7, 30), upper = black(7, 30), unknown = black(7, 5), question = black(7, 5);
  draw_text(lower, 0, 0, "shirt", kInk);
  draw_text(upper, 0, 0, "SHIRT", kInk);
  EXPECT_EQ(lower.pixels, upper.pixels);
  EXPECT_FALSE(pixels_of(lower, kInk).empty());
  draw_text(unknown, 0, 0, "\xC3", kInk);
  draw_text(question, 0, 0, "?", kInk);
  EXPECT_EQ(unknown.pixels, question.pixels);
}

TEST(BitmapFont, ClipsAtEveryEdge) {
  Image image = black(5, 5);
  draw_text(image, -3, -4, "MW", kInk, 2);
  draw_text(image, 3, 3, "88", kInk, 3);
  draw_text(image, -1000000, 1000000, "X", kInk);
  EXPECT_FALSE(pixels_of(image, kInk).empty());
  EXPECT_EQ(image.pixels.size(), 5u * 5 * 3);
}

TEST(BitmapFont, LabelsFillTheirBackgroundWithReadableInk) {
  const uint8_t dark[3] = {20, 20, 120}, light[3] = {250, 240, 100};
  const uint8_t white[3] = {255, 255, 255}, black_ink[3] = {0, 0, 0};
  Image on_dark = black(20, 40);
  EXPECT_EQ(draw_label(on_dark, 2, 3, "A1", dark), (std::pair<int64_t, int64_t>{11 + 2, 7 + 2}));
  const auto ink = pixels_of(on_dark, white), background = pixels_of(on_dark, dark);
  EXPECT_FALSE(ink.empty());
  EXPECT_EQ(ink.size() + background.size(), 13u * 9);
  for (const auto& [x, y] : ink) EXPECT_TRUE(x >= 3 && x < 14 && y >= 4 && y < 11) << x << "," << y;

  Image on_light = black(20, 40);
  draw_label(on_light, 0, 0, "A1", light);
  EXPECT_EQ(pixels_of(on_light, black_ink).size(), ink.size() + (20 * 40 - 13 * 9));  // ink + untouched image
}

}  // namespace
}  // namespace px::data

// DETR's detection transforms: the get_size_with_aspect_ratio rule on hand-computed cases, flip,
// resize and crop on boxes, determinism of the keyed pipeline, and normalised padded collation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "data/detection_transforms.h"

namespace px::data {
namespace {

// A (H, W, 3) image whose pixel (y, x) is (x % 256, y % 256, 7).
DetectionSample gradient_sample(int32_t height, int32_t width, std::vector<float> boxes) {
  DetectionSample s;
  s.image = Image{height, width, 3, std::vector<uint8_t>(static_cast<size_t>(height) * width * 3)};
  for (int32_t y = 0; y < height; ++y) {
    for (int32_t x = 0; x < width; ++x) {
      uint8_t* px = &s.image.pixels[(static_cast<size_t>(y) * width + x) * 3];
      px[0] = static_cast<uint8_t>(x % 256);
      px[1] = static_cast<uint8_t>(y % 256);
      px[2] = 7;
    }
  }
  s.labels.resize(boxes.size() / 4);
  for (size_t i = 0; i < s.labels.size(); ++i) s.labels[i] = static_cast<int32_t>(i);
  s.boxes = std::move(boxes);
  return s;
}

void expect_boxes_near(const std::vector<float>& actual, const std::vector<float>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(actual[i], expected[i], 1e-5) << "coordinate " << i;
}

TEST(GetSize, MatchesDetrOnHandComputedCases) {
  using Size = std::pair<int32_t, int32_t>;
  // 640 / 480 * 800 = 1066.7 <= 1333: shorter side 800, longer int(800 * 640 / 480) = 1066.
  EXPECT_EQ(get_size_with_aspect_ratio(480, 640, 800, 1333), Size(800, 1066));
  EXPECT_EQ(get_size_with_aspect_ratio(640, 480, 800, 1333), Size(1066, 800));
  // 400 / 100 * 800 > 1333: shorter side round(1333 * 100 / 400) = round(333.25) = 333, longer 1332.
  EXPECT_EQ(get_size_with_aspect_ratio(100, 400, 800, 1333), Size(333, 1332));
  // round(161 * 100 / 200) = round(80.5) = 80 (half to even, as Python), longer 160.
  EXPECT_EQ(get_size_with_aspect_ratio(100, 200, 100, 161), Size(80, 160));
  // Already the right size: returned unchanged.
  EXPECT_EQ(get_size_with_aspect_ratio(800, 1000, 800, 1333), Size(800, 1000));
  // No max size.
  EXPECT_EQ(get_size_with_aspect_ratio(100, 300, 80, 0), Size(80, 240));
  EXPECT_EQ(get_size_with_aspect_ratio(128, 128, 96, 160), Size(96, 96));
  // 333 * 500 / 375 = 444.0 exactly.
  EXPECT_EQ(get_size_with_aspect_ratio(500, 375, 333, 0), Size(444, 333));
}

TEST(Hflip, MirrorsPixelsAndBoxCentres) {
  DetectionSample s = gradient_sample(4, 6, {0.25f, 0.5f, 0.2f, 0.4f, 0.9f, 0.1f, 0.1f, 0.1f});
  hflip(s);
  for (int32_t x = 0; x < 6; ++x) EXPECT_EQ(s.image.pixels[(1 * 6 + x) * 3], 5 - x);
  expect_boxes_near(s.boxes, {0.75f, 0.5f, 0.2f, 0.4f, 0.1f, 0.1f, 0.1f, 0.1f});
  EXPECT_EQ(s.labels, (std::vector<int32_t>{0, 1}));
}

TEST(Resize, ShorterSideRuleKeepsNormalisedBoxes) {
  const std::vector<float> boxes = {0.3f, 0.6f, 0.2f, 0.5f};
  DetectionSample s = gradient_sample(48, 64, boxes);
  resize(s, 96, 160);
  EXPECT_EQ(s.image.height, 96);
  EXPECT_EQ(s.image.width, 128);
  EXPECT_EQ(s.image.pixels.size(), 96u * 128u * 3u);
  expect_boxes_near(s.boxes, boxes);
  resize(s, 120, 150);  // 128 / 96 * 120 = 160 > 150: shorter side round(150 * 96 / 128) = 112
  EXPECT_EQ(s.image.height, 112);
  EXPECT_EQ(s.image.width, 149);
}

TEST(Crop, ClipsBoxesAndDropsEmptyOnes) {
  // 100 x 100 image; crop rows [20, 70), columns [10, 90): 50 high, 80 wide.
  DetectionSample s = gradient_sample(100, 100, {
                                                    0.5f, 0.5f, 0.2f, 0.2f,    // inside: x 40..60, y 40..60
                                                    0.1f, 0.3f, 0.2f, 0.2f,    // x 0..20 -> 10..20, y 20..40
                                                    0.5f, 0.9f, 0.2f, 0.1f,    // y 85..95: below the crop
                                                    0.96f, 0.5f, 0.08f, 0.2f,  // x 92..100: right of the crop
                                                });
  crop(s, 20, 10, 50, 80);
  EXPECT_EQ(s.image.height, 50);
  EXPECT_EQ(s.image.width, 80);
  EXPECT_EQ(s.image.pixels[0], 10);  // pixel (0, 0) was (20, 10)
  EXPECT_EQ(s.image.pixels[1], 20);
  EXPECT_EQ(s.labels, (std::vector<int32_t>{0, 1}));
  expect_boxes_near(s.boxes, {40.f / 80, 30.f / 50, 20.f / 80, 20.f / 50,    // x 30..50, y 20..40
                              5.f / 80, 10.f / 50, 10.f / 80, 20.f / 50});   // x 0..10, y 0..20
}

TEST(RandomSizeCrop, SidesWithinBoundsAndImage) {
  for (int64_t id = 0; id < 50; ++id) {
    DetectionSample s = gradient_sample(100, 90, {0.5f, 0.5f, 0.5f, 0.5f});
    PhiloxStream rng = augment_stream(1, 0, id);
    random_size_crop(s, 64, 95, rng);
    EXPECT_GE(s.image.height, 64);
    EXPECT_LE(s.image.height, 95);
    EXPECT_GE(s.image.width, 64);
    EXPECT_LE(s.image.width, 90);
  }
  DetectionSample small = gradient_sample(40, 50, {});
  PhiloxStream rng = augment_stream(1, 0, 0);
  random_size_crop(small, 64, 120, rng);  // smaller than min_side: kept whole
  EXPECT_EQ(small.image.height, 40);
  EXPECT_EQ(small.image.width, 50);
}

TEST(Augment, DeterministicFromTheKeyAndBoxesStayNormalised) {
  const DetectionAugment options;  // train
  int differing = 0;
  for (int64_t id = 0; id < 40; ++id) {
    const DetectionSample original =
        gradient_sample(120, 160, {0.3f, 0.4f, 0.3f, 0.5f, 0.8f, 0.7f, 0.2f, 0.3f, 0.05f, 0.05f, 0.1f, 0.1f});
    DetectionSample a = original, b = original, other_epoch = original;
    PhiloxStream ra = augment_stream(7, 2, id), rb = augment_stream(7, 2, id), rc = augment_stream(7, 3, id);
    augment(a, options, ra);
    augment(b, options, rb);
    augment(other_epoch, options, rc);
    EXPECT_EQ(a.image.pixels, b.image.pixels);
    EXPECT_EQ(a.boxes, b.boxes);
    EXPECT_EQ(a.labels, b.labels);
    if (a.image.pixels != other_epoch.image.pixels) ++differing;

    EXPECT_LE(std::max(a.image.height, a.image.width), options.max_size);
    EXPECT_GE(std::min(a.image.height, a.image.width), 1);
    EXPECT_EQ(a.boxes.size(), 4 * a.labels.size());
    for (size_t i = 0; i < a.labels.size(); ++i) {
      const float* box = &a.boxes[4 * i];
      EXPECT_GE(box[0] - 0.5f * box[2], -1e-5f);
      EXPECT_LE(box[0] + 0.5f * box[2], 1 + 1e-5f);
      EXPECT_GE(box[1] - 0.5f * box[3], -1e-5f);
      EXPECT_LE(box[1] + 0.5f * box[3], 1 + 1e-5f);
      EXPECT_GT(box[2], 0.0f);
      EXPECT_GT(box[3], 0.0f);
    }
  }
  EXPECT_GT(differing, 20);
}

TEST(Augment, EvalResizesTheShorterSide) {
  DetectionAugment options;
  options.train = false;
  DetectionSample s = gradient_sample(60, 90, {0.5f, 0.5f, 0.2f, 0.2f});
  PhiloxStream rng = augment_stream(0, 0, 0);
  augment(s, options, rng);
  // 90 / 60 * 128 = 192 > 160: shorter side round(160 * 60 / 90) = 107, longer int(107 * 90 / 60) = 160.
  EXPECT_EQ(s.image.height, 107);
  EXPECT_EQ(s.image.width, 160);
}

TEST(Collate, NormalisesAndMasksPadding) {
  std::vector<DetectionSample> samples;
  samples.push_back(gradient_sample(2, 3, {}));
  samples.push_back(gradient_sample(4, 2, {}));
  samples[0].image.pixels[0] = 255;  // (0, 0) red channel
  const PaddedImages batch = collate_images(samples);
  ASSERT_EQ(batch.images.shape(), (Shape{2, 3, 4, 3}));
  ASSERT_EQ(batch.mask.shape(), (Shape{2, 4, 3}));
  const float* images = batch.images.data<float>();
  const bool* mask = batch.mask.data<bool>();
  const auto image_at = [&](int64_t b, int64_t c, int64_t y, int64_t x) { return images[((b * 3 + c) * 4 + y) * 3 + x]; };
  for (int64_t b = 0; b < 2; ++b) {
    const Image& im = samples[b].image;
    for (int64_t y = 0; y < 4; ++y) {
      for (int64_t x = 0; x < 3; ++x) {
        const bool padding = y >= im.height || x >= im.width;
        EXPECT_EQ(mask[(b * 4 + y) * 3 + x], padding) << b << " " << y << " " << x;
        if (padding) {
          for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(image_at(b, c, y, x), 0.0f);
        }
      }
    }
  }
  EXPECT_FLOAT_EQ(image_at(0, 0, 0, 0), (1.0f - 0.485f) / 0.229f);
  EXPECT_FLOAT_EQ(image_at(1, 1, 3, 1), (3.0f / 255.0f - 0.456f) / 0.224f);  // green = y
  EXPECT_FLOAT_EQ(image_at(1, 2, 0, 0), (7.0f / 255.0f - 0.406f) / 0.225f);

  const PaddedImages empty = collate_images({});
  EXPECT_EQ(empty.images.shape(), (Shape{0, 3, 1, 1}));
  EXPECT_EQ(empty.mask.shape(), (Shape{0, 1, 1}));
}

}  // namespace
}  // namespace px::data

// DETR's detection transforms (datasets/transforms.py) on normalised cx, cy, w, h boxes, the
// train/eval pipeline drawn from a per-example Philox stream, and the padded, normalised image batch.
#include "data/detection_transforms.h"

#include <algorithm>
#include <cmath>

#include "core/util/check.h"

namespace px::data {
namespace {

constexpr uint32_t kAugmentDomain = 0x41554731;  // "AUG1"
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

int32_t pick(const std::vector<int>& choices, PhiloxStream& rng) {
  CHECK(!choices.empty()) << "an augmentation scale list is empty";
  return choices[rng.below(choices.size())];
}

Image crop_image(const Image& image, int32_t top, int32_t left, int32_t height, int32_t width) {
  Image out{height, width, image.channels, {}};
  const size_t row_bytes = static_cast<size_t>(width) * image.channels;
  out.pixels.resize(static_cast<size_t>(height) * row_bytes);
  for (int32_t y = 0; y < height; ++y) {
    const size_t src = (static_cast<size_t>(top + y) * image.width + left) * image.channels;
    std::copy_n(image.pixels.begin() + static_cast<std::ptrdiff_t>(src), row_bytes,
                out.pixels.begin() + static_cast<std::ptrdiff_t>(y * row_bytes));
  }
  return out;
}

}  // namespace

DetectionSample to_sample(DetectionExample&& example) {
  CHECK_EQ(example.channels, 3) << "the shard reader admits RGB images only";
  DetectionSample sample;
  sample.image = Image{example.height, example.width, example.channels, std::move(example.pixels)};
  sample.boxes = std::move(example.boxes);
  sample.labels = std::move(example.labels);
  return sample;
}

// Follows DETR's arithmetic step by step (Python floats are doubles; round() is half-to-even, which
// nearbyint gives under the default rounding mode), so both pick the same sizes.
std::pair<int32_t, int32_t> get_size_with_aspect_ratio(int32_t height, int32_t width, int32_t size,
                                                       int32_t max_size) {
  CHECK(height > 0 && width > 0 && size > 0) << height << "x" << width << " to " << size;
  if (max_size > 0) {
    const double min_original = std::min(height, width);
    const double max_original = std::max(height, width);
    if (max_original / min_original * size > max_size) {
      size = static_cast<int32_t>(std::nearbyint(max_size * min_original / max_original));
    }
  }
  if ((width <= height && width == size) || (height <= width && height == size)) return {height, width};
  if (width < height) return {static_cast<int32_t>(static_cast<double>(size) * height / width), size};
  return {size, static_cast<int32_t>(static_cast<double>(size) * width / height)};
}

void hflip(DetectionSample& sample) {
  Image& im = sample.image;
  const int32_t c = im.channels;
  for (int32_t y = 0; y < im.height; ++y) {
    uint8_t* row = im.pixels.data() + static_cast<size_t>(y) * im.width * c;
    for (int32_t lo = 0, hi = im.width - 1; lo < hi; ++lo, --hi) {
      std::swap_ranges(row + static_cast<size_t>(lo) * c, row + static_cast<size_t>(lo + 1) * c,
                       row + static_cast<size_t>(hi) * c);
    }
  }
  for (int64_t i = 0; i < sample.num_boxes(); ++i) sample.boxes[4 * i] = 1.0f - sample.boxes[4 * i];
}

void resize(DetectionSample& sample, int32_t size, int32_t max_size) {
  const auto [h, w] = get_size_with_aspect_ratio(sample.image.height, sample.image.width, size, max_size);
  if (h != sample.image.height || w != sample.image.width) sample.image = resize_bilinear(sample.image, h, w);
}

void crop(DetectionSample& sample, int32_t top, int32_t left, int32_t height, int32_t width) {
  const Image& im = sample.image;
  CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= im.height && left + width <= im.width)
      << "crop (" << top << ", " << left << ", " << height << ", " << width << ") of " << im.height << "x"
      << im.width;
  std::vector<float> boxes;
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < sample.num_boxes(); ++i) {
    const float* b = &sample.boxes[4 * i];
    // Pixel corners relative to the crop, clipped to it.
    const float x0 = std::clamp((b[0] - 0.5f * b[2]) * im.width - left, 0.0f, float(width));
    const float x1 = std::clamp((b[0] + 0.5f * b[2]) * im.width - left, 0.0f, float(width));
    const float y0 = std::clamp((b[1] - 0.5f * b[3]) * im.height - top, 0.0f, float(height));
    const float y1 = std::clamp((b[1] + 0.5f * b[3]) * im.height - top, 0.0f, float(height));
    if (!(x1 > x0 && y1 > y0)) continue;
    boxes.insert(boxes.end(), {0.5f * (x0 + x1) / width, 0.5f * (y0 + y1) / height, (x1 - x0) / width,
                               (y1 - y0) / height});
    labels.push_back(sample.labels[i]);
  }
  sample.image = crop_image(im, top, left, height, width);
  sample.boxes = std::move(boxes);
  sample.labels = std::move(labels);
}

void random_size_crop(DetectionSample& sample, int32_t min_side, int32_t max_side, PhiloxStream& rng) {
  const int32_t im_h = sample.image.height, im_w = sample.image.width;
  const auto side = [&](int32_t extent) {
    const int32_t hi = std::min(extent, max_side);
    return static_cast<int32_t>(rng.uniform_int(std::min(min_side, hi), hi));
  };
  const int32_t w = side(im_w);  // DETR draws the width first
  const int32_t h = side(im_h);
  const auto top = static_cast<int32_t>(rng.uniform_int(0, im_h - h));
  const auto left = static_cast<int32_t>(rng.uniform_int(0, im_w - w));
  crop(sample, top, left, h, w);
}

PhiloxStream augment_stream(uint64_t seed, int64_t epoch, int64_t example_id) {
  const uint64_t epoch_key = philox_key(seed, static_cast<uint64_t>(epoch), kAugmentDomain);
  return PhiloxStream(philox_key(epoch_key, static_cast<uint64_t>(example_id), kAugmentDomain), kAugmentDomain);
}

// Train: RandomHorizontalFlip, then RandomSelect(RandomResize(scales, max_size),
// [RandomResize(crop_resize_scales), RandomSizeCrop, RandomResize(scales, max_size)]). Eval: a resize.
void augment(DetectionSample& sample, const DetectionAugment& options, PhiloxStream& rng) {
  if (!options.train) {
    resize(sample, options.eval_size, options.max_size);
    return;
  }
  if (rng.uniform() < options.flip_prob) hflip(sample);
  if (rng.uniform() < 0.5) {
    resize(sample, pick(options.scales, rng), options.max_size);
    return;
  }
  resize(sample, pick(options.crop_resize_scales, rng), /*max_size=*/0);
  random_size_crop(sample, options.crop_min, options.crop_max, rng);
  resize(sample, pick(options.scales, rng), options.max_size);
}

PaddedImages collate_images(const std::vector<DetectionSample>& samples) {
  const auto b = static_cast<int64_t>(samples.size());
  int64_t h = b ? 0 : 1, w = b ? 0 : 1;
  for (const DetectionSample& s : samples) {
    h = std::max<int64_t>(h, s.image.height);
    w = std::max<int64_t>(w, s.image.width);
  }
  PaddedImages out{Tensor::empty({b, 3, h, w}, DType::f32), Tensor::empty({b, h, w}, DType::boolean)};
  float* images = out.images.data<float>();  // (B, 3, H, W)
  bool* mask = out.mask.data<bool>();        // (B, H, W)
  std::fill_n(images, out.images.numel(), 0.0f);
  std::fill_n(mask, out.mask.numel(), true);
  for (int64_t i = 0; i < b; ++i) {
    const Image& im = samples[static_cast<size_t>(i)].image;
    CHECK_EQ(im.channels, 3);
    for (int64_t y = 0; y < im.height; ++y) {
      std::fill_n(mask + (i * h + y) * w, im.width, false);
      for (int64_t x = 0; x < im.width; ++x) {
        const uint8_t* px = &im.pixels[static_cast<size_t>((y * im.width + x) * 3)];
        for (int64_t c = 0; c < 3; ++c) {
          const float value = static_cast<float>(px[c]) / 255.0f;
          images[((i * 3 + c) * h + y) * w + x] = (value - kImageNetMean[c]) / kImageNetStd[c];
        }
      }
    }
  }
  return out;
}

}  // namespace px::data

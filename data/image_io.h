// Images in memory (u8 HWC) and on disk: JPEG decode (libjpeg-turbo), PNG decode/encode (libpng),
// bilinear resize and box drawing for `parallax data inspect`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace px::data {

struct Image {
  int32_t height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // (H, W, C) row-major
};

// Decodes a JPEG or PNG file (chosen by its magic bytes) to RGB (C = 3); grey and palette images are
// expanded, alpha dropped. A missing, truncated or corrupt file is a DataError naming the file.
Image read_image(const std::string& path);
void write_png(const std::string& path, const Image& image);

// Bilinear resize (half-pixel centres, as PIL and torchvision's antialias=False) to (height, width).
Image resize_bilinear(const Image& image, int32_t height, int32_t width);
// Draws a rectangle outline (pixel coordinates, inclusive, clipped to the image) in colour rgb.
void draw_box(Image& image, float x0, float y0, float x1, float y1, const uint8_t rgb[3], int thickness = 1);

}  // namespace px::data

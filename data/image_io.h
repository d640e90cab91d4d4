// Images in memory (u8 HWC) and on disk: JPEG decode (libjpeg-turbo), PNG decode/encode (libpng),
// bilinear resize, filled rectangles and box outlines for `parallax data inspect` and `parallax detect`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace px::data {

struct Image {
  int32_t height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // (H, W, C) row-major
};

// Decodes a JPEG or PNG file (chosen by its magic bytes) to RGB (C = 3): grey and palette images are expanded
// and alpha (and a tRNS colour) dropped, as PIL's convert("RGB"); 16-bit samples keep their high byte.
// A missing, empty, truncated or corrupt file, a directory or other non-regular file, another format, an image
// of no pixels or of more than 2^28, and a CMYK JPEG are DataErrors naming the file.
Image read_image(const std::string& path);
void write_png(const std::string& path, const Image& image);

// Bilinear resize (half-pixel centres, as PIL and torchvision's antialias=False) to (height, width).
Image resize_bilinear(const Image& image, int32_t height, int32_t width);
// Fills [x0, x1] x [y0, y1] (pixel coordinates, inclusive, clipped to the image) of an RGB image with rgb.
void fill_rect(Image& image, int64_t x0, int64_t y0, int64_t x1, int64_t y1, const uint8_t rgb[3]);
// Draws a rectangle outline (pixel coordinates, inclusive, clipped to the image) in colour rgb.
void draw_box(Image& image, float x0, float y0, float x1, float y1, const uint8_t rgb[3], int thickness = 1);

}  // namespace px::data

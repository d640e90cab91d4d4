// A 5x7 pixel bitmap font (upper-case letters, digits, common punctuation) and labels drawn with it on RGB
// images: what `parallax detect` writes next to its boxes, without a font file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "data/image_io.h"

namespace px::data {

inline constexpr int kGlyphWidth = 5, kGlyphHeight = 7;

// (width, height) in pixels of `text` drawn at `scale` (every font pixel a scale x scale square, one font pixel
// between glyphs). Lower-case letters are drawn as upper-case ones, characters without a glyph as '?'.
std::pair<int64_t, int64_t> text_size(const std::string& text, int scale = 1);

// Draws `text` with its top-left corner at (x, y) in colour rgb, clipped to the image.
void draw_text(Image& image, int64_t x, int64_t y, const std::string& text, const uint8_t rgb[3], int scale = 1);

// `text` on a filled rectangle of colour `background` (a font pixel of margin around it) whose top-left corner is
// (x, y), in black or white, whichever reads better on the background. Clipped to the image. Returns the
// rectangle's (width, height).
std::pair<int64_t, int64_t> draw_label(Image& image, int64_t x, int64_t y, const std::string& text,
                                       const uint8_t background[3], int scale = 1);

}  // namespace px::data

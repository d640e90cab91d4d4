// Image decoding (libjpeg-turbo, libpng) with their longjmp error paths turned into DataErrors, PNG
// encoding, half-pixel bilinear resize and box outlines.
#include "data/image_io.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/util/check.h"
#include "core/util/error.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;

// Larger images are refused before their pixels are allocated (a corrupt header can claim 4G x 4G).
constexpr int64_t kMaxPixels = int64_t{1} << 28;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw DataError("image file '" + path + "': " + what);
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// A regular file's bytes. Anything else is refused before it is opened: a directory, and a FIFO or device, which
// could block or never end.
std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (status.type() == fs::file_type::not_found) fail(path, "no such file");
  if (error) fail(path, "cannot open: " + error.message());
  if (status.type() == fs::file_type::directory) fail(path, "is a directory");
  if (status.type() != fs::file_type::regular) fail(path, "not a regular file");
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) fail(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof(chunk), file.get())) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  if (std::ferror(file.get())) fail(path, std::string("read error: ") + std::strerror(errno));
  return bytes;
}

bool starts_with(const std::vector<uint8_t>& bytes, std::initializer_list<uint8_t> magic) {
  return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
}

void allocate_rgb(const std::string& path, int64_t height, int64_t width, Image& out) {
  if (height <= 0 || width <= 0 || height * width > kMaxPixels) {
    fail(path, "unsupported size " + std::to_string(width) + "x" + std::to_string(height));
  }
  out.height = static_cast<int32_t>(height);
  out.width = static_cast<int32_t>(width);
  out.channels = 3;
  out.pixels.assign(static_cast<size_t>(height * width * 3), 0);
}

// ---- JPEG ----------------------------------------------------------------------------------------

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Level -1 is a warning about corrupt data (premature end of file, bad Huffman code); libjpeg would
// pad with grey and carry on, so it fails like an error. Trace levels (>= 0) are ignored.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

struct JpegDecoder {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err{};
  bool unsupported = false;  // a valid JPEG of a kind this decoder does not take (err.message says which)
  JpegDecoder() {
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_fail;
    err.pub.emit_message = jpeg_message;
  }
  ~JpegDecoder() { jpeg_destroy_decompress(&cinfo); }  // safe before jpeg_create_decompress (mem is null)
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;
};

// Returns false with dec.err.message set when libjpeg fails. Every object here is trivially
// destructible or owned by the caller, so the longjmp back to setjmp skips no destructor.
bool decode_jpeg(const std::string& path, const std::vector<uint8_t>& bytes, JpegDecoder& dec, Image& out) {
  if (setjmp(dec.err.jump)) return false;
  jpeg_create_decompress(&dec.cinfo);
  jpeg_mem_src(&dec.cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&dec.cinfo, TRUE);
  if (dec.cinfo.jpeg_color_space == JCS_CMYK || dec.cinfo.jpeg_color_space == JCS_YCCK) {
    dec.unsupported = true;
    std::snprintf(dec.err.message, sizeof(dec.err.message), "CMYK colours (convert the image to RGB)");
    return false;
  }
  dec.cinfo.out_color_space = JCS_RGB;  // grey is expanded
  allocate_rgb(path, dec.cinfo.image_height, dec.cinfo.image_width, out);
  jpeg_start_decompress(&dec.cinfo);
  CHECK_EQ(dec.cinfo.output_components, 3);
  const size_t stride = static_cast<size_t>(out.width) * 3;
  while (dec.cinfo.output_scanline < dec.cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + dec.cinfo.output_scanline * stride;
    jpeg_read_scanlines(&dec.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&dec.cinfo);
  return true;
}

Image read_jpeg(const std::string& path, const std::vector<uint8_t>& bytes) {
  JpegDecoder dec;
  Image image;
  if (!decode_jpeg(path, bytes, dec, image)) {
    fail(path, (dec.unsupported ? "unsupported JPEG: " : "corrupt JPEG: ") + std::string(dec.err.message));
  }
  return image;
}

// ---- PNG -----------------------------------------------------------------------------------------

struct PngErrorSink {
  char message[256] = "";
};

[[noreturn]] void png_fail(png_structp png, png_const_charp message) {
  auto* sink = static_cast<PngErrorSink*>(png_get_error_ptr(png));
  std::snprintf(sink->message, sizeof(sink->message), "%s", message);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}  // benign (unknown chunks, colour profiles)

struct PngReader {
  PngErrorSink sink;
  const std::vector<uint8_t>* bytes = nullptr;
  size_t pos = 0;
  png_structp png = nullptr;
  png_infop info = nullptr;
  explicit PngReader(const std::vector<uint8_t>& data) : bytes(&data) {
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &sink, png_fail, png_ignore_warning);
    CHECK(png != nullptr) << "png_create_read_struct failed";
    info = png_create_info_struct(png);
    CHECK(info != nullptr) << "png_create_info_struct failed";
  }
  ~PngReader() { png_destroy_read_struct(&png, &info, nullptr); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;
};

void png_read_from_memory(png_structp png, png_bytep dst, size_t n) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (reader->bytes->size() - reader->pos < n) png_error(png, "file is truncated");
  std::memcpy(dst, reader->bytes->data() + reader->pos, n);
  reader->pos += n;
}

// Same contract as decode_jpeg: false with the message in r.sink, no destructor skipped.
bool decode_png(const std::string& path, PngReader& r, Image& out) {
  if (setjmp(png_jmpbuf(r.png))) return false;
  png_set_read_fn(r.png, &r, png_read_from_memory);
  png_read_info(r.png, r.info);
  png_set_expand(r.png);  // palette -> RGB, grey below 8 bits -> 8 bits, tRNS -> alpha
  png_set_strip_16(r.png);
  png_set_strip_alpha(r.png);
  png_set_gray_to_rgb(r.png);
  const int passes = png_set_interlace_handling(r.png);
  png_read_update_info(r.png, r.info);
  allocate_rgb(path, png_get_image_height(r.png, r.info), png_get_image_width(r.png, r.info), out);
  const size_t stride = static_cast<size_t>(out.width) * 3;
  CHECK_EQ(png_get_rowbytes(r.png, r.info), stride);
  for (int pass = 0; pass < passes; ++pass) {
    for (int32_t y = 0; y < out.height; ++y) png_read_row(r.png, out.pixels.data() + y * stride, nullptr);
  }
  png_read_end(r.png, nullptr);  // reads up to IEND, so a file cut after the pixel data still fails
  return true;
}

Image read_png(const std::string& path, const std::vector<uint8_t>& bytes) {
  PngReader reader(bytes);
  Image image;
  if (!decode_png(path, reader, image)) fail(path, std::string("corrupt PNG: ") + reader.sink.message);
  return image;
}

struct PngWriter {
  PngErrorSink sink;
  png_structp png = nullptr;
  png_infop info = nullptr;
  PngWriter() {
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_fail, png_ignore_warning);
    CHECK(png != nullptr) << "png_create_write_struct failed";
    info = png_create_info_struct(png);
    CHECK(info != nullptr) << "png_create_info_struct failed";
  }
  ~PngWriter() { png_destroy_write_struct(&png, &info); }
  PngWriter(const PngWriter&) = delete;
  PngWriter& operator=(const PngWriter&) = delete;
};

int png_color_type(int32_t channels) {
  constexpr int kTypes[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  CHECK(channels >= 1 && channels <= 4) << "write_png: cannot store " << channels << " channels";
  return kTypes[channels - 1];
}

// False with the message in w.sink when libpng fails (a write error: disk full).
bool encode_png(std::FILE* file, const Image& image, PngWriter& w) {
  if (setjmp(png_jmpbuf(w.png))) return false;
  png_init_io(w.png, file);
  png_set_IHDR(w.png, w.info, image.width, image.height, 8, png_color_type(image.channels), PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(w.png, w.info);
  const size_t stride = static_cast<size_t>(image.width) * image.channels;
  for (int32_t y = 0; y < image.height; ++y) png_write_row(w.png, image.pixels.data() + y * stride);
  png_write_end(w.png, nullptr);
  return true;
}

void check_image(const Image& image) {
  CHECK_GT(image.height, 0);
  CHECK_GT(image.width, 0);
  CHECK_GT(image.channels, 0);
  CHECK_EQ(image.pixels.size(), static_cast<size_t>(image.height) * image.width * image.channels);
}

// ---- resize and drawing --------------------------------------------------------------------------

// Source sample for one output coordinate: lo + frac between lo and hi.
struct Tap {
  int32_t lo = 0, hi = 0;
  double frac = 0;
};

// src = (dst + 0.5) * in / out - 0.5, clamped to [0, in - 1]; evaluated as one division of integers,
// ((2 dst + 1) in - out) / (2 out), so exact half-way cases stay exact.
std::vector<Tap> bilinear_taps(int32_t in, int32_t out) {
  std::vector<Tap> taps(out);
  for (int32_t d = 0; d < out; ++d) {
    const double src = static_cast<double>((2 * int64_t{d} + 1) * in - out) / (2 * int64_t{out});
    const double s = std::clamp(src, 0.0, static_cast<double>(in - 1));
    taps[d].lo = static_cast<int32_t>(s);
    taps[d].hi = std::min(taps[d].lo + 1, in - 1);
    taps[d].frac = s - taps[d].lo;
  }
  return taps;
}

// Rounds a coordinate to a pixel index; far-off values are clamped first so the conversion is defined.
int64_t to_pixel(float v, int32_t size) {
  return std::lround(std::clamp(v, -1.0f - size, 2.0f * size + 1.0f));
}

}  // namespace

Image read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return read_jpeg(path, bytes);
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return read_png(path, bytes);
  fail(path, bytes.empty() ? "file is empty" : "neither a JPEG nor a PNG");
}

void write_png(const std::string& path, const Image& image) {
  check_image(image);
  File file(std::fopen(path.c_str(), "wb"));
  if (!file) fail(path, std::string("cannot create: ") + std::strerror(errno));
  PngWriter writer;
  const bool ok = encode_png(file.get(), image, writer);
  const bool closed = std::fclose(file.release()) == 0;
  if (!ok || !closed) {
    std::remove(path.c_str());
    fail(path, ok ? std::string("write error: ") + std::strerror(errno) : std::string(writer.sink.message));
  }
}

Image resize_bilinear(const Image& image, int32_t height, int32_t width) {
  check_image(image);
  CHECK_GT(height, 0);
  CHECK_GT(width, 0);
  const std::vector<Tap> rows = bilinear_taps(image.height, height), cols = bilinear_taps(image.width, width);
  const int32_t c = image.channels;
  Image out{height, width, c, std::vector<uint8_t>(static_cast<size_t>(height) * width * c)};
  auto at = [&](int32_t y, int32_t x, int32_t k) -> double {
    return image.pixels[(static_cast<size_t>(y) * image.width + x) * c + k];
  };
  for (int32_t y = 0; y < height; ++y) {
    const Tap& ty = rows[y];
    for (int32_t x = 0; x < width; ++x) {
      const Tap& tx = cols[x];
      for (int32_t k = 0; k < c; ++k) {
        const double top = at(ty.lo, tx.lo, k) * (1 - tx.frac) + at(ty.lo, tx.hi, k) * tx.frac;
        const double bottom = at(ty.hi, tx.lo, k) * (1 - tx.frac) + at(ty.hi, tx.hi, k) * tx.frac;
        const double v = top * (1 - ty.frac) + bottom * ty.frac;
        out.pixels[(static_cast<size_t>(y) * width + x) * c + k] = static_cast<uint8_t>(std::min(v + 0.5, 255.0));
      }
    }
  }
  return out;
}

void fill_rect(Image& image, int64_t x0, int64_t y0, int64_t x1, int64_t y1, const uint8_t rgb[3]) {
  check_image(image);
  CHECK_EQ(image.channels, 3) << "fill_rect draws on RGB images";
  x0 = std::max<int64_t>(x0, 0);
  y0 = std::max<int64_t>(y0, 0);
  x1 = std::min<int64_t>(x1, image.width - 1);
  y1 = std::min<int64_t>(y1, image.height - 1);
  for (int64_t y = y0; y <= y1; ++y) {
    for (int64_t x = x0; x <= x1; ++x) std::memcpy(&image.pixels[(y * image.width + x) * 3], rgb, 3);
  }
}

void draw_box(Image& image, float x0, float y0, float x1, float y1, const uint8_t rgb[3], int thickness) {
  check_image(image);
  CHECK_EQ(image.channels, 3) << "draw_box draws on RGB images";
  CHECK_GE(thickness, 1);
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const int64_t left = to_pixel(std::min(x0, x1), image.width), right = to_pixel(std::max(x0, x1), image.width);
  const int64_t top = to_pixel(std::min(y0, y1), image.height), bottom = to_pixel(std::max(y0, y1), image.height);
  const int64_t t = thickness - 1;
  fill_rect(image, left, top, right, std::min(top + t, bottom), rgb);
  fill_rect(image, left, std::max(bottom - t, top), right, bottom, rgb);
  fill_rect(image, left, top, std::min(left + t, right), bottom, rgb);
  fill_rect(image, std::max(right - t, left), top, right, bottom, rgb);
}

}  // namespace px::data

// Fashion-MNIST idx readers (gzipped or plain, through zlib) and the scene composer that turns items
// into detection examples: one Philox stream per (seed, scene), so scene i never depends on scene i - 1.
#include "data/fashion_scenes.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/util/check.h"
#include "core/util/error.h"
#include "core/util/philox.h"
#include "data/image_io.h"

namespace px::data {
namespace {

constexpr int32_t kSide = 28;  // Fashion-MNIST images are 28 x 28
constexpr int64_t kItemPixels = kSide * kSide;
constexpr uint32_t kImagesMagic = 2051, kLabelsMagic = 2049;  // idx3 u8, idx1 u8
// Philox domain of scene draws ("SCEN"), apart from the domains the tensor RNGs use.
constexpr uint32_t kSceneDomain = 0x5343454E;
// Draws allowed per item before a range of blank source images is declared unusable.
constexpr int kMaxDrawsPerItem = 100;

// One idx file read sequentially; gzread passes plain files through unchanged.
class IdxReader {
 public:
  explicit IdxReader(std::string path) : path_(std::move(path)), file_(gzopen(path_.c_str(), "rb")) {
    if (file_ == nullptr) fail(std::string("cannot open: ") + std::strerror(errno));
  }
  ~IdxReader() { gzclose(file_); }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  [[noreturn]] void fail(const std::string& what) const {
    throw DataError("Fashion-MNIST file '" + path_ + "': " + what);
  }

  uint32_t read_u32() {  // big-endian
    uint8_t b[4];
    read_into(b, 4);
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
  }
  void expect(const char* field, uint32_t expected) {
    const uint32_t v = read_u32();
    if (v != expected) fail(std::string(field) + " is " + std::to_string(v) + ", expected " + std::to_string(expected));
  }
  // Grows the buffer as data arrives, so a corrupt count cannot trigger a huge allocation up front.
  std::vector<uint8_t> read_bytes(int64_t n) {
    std::vector<uint8_t> out;
    constexpr int64_t kChunk = int64_t{1} << 20;
    for (int64_t done = 0; done < n; done += kChunk) {
      const int64_t len = std::min(kChunk, n - done);
      out.resize(done + len);
      read_into(out.data() + done, len);
    }
    return out;
  }
  void expect_end() {
    uint8_t extra;
    if (gzread(file_, &extra, 1) != 0) fail("has trailing bytes after the data");
  }

 private:
  void read_into(uint8_t* dst, int64_t n) {
    const int got = gzread(file_, dst, static_cast<unsigned>(n));
    if (got < 0) {
      int code = Z_OK;
      fail(std::string("read error: ") + gzerror(file_, &code));
    }
    if (got != n) fail("is truncated");
  }

  std::string path_;
  gzFile file_;
};

// <dir>/<split>-<kind>.gz, or the same name without .gz when only that one exists.
std::string idx_path(const std::string& dir, const std::string& split, const std::string& kind) {
  const std::filesystem::path plain = std::filesystem::path(dir) / (split + "-" + kind);
  const std::filesystem::path gz = plain.string() + ".gz";
  if (std::filesystem::exists(gz) || !std::filesystem::exists(plain)) return gz.string();
  return plain.string();
}

// Per-scene Philox stream: the key comes from (seed, i); each draw is one four-word block.
class SceneRng {
 public:
  SceneRng(uint64_t seed, int64_t i) {
    const PhiloxOut k = philox4x32(seed, static_cast<uint64_t>(i), kSceneDomain);
    key_ = (uint64_t(k.v[0]) << 32) | k.v[1];
  }
  PhiloxOut next() { return philox4x32(key_, counter_++, kSceneDomain); }

 private:
  uint64_t key_ = 0;
  uint64_t counter_ = 0;
};

// Uniform integer in [lo, hi] from one 32-bit word (multiply-shift; bias below (hi - lo + 1) / 2^32).
int64_t uniform_int(uint32_t word, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>((uint64_t(word) * uint64_t(hi - lo + 1)) >> 32);
}

// Tight bounds of a patch's nonzero pixels, pixel-edge convention (x1 = last column + 1).
struct Extent {
  int32_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool empty() const { return x1 <= x0; }
};

Extent nonzero_extent(const Image& patch) {  // patch: (S, S, 1)
  Extent e{patch.width, patch.height, 0, 0};
  for (int32_t y = 0; y < patch.height; ++y) {
    for (int32_t x = 0; x < patch.width; ++x) {
      if (patch.pixels[static_cast<size_t>(y) * patch.width + x] == 0) continue;
      e = Extent{std::min(e.x0, x), std::min(e.y0, y), std::max(e.x1, x + 1), std::max(e.y1, y + 1)};
    }
  }
  return e;
}

Image source_item(const FashionMnist& source, int64_t index) {  // (28, 28, 1)
  const auto begin = source.images.begin() + index * kItemPixels;
  return Image{kSide, kSide, 1, std::vector<uint8_t>(begin, begin + kItemPixels)};
}

void check_options(const FashionMnist& source, const SceneOptions& o, int64_t item_end) {
  CHECK_EQ(static_cast<int64_t>(source.images.size()), source.count * kItemPixels);
  CHECK_EQ(static_cast<int64_t>(source.labels.size()), source.count);
  CHECK_GT(o.canvas, 0);
  CHECK(1 <= o.min_items && o.min_items <= o.max_items) << "items " << o.min_items << ".." << o.max_items;
  CHECK(1 <= o.min_item_size && o.min_item_size <= o.max_item_size)
      << "item sizes " << o.min_item_size << ".." << o.max_item_size;
  CHECK(0 <= o.item_begin && o.item_begin < item_end && item_end <= source.count)
      << "item range [" << o.item_begin << ", " << item_end << ") of a split of " << source.count;
}

}  // namespace

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

FashionMnist read_fashion_mnist(const std::string& dir, const std::string& split) {
  FashionMnist out;
  IdxReader images(idx_path(dir, split, "images-idx3-ubyte"));
  images.expect("magic number", kImagesMagic);
  out.count = images.read_u32();
  images.expect("row count", kSide);
  images.expect("column count", kSide);
  out.images = images.read_bytes(out.count * kItemPixels);
  images.expect_end();

  IdxReader labels(idx_path(dir, split, "labels-idx1-ubyte"));
  labels.expect("magic number", kLabelsMagic);
  labels.expect("label count (the image file's count)", static_cast<uint32_t>(out.count));
  out.labels = labels.read_bytes(out.count);
  labels.expect_end();
  const int num_classes = static_cast<int>(fashion_mnist_classes().size());
  for (int64_t k = 0; k < out.count; ++k) {
    if (out.labels[k] >= num_classes) labels.fail("label " + std::to_string(k) + " is " + std::to_string(out.labels[k]));
  }
  return out;
}

DetectionExample compose_scene(const FashionMnist& source, const SceneOptions& options, int64_t i) {
  const int64_t item_end = options.item_end < 0 ? source.count : options.item_end;
  check_options(source, options, item_end);
  const int32_t side = options.canvas;
  // Items must fit the canvas: on a canvas smaller than the sizes asked for, they are clamped to it.
  const int32_t max_size = std::min(options.max_item_size, side), min_size = std::min(options.min_item_size, max_size);
  SceneRng rng(options.seed, i);
  const int64_t num_items = uniform_int(rng.next().v[0], options.min_items, options.max_items);

  std::vector<uint8_t> grey(static_cast<size_t>(side) * side, 0);  // (canvas, canvas)
  DetectionExample ex;
  ex.image_id = i;
  ex.height = ex.width = side;
  ex.channels = 3;
  int draws = 0;
  while (ex.num_boxes() < num_items) {
    CHECK_LT(draws++, kMaxDrawsPerItem * num_items)
        << "Fashion-MNIST items [" << options.item_begin << ", " << item_end << ") are blank";
    const PhiloxOut r = rng.next();
    const int64_t item = uniform_int(r.v[0], options.item_begin, item_end - 1);
    const int32_t size = static_cast<int32_t>(uniform_int(r.v[1], min_size, max_size));
    const int32_t x = static_cast<int32_t>(uniform_int(r.v[2], 0, side - size));
    const int32_t y = static_cast<int32_t>(uniform_int(r.v[3], 0, side - size));
    const Image patch = resize_bilinear(source_item(source, item), size, size);  // (size, size, 1)
    const Extent e = nonzero_extent(patch);
    if (e.empty()) continue;
    for (int32_t py = 0; py < size; ++py) {
      for (int32_t px = 0; px < size; ++px) {
        uint8_t& dst = grey[static_cast<size_t>(y + py) * side + (x + px)];
        dst = std::max(dst, patch.pixels[static_cast<size_t>(py) * size + px]);
      }
    }
    const float s = static_cast<float>(side);
    ex.boxes.insert(ex.boxes.end(), {(x + (e.x0 + e.x1) * 0.5f) / s, (y + (e.y0 + e.y1) * 0.5f) / s,
                                     (e.x1 - e.x0) / s, (e.y1 - e.y0) / s});
    ex.labels.push_back(source.labels[item]);
  }
  ex.pixels.resize(grey.size() * 3);
  for (size_t p = 0; p < grey.size(); ++p) std::fill_n(ex.pixels.begin() + 3 * p, 3, grey[p]);
  return ex;
}

}  // namespace px::data

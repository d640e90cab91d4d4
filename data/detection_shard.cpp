// Detection shards (schema "parallax.detection" v1): the streaming writer and the validating reader.
// Offsets and image shapes are checked at open; labels and boxes on every add and read.
#include "data/detection_shard.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/util/check.h"
#include "core/util/error.h"

namespace px::data {
namespace {

constexpr size_t kFlushBytes = size_t{1} << 20;  // a pending buffer this large is appended to its dataset
constexpr float kBoxTolerance = 1e-4f;            // box coordinates may stray this far outside [0, 1]
// Everything but the pixels is small: shuffle + gzip shrinks it, and the mostly empty last chunk of a
// small shard, to almost nothing. Offsets, shapes and ids are read whole at open (~1 MiB chunks); boxes
// and labels are read per example, so their chunks are small: a random read inflates 64 KiB, not 1 MiB.
constexpr DatasetOptions kIndexOptions{0, 1};
constexpr DatasetOptions kPerExampleOptions{4096, 1};
// Image chunks of 64 KiB: loaders read images in shuffled order and a random read inflates and
// checksums whole chunks (1 MiB chunks: ~1,300 images/s on 128x128 scenes, one core).
constexpr int64_t kImageChunkBytes = 65536;

[[noreturn]] void fail(const std::string& path, const std::string& name, const std::string& what) {
  throw DataError(path + ": " + name + ": " + what);
}

std::string example_name(int64_t index) { return "example " + std::to_string(index) + ": "; }

// H * W * C bytes of an image with those dims (H, W > 0 and C == 3), or -1 when the dims are invalid.
int64_t hwc_bytes(int64_t height, int64_t width, int64_t channels) {
  int64_t bytes = 0;
  if (height <= 0 || width <= 0 || channels != 3 || __builtin_mul_overflow(height * 3, width, &bytes)) return -1;
  return bytes;
}

// Throws unless every label of example `index` lies in [0, num_categories).
void check_labels(const std::vector<int32_t>& labels, int64_t num_categories, const std::string& path, int64_t index) {
  for (int32_t label : labels) {
    if (label < 0 || label >= num_categories) {
      fail(path, "labels", example_name(index) + "label " + std::to_string(label) + " outside [0, " +
                               std::to_string(num_categories) + ")");
    }
  }
}

// Throws unless every box value of example `index` is finite and within [0, 1] (up to kBoxTolerance).
void check_boxes(const std::vector<float>& boxes, const std::string& path, int64_t index) {
  for (size_t k = 0; k < boxes.size(); ++k) {
    const float v = boxes[k];
    if (!std::isfinite(v) || v < -kBoxTolerance || v > 1.0f + kBoxTolerance) {
      fail(path, "boxes", example_name(index) + "box " + std::to_string(k / 4) + " value " + std::to_string(v) +
                              " outside [0, 1]");
    }
  }
}

// Checks that each image's span in `images` is H * W * C bytes of valid dims. shapes: (N, 3), offsets: (N+1,).
void check_image_spans(const std::string& path, const std::vector<int32_t>& shapes,
                       const std::vector<int64_t>& offsets) {
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    const int32_t* hwc = &shapes[3 * i];
    const int64_t bytes = hwc_bytes(hwc[0], hwc[1], hwc[2]);
    const int64_t index = static_cast<int64_t>(i);
    if (bytes < 0) {
      fail(path, "image_shapes", example_name(index) + std::to_string(hwc[0]) + "x" + std::to_string(hwc[1]) + "x" +
                                     std::to_string(hwc[2]) + " (H, W > 0 and 3 channels required)");
    }
    if (offsets[i + 1] - offsets[i] != bytes) {
      fail(path, "image_offsets", example_name(index) + "spans " + std::to_string(offsets[i + 1] - offsets[i]) +
                                      " bytes, image_shapes says " + std::to_string(bytes));
    }
  }
}

int64_t read_num_examples(const H5File& file) {
  if (!file.has_attr("num_examples")) fail(file.path(), "num_examples", "missing: the shard's writer never finished");
  const int64_t n = file.read_attr_int("num_examples");
  if (n < 0 || n == std::numeric_limits<int64_t>::max()) fail(file.path(), "num_examples", std::to_string(n));
  return n;
}

}  // namespace

DetectionShardWriter::DetectionShardWriter(const std::string& path, const std::vector<std::string>& category_names,
                                           const DatasetOptions& image_options)
    : file_(H5File::create(path)), num_categories_(static_cast<int64_t>(category_names.size())) {
  if (category_names.empty()) fail(path, "category_names", "empty");
  file_.write_attr("schema", std::string(kDetectionSchema));
  file_.write_attr("schema_version", kDetectionSchemaVersion);
  file_.write_attr("category_names", category_names);
  DatasetOptions images = image_options;
  if (images.chunk_rows == 0) images.chunk_rows = kImageChunkBytes;
  file_.create_dataset("images", DType::u8, {}, images);
  file_.create_dataset("image_offsets", DType::i64, {}, kIndexOptions);
  file_.create_dataset("image_shapes", DType::i32, {3}, kIndexOptions);
  file_.create_dataset("boxes", DType::f32, {4}, kPerExampleOptions);
  file_.create_dataset("labels", DType::i32, {}, kPerExampleOptions);
  file_.create_dataset("box_offsets", DType::i64, {}, kIndexOptions);
  file_.create_dataset("image_ids", DType::i64, {}, kIndexOptions);
  const int64_t zero = 0;
  file_.append("image_offsets", DType::i64, &zero, 1);
  file_.append("box_offsets", DType::i64, &zero, 1);
}

void DetectionShardWriter::add(const DetectionExample& example) {
  CHECK(!finished_) << file_.path() << ": add() after finish()";
  const std::string& path = file_.path();
  const int64_t bytes = hwc_bytes(example.height, example.width, example.channels);
  if (bytes < 0) {
    fail(path, "image_shapes", example_name(num_examples_) + "image " + std::to_string(example.height) + "x" +
                                   std::to_string(example.width) + "x" + std::to_string(example.channels) +
                                   " (H, W > 0 and 3 channels required)");
  }
  if (static_cast<int64_t>(example.pixels.size()) != bytes) {
    fail(path, "images", example_name(num_examples_) + std::to_string(example.pixels.size()) + " pixel bytes for a " +
                             std::to_string(example.height) + "x" + std::to_string(example.width) + "x3 image");
  }
  if (example.boxes.size() != 4 * example.labels.size()) {
    fail(path, "boxes", example_name(num_examples_) + std::to_string(example.boxes.size()) + " box values for " +
                            std::to_string(example.labels.size()) + " labels");
  }
  check_labels(example.labels, num_categories_, path, num_examples_);
  check_boxes(example.boxes, path, num_examples_);
  pixel_buf_.insert(pixel_buf_.end(), example.pixels.begin(), example.pixels.end());
  box_buf_.insert(box_buf_.end(), example.boxes.begin(), example.boxes.end());
  label_buf_.insert(label_buf_.end(), example.labels.begin(), example.labels.end());
  shape_buf_.insert(shape_buf_.end(), {example.height, example.width, example.channels});
  pixel_total_ += bytes;
  box_total_ += example.num_boxes();
  image_off_buf_.push_back(pixel_total_);
  box_off_buf_.push_back(box_total_);
  id_buf_.push_back(example.image_id);
  ++num_examples_;
  const size_t pending = std::max({pixel_buf_.size(), box_buf_.size() * sizeof(float),
                                   image_off_buf_.size() * sizeof(int64_t)});
  if (pending >= kFlushBytes) flush();
}

void DetectionShardWriter::flush() {
  const auto rows = [](const auto& buf, size_t per_row) { return static_cast<int64_t>(buf.size() / per_row); };
  file_.append("images", DType::u8, pixel_buf_.data(), rows(pixel_buf_, 1));
  file_.append("image_offsets", DType::i64, image_off_buf_.data(), rows(image_off_buf_, 1));
  file_.append("image_shapes", DType::i32, shape_buf_.data(), rows(shape_buf_, 3));
  file_.append("boxes", DType::f32, box_buf_.data(), rows(box_buf_, 4));
  file_.append("labels", DType::i32, label_buf_.data(), rows(label_buf_, 1));
  file_.append("box_offsets", DType::i64, box_off_buf_.data(), rows(box_off_buf_, 1));
  file_.append("image_ids", DType::i64, id_buf_.data(), rows(id_buf_, 1));
  pixel_buf_.clear();
  image_off_buf_.clear();
  shape_buf_.clear();
  box_buf_.clear();
  label_buf_.clear();
  box_off_buf_.clear();
  id_buf_.clear();
}

void DetectionShardWriter::finish() {
  CHECK(!finished_) << file_.path() << ": finish() called twice";
  flush();
  file_.write_attr("num_examples", num_examples_);
  file_.close();
  finished_ = true;
}

DetectionShardReader::DetectionShardReader(const std::string& path) : file_(H5File::open_read(path)) {
  file_.check_schema(kDetectionSchema, kDetectionSchemaVersion);
  category_names_ = file_.read_attr_strings("category_names");
  if (category_names_.empty()) fail(path, "category_names", "empty");
  const int64_t n = read_num_examples(file_);
  file_.check_dataset("images", DType::u8, {});
  if (file_.check_dataset("image_shapes", DType::i32, {3}) != n) {
    fail(path, "image_shapes", "rows differ from num_examples " + std::to_string(n));
  }
  if (file_.check_dataset("image_ids", DType::i64, {}) != n) {
    fail(path, "image_ids", "rows differ from num_examples " + std::to_string(n));
  }
  const int64_t boxes = file_.check_dataset("boxes", DType::f32, {4});
  if (file_.check_dataset("labels", DType::i32, {}) != boxes) {
    fail(path, "labels", "rows differ from the " + std::to_string(boxes) + " rows of boxes");
  }
  shapes_ = file_.read_all<int32_t>("image_shapes", DType::i32);
  image_ids_ = file_.read_all<int64_t>("image_ids", DType::i64);
  image_offsets_ = file_.read_offsets("image_offsets", n + 1, "images");
  box_offsets_ = file_.read_offsets("box_offsets", n + 1, "labels");
  check_image_spans(path, shapes_, image_offsets_);
}

void DetectionShardReader::read(int64_t i, DetectionExample& out) const {
  if (i < 0 || i >= num_examples()) {
    throw DataError(path() + ": example " + std::to_string(i) + " outside [0, " + std::to_string(num_examples()) + ")");
  }
  out.image_id = image_ids_[i];
  out.height = shapes_[3 * i];
  out.width = shapes_[3 * i + 1];
  out.channels = shapes_[3 * i + 2];
  const int64_t pixel_begin = image_offsets_[i], box_begin = box_offsets_[i];
  const int64_t boxes = box_offsets_[i + 1] - box_begin;
  out.pixels.resize(static_cast<size_t>(image_offsets_[i + 1] - pixel_begin));
  out.labels.resize(static_cast<size_t>(boxes));
  out.boxes.resize(static_cast<size_t>(4 * boxes));
  file_.read_rows("images", DType::u8, pixel_begin, static_cast<int64_t>(out.pixels.size()), out.pixels.data());
  file_.read_rows("labels", DType::i32, box_begin, boxes, out.labels.data());
  file_.read_rows("boxes", DType::f32, box_begin, boxes, out.boxes.data());
  check_labels(out.labels, static_cast<int64_t>(category_names_.size()), path(), i);
  check_boxes(out.boxes, path(), i);
}

}  // namespace px::data

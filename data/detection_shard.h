// One detection shard file (schema "parallax.detection", version 1): writer and validating reader.
// Images are u8 HWC concatenated; boxes are f32 normalised (cx, cy, w, h) in [0, 1].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/hdf5_file.h"

namespace px::data {

inline constexpr const char* kDetectionSchema = "parallax.detection";
inline constexpr int64_t kDetectionSchemaVersion = 1;

// One decoded, annotated image as the shards store it.
struct DetectionExample {
  int64_t image_id = 0;
  int32_t height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // (H, W, C) row-major
  std::vector<float> boxes;     // (M, 4) normalised cx, cy, w, h
  std::vector<int32_t> labels;  // (M,) in [0, num_categories)
  int64_t num_boxes() const { return static_cast<int64_t>(labels.size()); }
};

// Datasets: images (u8), image_offsets (i64, N+1), image_shapes (i32, (N, 3) = H, W, C),
// boxes (f32, (M, 4)), labels (i32, M), box_offsets (i64, N+1), image_ids (i64, N).
// Root attributes: schema, schema_version, category_names (string array), num_examples.
class DetectionShardWriter {
 public:
  DetectionShardWriter(const std::string& path, const std::vector<std::string>& category_names,
                       const DatasetOptions& image_options = {});
  void add(const DetectionExample& example);  // validates shape, labels and box range
  int64_t num_examples() const { return num_examples_; }
  int64_t num_boxes() const { return box_total_; }
  int64_t image_bytes() const { return pixel_total_; }
  void finish();

 private:
  void flush();
  H5File file_;
  int64_t num_categories_ = 0;
  int64_t num_examples_ = 0, box_total_ = 0, pixel_total_ = 0;
  std::vector<uint8_t> pixel_buf_;
  std::vector<int64_t> image_off_buf_, box_off_buf_, id_buf_;
  std::vector<int32_t> shape_buf_, label_buf_;
  std::vector<float> box_buf_;
  bool finished_ = false;
};

// Opens and validates a shard (schema, version, dtypes, ranks, offsets against shapes and totals);
// labels and box values are checked when an example is read.
class DetectionShardReader {
 public:
  explicit DetectionShardReader(const std::string& path);
  const std::string& path() const { return file_.path(); }
  int64_t num_examples() const { return static_cast<int64_t>(image_ids_.size()); }
  const std::vector<std::string>& category_names() const { return category_names_; }
  int64_t image_id(int64_t i) const { return image_ids_[i]; }
  int32_t height(int64_t i) const { return shapes_[3 * i]; }
  int32_t width(int64_t i) const { return shapes_[3 * i + 1]; }
  int64_t num_boxes(int64_t i) const { return box_offsets_[i + 1] - box_offsets_[i]; }
  void read(int64_t i, DetectionExample& out) const;

 private:
  H5File file_;
  std::vector<std::string> category_names_;
  std::vector<int64_t> image_offsets_, box_offsets_, image_ids_;  // (N+1,), (N+1,), (N,)
  std::vector<int32_t> shapes_;                                   // (N, 3)
};

}  // namespace px::data

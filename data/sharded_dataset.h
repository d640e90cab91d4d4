// A split of a dataset as one sequence of examples across its shard files: global example id =
// shard's first id + index in the shard, shards in index order. Readers stay open; one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/detection_shard.h"
#include "data/translation_shard.h"

namespace px::data {

class TranslationDataset {
 public:
  // All shards must share one tokenizer hash and vocabulary size (DataError otherwise).
  explicit TranslationDataset(const std::vector<std::string>& shard_paths);
  int64_t size() const { return starts_.back(); }
  int64_t src_length(int64_t id) const;
  int64_t tgt_length(int64_t id) const;
  void read(int64_t id, std::vector<int32_t>& src, std::vector<int32_t>& tgt) const;
  const std::string& tokenizer_hash() const { return shards_.front()->tokenizer_hash(); }
  int64_t vocab_size() const { return shards_.front()->vocab_size(); }

 private:
  std::pair<size_t, int64_t> locate(int64_t id) const;  // (shard, local index); checks the range
  std::vector<std::unique_ptr<TranslationShardReader>> shards_;
  std::vector<int64_t> starts_;  // (num_shards + 1,) first global id of each shard, then the total
};

class DetectionDataset {
 public:
  // All shards must share the category names (DataError otherwise).
  explicit DetectionDataset(const std::vector<std::string>& shard_paths);
  int64_t size() const { return starts_.back(); }
  const std::vector<std::string>& category_names() const { return shards_.front()->category_names(); }
  int64_t image_id(int64_t id) const;
  int64_t num_boxes(int64_t id) const;          // from the offsets: no image is read
  int32_t longer_side(int64_t id) const;        // max(height, width) as stored
  void read(int64_t id, DetectionExample& out) const;

 private:
  std::pair<size_t, int64_t> locate(int64_t id) const;
  std::vector<std::unique_ptr<DetectionShardReader>> shards_;
  std::vector<int64_t> starts_;
};

}  // namespace px::data

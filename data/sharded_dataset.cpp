// TranslationDataset and DetectionDataset: one split's shard readers behind global example ids, with the
// cross-shard checks (one tokenizer, one vocabulary, one category list) done at construction.
#include "data/sharded_dataset.h"

#include <algorithm>

#include "core/util/error.h"

namespace px::data {
namespace {

[[noreturn]] void mismatch(const std::string& first, const std::string& other, const std::string& what) {
  throw DataError(first + " and " + other + ": " + what);
}

// (shard, local index) of global id `id`, given each shard's first id and the total in `starts`.
std::pair<size_t, int64_t> find_shard(const std::vector<int64_t>& starts, int64_t id, const char* kind) {
  if (id < 0 || id >= starts.back()) {
    throw DataError(std::string(kind) + " dataset: example id " + std::to_string(id) + " outside [0, " +
                    std::to_string(starts.back()) + ")");
  }
  // The last shard starting at or before id; empty shards before it share its start and are skipped.
  const auto next = std::upper_bound(starts.begin(), starts.end(), id);
  const size_t shard = static_cast<size_t>(next - starts.begin()) - 1;
  return {shard, id - starts[shard]};
}

std::string joined(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out + "]";
}

}  // namespace

TranslationDataset::TranslationDataset(const std::vector<std::string>& shard_paths) : starts_{0} {
  if (shard_paths.empty()) throw DataError("translation dataset: no shard files given");
  for (const std::string& path : shard_paths) {
    auto shard = std::make_unique<TranslationShardReader>(path);
    if (!shards_.empty()) {
      const TranslationShardReader& first = *shards_.front();
      if (shard->tokenizer_hash() != first.tokenizer_hash()) {
        mismatch(first.path(), path, "tokenizer_hash '" + first.tokenizer_hash() + "' vs '" + shard->tokenizer_hash() +
                                         "' (all shards must come from one tokenizer)");
      }
      if (shard->vocab_size() != first.vocab_size()) {
        mismatch(first.path(), path, "vocab_size " + std::to_string(first.vocab_size()) + " vs " +
                                         std::to_string(shard->vocab_size()));
      }
    }
    starts_.push_back(starts_.back() + shard->num_examples());
    shards_.push_back(std::move(shard));
  }
}

std::pair<size_t, int64_t> TranslationDataset::locate(int64_t id) const {
  return find_shard(starts_, id, "translation");
}

int64_t TranslationDataset::src_length(int64_t id) const {
  const auto [shard, index] = locate(id);
  return shards_[shard]->src_length(index);
}

int64_t TranslationDataset::tgt_length(int64_t id) const {
  const auto [shard, index] = locate(id);
  return shards_[shard]->tgt_length(index);
}

void TranslationDataset::read(int64_t id, std::vector<int32_t>& src, std::vector<int32_t>& tgt) const {
  const auto [shard, index] = locate(id);
  shards_[shard]->read(index, src, tgt);
}

DetectionDataset::DetectionDataset(const std::vector<std::string>& shard_paths) : starts_{0} {
  if (shard_paths.empty()) throw DataError("detection dataset: no shard files given");
  for (const std::string& path : shard_paths) {
    auto shard = std::make_unique<DetectionShardReader>(path);
    if (!shards_.empty() && shard->category_names() != shards_.front()->category_names()) {
      mismatch(shards_.front()->path(), path, "category_names " + joined(shards_.front()->category_names()) + " vs " +
                                                  joined(shard->category_names()));
    }
    starts_.push_back(starts_.back() + shard->num_examples());
    shards_.push_back(std::move(shard));
  }
}

std::pair<size_t, int64_t> DetectionDataset::locate(int64_t id) const {
  return find_shard(starts_, id, "detection");
}

int64_t DetectionDataset::image_id(int64_t id) const {
  const auto [shard, index] = locate(id);
  return shards_[shard]->image_id(index);
}

int64_t DetectionDataset::num_boxes(int64_t id) const {
  const auto [shard, index] = locate(id);
  return shards_[shard]->num_boxes(index);
}

int32_t DetectionDataset::longer_side(int64_t id) const {
  const auto [shard, index] = locate(id);
  return std::max(shards_[shard]->height(index), shards_[shard]->width(index));
}

void DetectionDataset::read(int64_t id, DetectionExample& out) const {
  const auto [shard, index] = locate(id);
  shards_[shard]->read(index, out);
}

}  // namespace px::data

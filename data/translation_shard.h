// One translation shard file (schema "parallax.translation", version 1): writer and validating reader.
// Datasets: src_tokens/tgt_tokens (i32, concatenated), src_offsets/tgt_offsets (i64, N+1, from 0).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/hdf5_file.h"

namespace px::data {

inline constexpr const char* kTranslationSchema = "parallax.translation";
inline constexpr int64_t kTranslationSchemaVersion = 1;

// Streams examples into a new shard: memory stays bounded by the buffered chunk, not the corpus.
// Root attributes: schema, schema_version, tokenizer_hash, vocab_size (tokens must lie in
// [0, vocab_size)), num_examples (written by finish()).
class TranslationShardWriter {
 public:
  TranslationShardWriter(const std::string& path, const std::string& tokenizer_hash, int64_t vocab_size,
                         const DatasetOptions& token_options = {});
  void add(const std::vector<int32_t>& src, const std::vector<int32_t>& tgt);
  int64_t num_examples() const { return num_examples_; }
  int64_t src_tokens() const { return src_total_; }
  int64_t tgt_tokens() const { return tgt_total_; }
  void finish();  // flushes, writes num_examples, closes; required before the file is valid

 private:
  void flush();
  H5File file_;
  int64_t vocab_size_ = 0;
  int64_t num_examples_ = 0, src_total_ = 0, tgt_total_ = 0;
  std::vector<int32_t> src_buf_, tgt_buf_;             // pending tokens
  std::vector<int64_t> src_off_buf_, tgt_off_buf_;     // pending end offsets
  bool finished_ = false;
};

// Opens and validates a shard: schema and version, dtypes and ranks, offsets start at 0, never
// decrease and end at the token count, num_examples agrees. Token ids are checked against
// vocab_size when read. Every failure is a DataError naming the file and dataset.
class TranslationShardReader {
 public:
  explicit TranslationShardReader(const std::string& path);
  const std::string& path() const { return file_.path(); }
  int64_t num_examples() const { return static_cast<int64_t>(src_offsets_.size()) - 1; }
  const std::string& tokenizer_hash() const { return tokenizer_hash_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t src_length(int64_t i) const { return src_offsets_[i + 1] - src_offsets_[i]; }
  int64_t tgt_length(int64_t i) const { return tgt_offsets_[i + 1] - tgt_offsets_[i]; }
  // Reads example i (0 <= i < num_examples, checked) into src/tgt (resized).
  void read(int64_t i, std::vector<int32_t>& src, std::vector<int32_t>& tgt) const;

 private:
  H5File file_;
  std::string tokenizer_hash_;
  int64_t vocab_size_ = 0;
  std::vector<int64_t> src_offsets_, tgt_offsets_;  // (N+1,)
};

}  // namespace px::data

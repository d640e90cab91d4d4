// Streams padded translation batches for one rank: global order and token-budget batches from the
// sampler, this rank's slice read from the shards and collated by a background prefetch thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"
#include "data/sampler.h"

namespace px::data {

struct TranslationBatch {
  // A rank whose slice of the global batch is empty gets B = 0: tensors of shape (0, 1).
  Tensor src;      // (B, S) i64, source + eos_id (as fairseq), padded with pad_id
  Tensor tgt_in;   // (B, T) i64, bos_id + target, padded with pad_id
  Tensor tgt_out;  // (B, T) i64, target + eos_id, padded with pad_id
  std::vector<int64_t> ids;         // (B,) global example ids of this rank's slice
  int64_t src_tokens = 0;           // real (non-pad) source tokens on this rank (with eos)
  int64_t tgt_tokens = 0;           // real target tokens on this rank (with eos)
  int64_t global_tgt_tokens = 0;    // real target tokens of the whole global batch (all ranks)
  int64_t padded_tokens = 0;        // B * S + B * T on this rank
  int64_t epoch = 0;
  DataCursor after;                 // resume point right after this batch
};

struct TranslationLoaderOptions {
  std::vector<std::string> shards;  // in index order
  int64_t max_tokens = 4096;        // token budget per global batch (all ranks together)
  int64_t max_length = 256;         // drop examples whose source or target (+1 special) is longer
  int64_t window = 0;               // length-bucketing window (examples); 0: sampler default
  bool shuffle = true;
  // 0: endless; else next() returns nullopt once the cursor reaches epoch max_epochs. Epochs count
  // from 0 whatever the start cursor, so a resumed loader stops where an uninterrupted one would.
  int64_t max_epochs = 0;
  int rank = 0, world = 1;          // data-parallel position
  int prefetch = 4;                 // batches kept ready
  int32_t pad_id = 0, bos_id = 1, eos_id = 2;
};

// Cumulative padding statistics of the batches returned so far on this rank.
struct PaddingStats {
  int64_t real_tokens = 0, padded_tokens = 0, filtered_examples = 0;
  double waste() const { return padded_tokens ? 1.0 - double(real_tokens) / double(padded_tokens) : 0.0; }
};

// Token rows right-padded with pad_id into a (rows, longest row) i64 tensor, at least one column.
Tensor pad_rows(const std::vector<std::vector<int32_t>>& rows, int32_t pad_id);

class TranslationLoader {
 public:
  TranslationLoader(const TranslationLoaderOptions& options, const DataCursor& start);
  ~TranslationLoader();  // stops and joins the prefetch thread
  TranslationLoader(const TranslationLoader&) = delete;
  TranslationLoader& operator=(const TranslationLoader&) = delete;

  // The next batch; blocks only when the prefetch queue is empty. Rethrows a reader's DataError.
  std::optional<TranslationBatch> next();
  DataCursor cursor() const;  // resume point after the last batch next() returned
  PaddingStats padding() const;
  int64_t num_examples() const;  // examples in the split (before filtering)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace px::data

// The global sample order: a permutation of example ids per epoch from (seed, epoch), cut into global
// batches that do not depend on the world size, each split into per-rank slices; resumable by cursor.
#pragma once

#include <cstdint>
#include <vector>

namespace px::data {

// Where a data stream stands. `position` is the index in the epoch's global order where the current
// bucketing window starts; `batch_in_window` counts the global batches already taken from it.
// Seeking to a cursor recomputes only that window's batches from example lengths: nothing is read.
struct DataCursor {
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t position = 0;
  int64_t batch_in_window = 0;
  bool operator==(const DataCursor&) const = default;
};

// A key derived from (key, value) by one Philox4x32 call in `domain`: chains keys such as
// (seed, epoch, window start) so that every stream is a function of its coordinates alone.
uint64_t philox_key(uint64_t key, uint64_t value, uint32_t domain);

// Sequential draws from Philox4x32 under a fixed key and domain: counter c yields two 64-bit words.
class PhiloxStream {
 public:
  PhiloxStream(uint64_t key, uint32_t domain) : key_(key), domain_(domain) {}
  uint64_t next_u64();
  uint64_t below(uint64_t n);             // unbiased in [0, n), n > 0 (Lemire's multiply-shift + rejection)
  int64_t uniform_int(int64_t lo, int64_t hi);  // inclusive, lo <= hi
  double uniform();                        // [0, 1), 53 random bits

 private:
  uint64_t key_;
  uint32_t domain_;
  uint64_t counter_ = 0;
  uint64_t spare_ = 0;
  bool has_spare_ = false;
};

// A permutation of [0, n) from (seed, epoch): Fisher-Yates driven by Philox4x32 counters.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

struct SamplerOptions {
  // Exactly one of the two: a fixed number of examples per global batch, or a token budget per global
  // batch (all ranks together), where a batch costs num_examples * its longest example.
  int64_t batch_size = 0;
  int64_t max_tokens = 0;
  // Token batching: examples per length-bucketing window (sorted by length inside it, cut into
  // batches, batch order shuffled). 0: 100 batches' worth at the mean length.
  int64_t window = 0;
  bool shuffle = true;    // false: identity order, batches in order (evaluation)
  bool drop_last = true;  // fixed-size batching: drop an epoch's last incomplete global batch
};

struct GlobalBatch {
  std::vector<int64_t> ids;  // example ids of the whole global batch (sorted by length when token-batched)
  int64_t epoch = 0;
  DataCursor after;          // the cursor that resumes right after this batch
};

// Produces the global batches of epoch after epoch from a start cursor. lengths[i] is the cost
// length of example i (token batching) or ignored (fixed batches); lengths[i] < 0 excludes example i
// (the max-length filter). Throws DataError when no example remains.
class GlobalBatchSampler {
 public:
  GlobalBatchSampler(std::vector<int64_t> lengths, const SamplerOptions& options, const DataCursor& start);
  GlobalBatch next();
  const DataCursor& cursor() const { return cursor_; }  // names the batch next() returns, and its epoch
  int64_t num_examples() const { return static_cast<int64_t>(lengths_.size()); }

 private:
  bool fixed_size() const { return options_.batch_size > 0; }
  void load_window();  // fills window_batches_ for cursor_.position
  void load_fixed_window();
  void load_token_window();
  void advance_window();  // cursor to the next window's start, the next epoch's after the last
  // Moves the cursor past spent or empty windows, so it always names the next batch (and its epoch).
  void settle();
  std::vector<int64_t> lengths_;
  SamplerOptions options_;
  DataCursor cursor_;
  std::vector<int64_t> order_;                       // current epoch's permutation
  int64_t order_epoch_ = -1;
  std::vector<std::vector<int64_t>> window_batches_;  // batches of the current window, in emit order
  int64_t window_end_ = 0;                           // global-order index where the window ends
  int64_t window_size_ = 0;                          // positions per window (token batching)
  bool window_loaded_ = false;                       // window_batches_ belong to cursor_.position
};

// Rank r's share of a global batch: elements r, r + world, r + 2*world, ... (balanced tokens when the
// batch is sorted by length; the union over ranks is the batch for every world size).
std::vector<int64_t> rank_slice(const std::vector<int64_t>& global_ids, int rank, int world);

}  // namespace px::data

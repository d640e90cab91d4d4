// Global sample order: Philox streams, per-epoch permutations, length-bucketed token batches and
// fixed-size batches cut window by window, and the cursor that resumes them on any world size.
#include "data/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <utility>

#include "core/util/check.h"
#include "core/util/error.h"
#include "core/util/philox.h"

namespace px::data {
namespace {

// Philox domains of the sampler's streams, apart from the tensor ops' domains (0 and 1).
constexpr uint32_t kPermutationDomain = 0x50455231;  // "PER1"
constexpr uint32_t kBatchOrderDomain = 0x424f5231;   // "BOR1"

uint64_t words_to_u64(uint32_t lo, uint32_t hi) { return (static_cast<uint64_t>(hi) << 32) | lo; }

// Fisher-Yates: position i - 1 swaps with a uniform position in [0, i), for i = n down to 2.
template <typename T>
void shuffle_in_place(std::vector<T>& items, PhiloxStream& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng.below(i)]);
}

// Examples per window when SamplerOptions::window is 0: the positions that hold 100 batches of
// included examples at their mean length (at least one example per batch, at most the whole split).
int64_t default_window(const std::vector<int64_t>& lengths, int64_t max_tokens) {
  int64_t included = 0;
  double total_length = 0.0;
  for (int64_t len : lengths) {
    if (len < 0) continue;
    ++included;
    total_length += static_cast<double>(len);
  }
  const double mean = std::max(1.0, total_length / static_cast<double>(included));
  const double per_batch = std::max(1.0, std::floor(static_cast<double>(max_tokens) / mean));
  const double n = static_cast<double>(lengths.size());
  return static_cast<int64_t>(std::min(n, std::ceil(100.0 * per_batch * n / static_cast<double>(included))));
}

std::string cursor_str(const DataCursor& c) {
  return "(seed " + std::to_string(c.seed) + ", epoch " + std::to_string(c.epoch) + ", position " +
         std::to_string(c.position) + ", batch " + std::to_string(c.batch_in_window) + ")";
}

}  // namespace

uint64_t philox_key(uint64_t key, uint64_t value, uint32_t domain) {
  const PhiloxOut out = philox4x32(key, value, domain);
  return words_to_u64(out.v[0], out.v[1]);
}

uint64_t PhiloxStream::next_u64() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const PhiloxOut out = philox4x32(key_, counter_++, domain_);
  spare_ = words_to_u64(out.v[2], out.v[3]);
  has_spare_ = true;
  return words_to_u64(out.v[0], out.v[1]);
}

// Lemire (2019): the high word of x * n is uniform in [0, n) once products whose low word falls
// below 2^64 mod n are rejected.
uint64_t PhiloxStream::below(uint64_t n) {
  CHECK_GT(n, 0u);
  unsigned __int128 product = static_cast<unsigned __int128>(next_u64()) * n;
  if (static_cast<uint64_t>(product) < n) {
    const uint64_t threshold = (0 - n) % n;
    while (static_cast<uint64_t>(product) < threshold) product = static_cast<unsigned __int128>(next_u64()) * n;
  }
  return static_cast<uint64_t>(product >> 64);
}

int64_t PhiloxStream::uniform_int(int64_t lo, int64_t hi) {
  CHECK_LE(lo, hi);
  return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
}

double PhiloxStream::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1p-53; }

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  CHECK_GE(n, 0);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  PhiloxStream rng(philox_key(seed, static_cast<uint64_t>(epoch), kPermutationDomain), kPermutationDomain);
  shuffle_in_place(perm, rng);
  return perm;
}

GlobalBatchSampler::GlobalBatchSampler(std::vector<int64_t> lengths, const SamplerOptions& options,
                                       const DataCursor& start)
    : lengths_(std::move(lengths)), options_(options), cursor_(start) {
  CHECK((options_.batch_size > 0) != (options_.max_tokens > 0))
      << "exactly one of batch_size (" << options_.batch_size << ") and max_tokens (" << options_.max_tokens
      << ") must be positive";
  CHECK_GE(options_.window, 0);
  const int64_t n = num_examples();
  const int64_t included = std::count_if(lengths_.begin(), lengths_.end(), [](int64_t len) { return len >= 0; });
  if (included == 0) {
    throw DataError("sampler: none of the " + std::to_string(n) + " examples is left after filtering");
  }
  if (fixed_size() && options_.drop_last && included < options_.batch_size) {
    throw DataError("sampler: " + std::to_string(included) + " examples make no complete batch of " +
                    std::to_string(options_.batch_size) + " (drop_last)");
  }
  if (start.epoch < 0 || start.position < 0 || start.position > n || start.batch_in_window < 0) {
    throw DataError("data cursor " + cursor_str(start) + " does not fit a split of " + std::to_string(n) +
                    " examples");
  }
  if (!fixed_size()) {
    window_size_ = options_.window > 0 ? options_.window : default_window(lengths_, options_.max_tokens);
  }
  settle();
}

GlobalBatch GlobalBatchSampler::next() {
  GlobalBatch batch;
  batch.ids = window_batches_[static_cast<size_t>(cursor_.batch_in_window)];
  batch.epoch = cursor_.epoch;
  ++cursor_.batch_in_window;
  settle();
  batch.after = cursor_;
  return batch;
}

// Terminates: every epoch holds at least one batch (checked by the constructor), and every window
// that yields none moves the position forward.
void GlobalBatchSampler::settle() {
  for (;;) {
    if (!window_loaded_) load_window();
    if (cursor_.batch_in_window < static_cast<int64_t>(window_batches_.size())) return;
    advance_window();
  }
}

void GlobalBatchSampler::advance_window() {
  cursor_.position = window_end_;
  cursor_.batch_in_window = 0;
  window_loaded_ = false;
  if (cursor_.position >= num_examples()) {
    ++cursor_.epoch;
    cursor_.position = 0;
  }
}

void GlobalBatchSampler::load_window() {
  if (order_epoch_ != cursor_.epoch) {
    if (options_.shuffle) {
      order_ = epoch_permutation(num_examples(), cursor_.seed, cursor_.epoch);
    } else {
      order_.resize(lengths_.size());
      std::iota(order_.begin(), order_.end(), int64_t{0});
    }
    order_epoch_ = cursor_.epoch;
  }
  window_batches_.clear();
  if (fixed_size()) {
    load_fixed_window();
  } else {
    load_token_window();
  }
  window_loaded_ = true;
}

// The next batch_size included examples in epoch order; the window ends after the last of them.
void GlobalBatchSampler::load_fixed_window() {
  const int64_t n = num_examples();
  std::vector<int64_t> batch;
  int64_t p = cursor_.position;
  while (p < n && static_cast<int64_t>(batch.size()) < options_.batch_size) {
    const int64_t id = order_[static_cast<size_t>(p++)];
    if (lengths_[static_cast<size_t>(id)] >= 0) batch.push_back(id);
  }
  window_end_ = p;
  const bool complete = static_cast<int64_t>(batch.size()) == options_.batch_size;
  if (!batch.empty() && (complete || !options_.drop_last)) window_batches_.push_back(std::move(batch));
}

// Window positions [position, position + W): included examples sorted by length (stable, so ties
// keep epoch order), cut greedily under count * longest <= max_tokens, batch order shuffled.
void GlobalBatchSampler::load_token_window() {
  window_end_ = cursor_.position + std::min(window_size_, num_examples() - cursor_.position);
  std::vector<int64_t> ids;
  for (int64_t p = cursor_.position; p < window_end_; ++p) {
    const int64_t id = order_[static_cast<size_t>(p)];
    if (lengths_[static_cast<size_t>(id)] >= 0) ids.push_back(id);
  }
  const auto length = [&](int64_t id) { return lengths_[static_cast<size_t>(id)]; };
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return length(a) < length(b); });

  std::vector<int64_t> batch;
  for (int64_t id : ids) {  // sorted ascending: the newcomer is the batch's longest
    const int64_t cost = static_cast<int64_t>(batch.size() + 1) * length(id);
    if (!batch.empty() && cost > options_.max_tokens) window_batches_.push_back(std::exchange(batch, {}));
    batch.push_back(id);
  }
  if (!batch.empty()) window_batches_.push_back(std::move(batch));

  if (options_.shuffle) {
    const uint64_t epoch_key = philox_key(cursor_.seed, static_cast<uint64_t>(cursor_.epoch), kBatchOrderDomain);
    PhiloxStream rng(philox_key(epoch_key, static_cast<uint64_t>(cursor_.position), kBatchOrderDomain),
                     kBatchOrderDomain);
    shuffle_in_place(window_batches_, rng);
  }
}

std::vector<int64_t> rank_slice(const std::vector<int64_t>& global_ids, int rank, int world) {
  CHECK_GT(world, 0);
  CHECK(rank >= 0 && rank < world) << "rank " << rank << " of world " << world;
  std::vector<int64_t> slice;
  for (size_t i = static_cast<size_t>(rank); i < global_ids.size(); i += static_cast<size_t>(world)) {
    slice.push_back(global_ids[i]);
  }
  return slice;
}

}  // namespace px::data

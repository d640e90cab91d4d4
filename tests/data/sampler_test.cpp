// GlobalBatchSampler and epoch_permutation: permutations, token and fixed-size batching, the
// max-length filter, world-size independence of rank slices, and exact resume from any cursor.
#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/sampler.h"

namespace px::data {
namespace {

// Lengths in [1, 60]; every 7th example excluded (the max-length filter's -1).
std::vector<int64_t> make_lengths(int64_t n, uint64_t seed) {
  std::vector<int64_t> lengths(static_cast<size_t>(n));
  PhiloxStream rng(seed, 7);
  for (int64_t i = 0; i < n; ++i) lengths[i] = i % 7 == 3 ? -1 : rng.uniform_int(1, 60);
  return lengths;
}

SamplerOptions token_options(int64_t max_tokens = 200, int64_t window = 50) {
  SamplerOptions o;
  o.max_tokens = max_tokens;
  o.window = window;
  return o;
}

SamplerOptions fixed_options(int64_t batch_size, bool drop_last) {
  SamplerOptions o;
  o.batch_size = batch_size;
  o.drop_last = drop_last;
  return o;
}

// The batches of the sampler's current epoch, from its cursor to the epoch's end.
std::vector<GlobalBatch> rest_of_epoch(GlobalBatchSampler& sampler) {
  std::vector<GlobalBatch> out;
  const int64_t epoch = sampler.cursor().epoch;
  while (sampler.cursor().epoch == epoch) out.push_back(sampler.next());
  return out;
}

std::vector<GlobalBatch> take(GlobalBatchSampler& sampler, size_t count) {
  std::vector<GlobalBatch> out;
  while (out.size() < count) out.push_back(sampler.next());
  return out;
}

std::vector<int64_t> included_ids(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> ids;
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] >= 0) ids.push_back(static_cast<int64_t>(i));
  }
  return ids;
}

std::vector<int64_t> sorted_ids(const std::vector<GlobalBatch>& batches) {
  std::vector<int64_t> ids;
  for (const GlobalBatch& b : batches) ids.insert(ids.end(), b.ids.begin(), b.ids.end());
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(EpochPermutation, IsAPermutationDeterminedBySeedAndEpoch) {
  for (int64_t n : {0, 1, 2, 17, 1000}) {
    std::vector<int64_t> perm = epoch_permutation(n, 5, 3);
    EXPECT_EQ(perm, epoch_permutation(n, 5, 3));
    std::sort(perm.begin(), perm.end());
    std::vector<int64_t> identity(static_cast<size_t>(n));
    std::iota(identity.begin(), identity.end(), int64_t{0});
    EXPECT_EQ(perm, identity) << "n = " << n;
  }
  const std::vector<int64_t> base = epoch_permutation(1000, 5, 3);
  EXPECT_NE(base, epoch_permutation(1000, 6, 3));
  EXPECT_NE(base, epoch_permutation(1000, 5, 4));
}

TEST(EpochPermutation, AllOrdersOfThreeAreEquallyLikely) {
  std::map<std::vector<int64_t>, int> counts;
  constexpr int kEpochs = 6000;
  for (int64_t epoch = 0; epoch < kEpochs; ++epoch) ++counts[epoch_permutation(3, 11, epoch)];
  ASSERT_EQ(counts.size(), 6u);
  for (const auto& [perm, count] : counts) EXPECT_NEAR(count, kEpochs / 6, 150);  // ~4.5 sigma
}

TEST(PhiloxStream, BelowIsInRangeAndUniform) {
  PhiloxStream rng(3, 9);
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 50000; ++i) ++counts[rng.below(5)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 450);
  for (int i = 0; i < 1000; ++i) {
    const double u = rng.uniform();
    EXPECT_TRUE(u >= 0.0 && u < 1.0);
    const int64_t k = rng.uniform_int(-2, 2);
    EXPECT_TRUE(k >= -2 && k <= 2);
  }
}

TEST(TokenBatching, EachIncludedExampleOncePerEpochWithinBudget) {
  const std::vector<int64_t> lengths = make_lengths(500, 1);
  GlobalBatchSampler sampler(lengths, token_options(), DataCursor{.seed = 42});
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<GlobalBatch> batches = rest_of_epoch(sampler);
    EXPECT_EQ(sorted_ids(batches), included_ids(lengths)) << "epoch " << epoch;
    for (const GlobalBatch& b : batches) {
      EXPECT_EQ(b.epoch, epoch);
      ASSERT_FALSE(b.ids.empty());
      int64_t longest = 0;
      for (size_t i = 0; i < b.ids.size(); ++i) {
        const int64_t len = lengths[b.ids[i]];
        ASSERT_GE(len, 0) << "filtered example " << b.ids[i] << " sampled";
        if (i > 0) {
          EXPECT_LE(lengths[b.ids[i - 1]], len) << "batch not sorted by length";
        }
        longest = std::max(longest, len);
      }
      EXPECT_LE(static_cast<int64_t>(b.ids.size()) * longest, 200);
    }
  }
}

TEST(TokenBatching, ExampleOverBudgetFormsItsOwnBatch) {
  const std::vector<int64_t> lengths = {5, 50, 5, 5, 60, 5};
  GlobalBatchSampler sampler(lengths, token_options(/*max_tokens=*/20, /*window=*/6), DataCursor{});
  const std::vector<GlobalBatch> batches = rest_of_epoch(sampler);
  EXPECT_EQ(sorted_ids(batches), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  for (const GlobalBatch& b : batches) {
    for (int64_t id : b.ids) {
      if (lengths[id] > 20) {
        EXPECT_EQ(b.ids.size(), 1u);
      }
    }
  }
}

TEST(TokenBatching, BatchesComeFromTheirWindow) {
  const std::vector<int64_t> lengths = make_lengths(300, 2);
  constexpr int64_t kWindow = 40;
  GlobalBatchSampler sampler(lengths, token_options(150, kWindow), DataCursor{.seed = 9, .epoch = 2});
  const std::vector<int64_t> perm = epoch_permutation(300, 9, 2);
  DataCursor before = sampler.cursor();
  for (const GlobalBatch& b : rest_of_epoch(sampler)) {
    const auto first = perm.begin() + before.position;
    const auto last = perm.begin() + std::min<int64_t>(before.position + kWindow, 300);
    for (int64_t id : b.ids) EXPECT_NE(std::find(first, last, id), last) << "id " << id;
    before = b.after;
  }
}

TEST(TokenBatching, NoShuffleKeepsIdentityOrderAndBatchOrder) {
  const std::vector<int64_t> lengths = {3, 1, 2, 9, 9, 1, 4, 4};
  SamplerOptions o = token_options(/*max_tokens=*/8, /*window=*/4);
  o.shuffle = false;
  GlobalBatchSampler sampler(lengths, o, DataCursor{.seed = 1});
  const std::vector<GlobalBatch> batches = rest_of_epoch(sampler);
  // Window [0, 4) sorted by length: 1 (1), 2 (2), 0 (3), 3 (9); window [4, 8): 5 (1), 6, 7 (4), 4 (9).
  const std::vector<std::vector<int64_t>> expected = {{1, 2}, {0}, {3}, {5, 6}, {7}, {4}};
  ASSERT_EQ(batches.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(batches[i].ids, expected[i]) << "batch " << i;
}

TEST(TokenBatching, DefaultWindowCoversTheSplit) {
  const std::vector<int64_t> lengths = make_lengths(3000, 3);
  GlobalBatchSampler sampler(lengths, token_options(/*max_tokens=*/100, /*window=*/0), DataCursor{.seed = 4});
  EXPECT_EQ(sorted_ids(rest_of_epoch(sampler)), included_ids(lengths));
}

TEST(RankSlice, UnionOverRanksIsTheGlobalBatchForEveryWorldSize) {
  const std::vector<int64_t> lengths = make_lengths(400, 5);
  std::vector<std::vector<GlobalBatch>> per_world;
  for (int world : {1, 2, 4}) {
    GlobalBatchSampler sampler(lengths, token_options(), DataCursor{.seed = 77});
    per_world.push_back(take(sampler, 60));
    for (const GlobalBatch& b : per_world.back()) {
      std::vector<int64_t> joined;
      for (int rank = 0; rank < world; ++rank) {
        const std::vector<int64_t> slice = rank_slice(b.ids, rank, world);
        EXPECT_LE(slice.size(), b.ids.size() / world + 1);
        joined.insert(joined.end(), slice.begin(), slice.end());
      }
      std::vector<int64_t> expected = b.ids;
      std::sort(joined.begin(), joined.end());
      std::sort(expected.begin(), expected.end());
      EXPECT_EQ(joined, expected);
      EXPECT_EQ(std::set<int64_t>(joined.begin(), joined.end()).size(), joined.size());
    }
  }
  for (size_t w = 1; w < per_world.size(); ++w) {
    ASSERT_EQ(per_world[w].size(), per_world[0].size());
    for (size_t i = 0; i < per_world[0].size(); ++i) {
      EXPECT_EQ(per_world[w][i].ids, per_world[0][i].ids);
      EXPECT_EQ(per_world[w][i].after, per_world[0][i].after);
    }
  }
  EXPECT_EQ(rank_slice({10, 11, 12, 13, 14}, 1, 2), (std::vector<int64_t>{11, 13}));
  EXPECT_TRUE(rank_slice({10}, 3, 4).empty());
}

// Indices k at which to resume after batch k: a random one, one inside a window, one ending a window
// and one ending an epoch.
std::vector<size_t> resume_points(const std::vector<GlobalBatch>& batches, uint64_t seed) {
  std::vector<size_t> points;
  PhiloxStream rng(seed, 3);
  points.push_back(static_cast<size_t>(rng.below(batches.size() - 1)));
  for (size_t k = 0; k + 1 < batches.size(); ++k) {
    if (batches[k].after.batch_in_window > 0) {
      points.push_back(k);
      break;
    }
  }
  for (size_t k = 5; k + 1 < batches.size(); ++k) {
    if (batches[k].after.batch_in_window == 0) {
      points.push_back(k);
      break;
    }
  }
  for (size_t k = 0; k + 1 < batches.size(); ++k) {
    if (batches[k + 1].epoch != batches[k].epoch) {
      points.push_back(k);
      break;
    }
  }
  return points;
}

TEST(Resume, NewSamplerFromAfterContinuesExactly) {
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    const std::vector<int64_t> lengths = make_lengths(250, seed);
    const SamplerOptions options = token_options(120, 30);
    GlobalBatchSampler reference(lengths, options, DataCursor{.seed = seed});
    const std::vector<GlobalBatch> batches = take(reference, 150);  // more than two epochs
    const std::vector<size_t> points = resume_points(batches, seed);
    ASSERT_EQ(points.size(), 4u);
    EXPECT_EQ(batches[points[3]].after, (DataCursor{.seed = seed, .epoch = 1}));
    for (size_t k : points) {
      GlobalBatchSampler resumed(lengths, options, batches[k].after);
      for (size_t i = k + 1; i < batches.size(); ++i) {
        const GlobalBatch b = resumed.next();
        ASSERT_EQ(b.ids, batches[i].ids) << "seed " << seed << " resumed after " << k << ", batch " << i;
        ASSERT_EQ(b.epoch, batches[i].epoch);
        ASSERT_EQ(b.after, batches[i].after);
      }
    }
  }
}

// Consumes the rest of an epoch from `start` on `world` ranks (one sampler each) and returns every
// example id any rank received, plus the cursor all ranks agree on at the end.
std::vector<int64_t> consume_on_ranks(const std::vector<int64_t>& lengths, const SamplerOptions& options,
                                      const DataCursor& start, int world, size_t max_batches,
                                      DataCursor& end) {
  std::vector<int64_t> seen;
  std::vector<DataCursor> ends;
  for (int rank = 0; rank < world; ++rank) {
    GlobalBatchSampler sampler(lengths, options, start);
    for (size_t i = 0; i < max_batches && sampler.cursor().epoch == start.epoch; ++i) {
      const std::vector<int64_t> slice = rank_slice(sampler.next().ids, rank, world);
      seen.insert(seen.end(), slice.begin(), slice.end());
    }
    ends.push_back(sampler.cursor());
  }
  for (const DataCursor& c : ends) EXPECT_EQ(c, ends.front());
  end = ends.front();
  return seen;
}

TEST(Resume, ChangingWorldSizeYieldsExactlyTheRemainingExamples) {
  for (uint64_t seed : {5u, 6u, 7u}) {
    const std::vector<int64_t> lengths = make_lengths(300, seed);
    const SamplerOptions options = token_options(100, 40);
    for (const auto& [before_world, after_world] : {std::pair{1, 2}, std::pair{2, 1}, std::pair{2, 4}}) {
      const DataCursor start{.seed = seed, .epoch = 3};
      DataCursor middle, end;
      const size_t k = 1 + seed * 3;
      std::vector<int64_t> seen = consume_on_ranks(lengths, options, start, before_world, k, middle);
      const std::vector<int64_t> rest = consume_on_ranks(lengths, options, middle, after_world, SIZE_MAX, end);
      seen.insert(seen.end(), rest.begin(), rest.end());
      std::sort(seen.begin(), seen.end());
      EXPECT_EQ(seen, included_ids(lengths)) << "seed " << seed << ", world " << before_world << " -> " << after_world;
      EXPECT_EQ(end, (DataCursor{.seed = seed, .epoch = 4}));
    }
  }
}

TEST(FixedBatching, DropLastDropsTheIncompleteFinalBatch) {
  const std::vector<int64_t> lengths(10, 0);
  GlobalBatchSampler sampler(lengths, fixed_options(3, /*drop_last=*/true), DataCursor{.seed = 8});
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<GlobalBatch> batches = rest_of_epoch(sampler);
    ASSERT_EQ(batches.size(), 3u);
    EXPECT_EQ(batches.back().after, (DataCursor{.seed = 8, .epoch = epoch + 1}));  // the last example skipped
    const std::vector<int64_t> perm = epoch_permutation(10, 8, epoch);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(batches[i].ids, std::vector<int64_t>(perm.begin() + 3 * i, perm.begin() + 3 * i + 3));
    }
  }
}

TEST(FixedBatching, KeepLastAndNoShuffleGiveIdentityBatches) {
  SamplerOptions o = fixed_options(4, /*drop_last=*/false);
  o.shuffle = false;
  GlobalBatchSampler sampler(std::vector<int64_t>(10, 0), o, DataCursor{});
  const std::vector<GlobalBatch> batches = rest_of_epoch(sampler);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].ids, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(batches[1].ids, (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(batches[2].ids, (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(batches[2].after, (DataCursor{.epoch = 1}));
}

TEST(FixedBatching, ExcludedExamplesAreSkippedAndBatchesStayFull) {
  const std::vector<int64_t> lengths = make_lengths(100, 9);
  GlobalBatchSampler sampler(lengths, fixed_options(8, /*drop_last=*/true), DataCursor{.seed = 3});
  const std::vector<GlobalBatch> batches = rest_of_epoch(sampler);
  const size_t included = included_ids(lengths).size();
  ASSERT_EQ(batches.size(), included / 8);
  for (const GlobalBatch& b : batches) {
    ASSERT_EQ(b.ids.size(), 8u);
    for (int64_t id : b.ids) EXPECT_GE(lengths[id], 0);
  }
  GlobalBatchSampler resumed(lengths, fixed_options(8, true), batches[4].after);
  EXPECT_EQ(resumed.next().ids, batches[5].ids);
}

TEST(Errors, NoExampleLeftThrows) {
  EXPECT_THROW(GlobalBatchSampler(std::vector<int64_t>(5, -1), token_options(), DataCursor{}), DataError);
  EXPECT_THROW(GlobalBatchSampler({}, token_options(), DataCursor{}), DataError);
  EXPECT_THROW(GlobalBatchSampler(std::vector<int64_t>(3, 0), fixed_options(4, true), DataCursor{}), DataError);
  GlobalBatchSampler keep_last(std::vector<int64_t>(3, 0), fixed_options(4, false), DataCursor{});
  EXPECT_EQ(keep_last.next().ids.size(), 3u);
  EXPECT_EQ(keep_last.next().ids.size(), 3u);
}

TEST(Errors, CursorOutsideTheSplitThrows) {
  const std::vector<int64_t> lengths(10, 1);
  EXPECT_THROW(GlobalBatchSampler(lengths, token_options(), DataCursor{.position = 11}), DataError);
  EXPECT_THROW(GlobalBatchSampler(lengths, token_options(), DataCursor{.epoch = -1}), DataError);
}

}  // namespace
}  // namespace px::data

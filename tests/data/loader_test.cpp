// TranslationLoader and DetectionLoader on small shards written to a temporary directory: batch
// layout, epoch coverage, world-size independence, resume across world sizes, errors and shapes.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/detection_loader.h"
#include "data/detection_shard.h"
#include "data/translation_loader.h"
#include "data/translation_shard.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

using px::test::expect_data_error;

constexpr int64_t kVocab = 100;
constexpr int64_t kMaxLength = 20;

struct Pair {
  std::vector<int32_t> src, tgt;
};

// Example i of the translation corpus: lengths cycle through 0..21 (src) and 1..18 (tgt), so some
// are empty or over kMaxLength; token j of a side is 3 + (7 i + j) % 97 (ids 0-2 are pad/bos/eos).
Pair corpus_pair(int64_t i) {
  Pair p;
  const auto tokens = [&](int64_t n, int64_t salt) {
    std::vector<int32_t> t;
    for (int64_t j = 0; j < n; ++j) t.push_back(static_cast<int32_t>(3 + (7 * i + j + salt) % 97));
    return t;
  };
  p.src = tokens((i * 5) % 22, 0);
  p.tgt = tokens(1 + (i * 3) % 18, 11);
  return p;
}

bool kept(const Pair& p) {
  return !p.src.empty() && !p.tgt.empty() && int64_t(p.src.size()) + 1 <= kMaxLength &&
         int64_t(p.tgt.size()) + 1 <= kMaxLength;
}

std::vector<int64_t> to_ids(const Tensor& row_major, int64_t row) {
  const int64_t len = row_major.size(1);
  const int64_t* data = row_major.data<int64_t>() + row * len;
  return std::vector<int64_t>(data, data + len);
}

// `tokens` with `before` in front and `after` behind, padded with 0 to `len`.
std::vector<int64_t> expected_row(const std::vector<int32_t>& tokens, std::optional<int64_t> before,
                                  std::optional<int64_t> after, int64_t len) {
  std::vector<int64_t> row;
  if (before) row.push_back(*before);
  row.insert(row.end(), tokens.begin(), tokens.end());
  if (after) row.push_back(*after);
  row.resize(static_cast<size_t>(len), 0);
  return row;
}

class LoaderTest : public px::test::TempDirTest {
 protected:
  // Two shards of 70 and 50 examples: global ids 0..119.
  std::vector<std::string> write_translation_shards() {
    std::vector<std::string> paths;
    int64_t id = 0;
    for (int64_t count : {70, 50}) {
      paths.push_back(path("tr" + std::to_string(paths.size()) + ".h5"));
      TranslationShardWriter writer(paths.back(), "hash", kVocab);
      for (int64_t i = 0; i < count; ++i, ++id) {
        corpus_.push_back(corpus_pair(id));
        writer.add(corpus_.back().src, corpus_.back().tgt);
      }
      writer.finish();
    }
    return paths;
  }

  TranslationLoaderOptions translation_options(int rank = 0, int world = 1) {
    TranslationLoaderOptions o;
    o.shards = translation_shards_;
    o.max_tokens = 120;
    o.max_length = kMaxLength;
    o.window = 30;
    o.rank = rank;
    o.world = world;
    o.prefetch = 3;
    return o;
  }

  std::vector<int64_t> kept_ids() const {
    std::vector<int64_t> ids;
    for (size_t i = 0; i < corpus_.size(); ++i) {
      if (kept(corpus_[i])) ids.push_back(static_cast<int64_t>(i));
    }
    return ids;
  }

  std::vector<Pair> corpus_;
  std::vector<std::string> translation_shards_;
};

class TranslationLoaderTest : public LoaderTest {
 protected:
  void SetUp() override {
    LoaderTest::SetUp();
    translation_shards_ = write_translation_shards();
  }
};

std::vector<TranslationBatch> take(TranslationLoader& loader, size_t count) {
  std::vector<TranslationBatch> out;
  while (out.size() < count) {
    std::optional<TranslationBatch> b = loader.next();
    if (!b) break;
    out.push_back(std::move(*b));
  }
  return out;
}

TEST(PadRows, RightPadsToTheLongestRowWithAtLeastOneColumn) {
  const Tensor t = pad_rows({{5, 6, 7}, {8}, {}}, 0);  // (3, 3)
  ASSERT_EQ(t.dtype(), DType::i64);
  ASSERT_EQ(t.shape(), Shape({3, 3}));
  const std::vector<int64_t> want{5, 6, 7, 8, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + 9), want);
  const Tensor empty_rows = pad_rows({{}, {}}, 3);  // (2, 1): one pad column
  ASSERT_EQ(empty_rows.shape(), Shape({2, 1}));
  EXPECT_EQ(empty_rows.data<int64_t>()[1], 3);
  EXPECT_EQ(pad_rows({}, 0).shape(), Shape({0, 1}));
}

TEST_F(TranslationLoaderTest, OneEpochInOrderWithBosEosPadLayout) {
  TranslationLoaderOptions o = translation_options();
  o.shuffle = false;
  o.max_epochs = 1;
  TranslationLoader loader(o, DataCursor{.seed = 3});
  EXPECT_EQ(loader.num_examples(), 120);
  EXPECT_EQ(loader.cursor(), (DataCursor{.seed = 3}));
  const std::vector<TranslationBatch> batches = take(loader, SIZE_MAX);
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_EQ(loader.cursor(), (DataCursor{.seed = 3, .epoch = 1}));

  std::vector<int64_t> seen;
  int64_t real = 0, padded = 0;
  for (const TranslationBatch& b : batches) {
    const auto n = static_cast<int64_t>(b.ids.size());
    ASSERT_GT(n, 0);
    ASSERT_EQ(b.src.shape()[0], n);
    ASSERT_EQ(b.tgt_in.shape(), b.tgt_out.shape());
    int64_t longest_src = 0, longest_tgt = 0, src_tokens = 0, tgt_tokens = 0;
    for (int64_t id : b.ids) {
      longest_src = std::max<int64_t>(longest_src, corpus_[id].src.size() + 1);
      longest_tgt = std::max<int64_t>(longest_tgt, corpus_[id].tgt.size() + 1);
      src_tokens += corpus_[id].src.size() + 1;
      tgt_tokens += corpus_[id].tgt.size() + 1;
    }
    EXPECT_LE(n * std::max(longest_src, longest_tgt), 120);
    ASSERT_EQ(b.src.size(1), longest_src);
    ASSERT_EQ(b.tgt_in.size(1), longest_tgt);
    for (int64_t r = 0; r < n; ++r) {
      const Pair& p = corpus_[b.ids[r]];
      EXPECT_EQ(to_ids(b.src, r), expected_row(p.src, std::nullopt, 2, longest_src));
      EXPECT_EQ(to_ids(b.tgt_in, r), expected_row(p.tgt, 1, std::nullopt, longest_tgt));
      EXPECT_EQ(to_ids(b.tgt_out, r), expected_row(p.tgt, std::nullopt, 2, longest_tgt));
    }
    EXPECT_EQ(b.src_tokens, src_tokens);
    EXPECT_EQ(b.tgt_tokens, tgt_tokens);
    EXPECT_EQ(b.global_tgt_tokens, tgt_tokens);
    EXPECT_EQ(b.padded_tokens, n * (longest_src + longest_tgt));
    EXPECT_EQ(b.epoch, 0);
    real += src_tokens + tgt_tokens;
    padded += b.padded_tokens;
    seen.insert(seen.end(), b.ids.begin(), b.ids.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, kept_ids());

  const PaddingStats stats = loader.padding();
  EXPECT_EQ(stats.filtered_examples, static_cast<int64_t>(corpus_.size() - kept_ids().size()));
  EXPECT_GT(stats.filtered_examples, 0);
  EXPECT_EQ(stats.real_tokens, real);
  EXPECT_EQ(stats.padded_tokens, padded);
  EXPECT_GT(stats.waste(), 0.0);
  EXPECT_LT(stats.waste(), 0.5);
}

TEST_F(TranslationLoaderTest, ShuffledEpochsCoverEveryKeptExampleOnce) {
  TranslationLoaderOptions o = translation_options();
  o.max_epochs = 2;
  TranslationLoader loader(o, DataCursor{.seed = 11});
  std::map<int64_t, std::vector<int64_t>> per_epoch;
  for (const TranslationBatch& b : take(loader, SIZE_MAX)) {
    per_epoch[b.epoch].insert(per_epoch[b.epoch].end(), b.ids.begin(), b.ids.end());
  }
  ASSERT_EQ(per_epoch.size(), 2u);
  EXPECT_NE(per_epoch[0], per_epoch[1]);
  for (auto& [epoch, ids] : per_epoch) {
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, kept_ids()) << "epoch " << epoch;
  }
}

TEST_F(TranslationLoaderTest, TwoRanksSplitTheSameGlobalBatches) {
  TranslationLoader single(translation_options(), DataCursor{.seed = 5});
  TranslationLoader rank0(translation_options(0, 2), DataCursor{.seed = 5});
  TranslationLoader rank1(translation_options(1, 2), DataCursor{.seed = 5});
  for (int step = 0; step < 40; ++step) {
    const TranslationBatch g = *single.next(), a = *rank0.next(), b = *rank1.next();
    std::vector<int64_t> joined = a.ids, expected = g.ids;
    joined.insert(joined.end(), b.ids.begin(), b.ids.end());
    std::sort(joined.begin(), joined.end());
    std::sort(expected.begin(), expected.end());
    ASSERT_EQ(joined, expected) << "step " << step;
    EXPECT_EQ(a.global_tgt_tokens, g.tgt_tokens);
    EXPECT_EQ(b.global_tgt_tokens, g.tgt_tokens);
    EXPECT_EQ(a.tgt_tokens + b.tgt_tokens, g.tgt_tokens);
    EXPECT_EQ(a.after, g.after);
    EXPECT_EQ(b.after, g.after);
    for (size_t r = 0; r < a.ids.size(); ++r) {
      const auto row = std::find(g.ids.begin(), g.ids.end(), a.ids[r]) - g.ids.begin();
      std::vector<int64_t> mine = to_ids(a.src, static_cast<int64_t>(r)), global = to_ids(g.src, row);
      const auto real = corpus_[a.ids[r]].src.size() + 1;
      EXPECT_TRUE(std::equal(mine.begin(), mine.begin() + real, global.begin()));
    }
  }
}

// Continues from `cursor` on `world` ranks for `count` steps: per step, the sorted union of the ranks' ids.
std::vector<std::vector<int64_t>> run_ranks(const TranslationLoaderOptions& base, int world, const DataCursor& cursor,
                                            size_t count, DataCursor& end) {
  std::vector<std::vector<int64_t>> steps(count);
  std::vector<DataCursor> ends;
  for (int rank = 0; rank < world; ++rank) {
    TranslationLoaderOptions o = base;
    o.rank = rank;
    o.world = world;
    TranslationLoader loader(o, cursor);
    for (size_t s = 0; s < count; ++s) {
      const TranslationBatch b = *loader.next();
      steps[s].insert(steps[s].end(), b.ids.begin(), b.ids.end());
    }
    ends.push_back(loader.cursor());
  }
  for (auto& ids : steps) std::sort(ids.begin(), ids.end());
  for (const DataCursor& c : ends) EXPECT_EQ(c, ends.front());
  end = ends.front();
  return steps;
}

TEST_F(TranslationLoaderTest, ResumesFromCursorAcrossWorldSizes) {
  const TranslationLoaderOptions base = translation_options();
  const DataCursor start{.seed = 21};
  DataCursor end;
  const std::vector<std::vector<int64_t>> reference = run_ranks(base, 1, start, 80, end);  // > one epoch
  for (size_t k : {1u, 7u, 23u}) {
    for (const auto& [before, after] : {std::pair{1, 1}, std::pair{1, 2}, std::pair{2, 1}, std::pair{2, 2}}) {
      DataCursor middle;
      const auto head = run_ranks(base, before, start, k, middle);
      const auto tail = run_ranks(base, after, middle, reference.size() - k, end);
      for (size_t s = 0; s < k; ++s) ASSERT_EQ(head[s], reference[s]);
      for (size_t s = k; s < reference.size(); ++s) {
        ASSERT_EQ(tail[s - k], reference[s]) << "resume after " << k << ", world " << before << " -> " << after;
      }
    }
  }
}

TEST_F(TranslationLoaderTest, RankWithAnEmptySliceGetsEmptyTensors) {
  TranslationLoaderOptions o = translation_options(7, 8);
  o.max_tokens = 20;  // global batches of a few examples: rank 7 of 8 often gets none
  TranslationLoader loader(o, DataCursor{.seed = 2});
  bool saw_empty = false;
  for (int step = 0; step < 30; ++step) {
    const TranslationBatch b = *loader.next();
    if (!b.ids.empty()) continue;
    saw_empty = true;
    EXPECT_EQ(b.src.shape(), (Shape{0, 1}));
    EXPECT_EQ(b.tgt_in.shape(), (Shape{0, 1}));
    EXPECT_EQ(b.tgt_out.shape(), (Shape{0, 1}));
    EXPECT_EQ(b.tgt_tokens, 0);
    EXPECT_GT(b.global_tgt_tokens, 0);
  }
  EXPECT_TRUE(saw_empty);
}

// Flips one byte inside example 0's source tokens, found by their byte pattern in the file.
void corrupt_first_tokens(const std::string& path, const std::vector<int32_t>& tokens) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::string pattern(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(int32_t));
  const size_t at = bytes.find(pattern);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.find(pattern, at + 1), std::string::npos);
  bytes[at + pattern.size() / 2] ^= 0x40;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST_F(LoaderTest, CorruptTokensRethrowDataErrorAndLoaderCloses) {
  const std::string path = (dir_ / "bad.h5").string();
  {
    TranslationShardWriter writer(path, "hash", kVocab);
    writer.add({90, 91, 92, 93, 94, 95, 96, 97}, {5, 6});
    for (int i = 0; i < 20; ++i) writer.add({4, 5, 6}, {7, 8, 9});
    writer.finish();
  }
  corrupt_first_tokens(path, {90, 91, 92, 93, 94, 95, 96, 97});
  translation_shards_ = {path};
  const auto start = std::chrono::steady_clock::now();
  {
    TranslationLoader loader(translation_options(), DataCursor{});
    expect_data_error([&] { loader.next(); }, {"bad.h5"});  // a corrupt chunk does not go unnoticed
    EXPECT_THROW(loader.next(), DataError);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(LoaderTest, MissingShardIsADataError) {
  translation_shards_ = {path("missing.h5")};
  EXPECT_THROW(TranslationLoader(translation_options(), DataCursor{}), DataError);
}

TEST_F(TranslationLoaderTest, DestructsWhileThePrefetchQueueIsFull) {
  for (int i = 0; i < 10; ++i) {
    TranslationLoader loader(translation_options(), DataCursor{.seed = static_cast<uint64_t>(i)});
    if (i % 2) loader.next();
  }
}

// Detection shard: 14 images of sizes between 30 and 90 pixels, 0-3 boxes each, image ids 1000 + i.
class DetectionLoaderTest : public LoaderTest {
 protected:
  void SetUp() override {
    LoaderTest::SetUp();
    path_ = path("det.h5");
    DetectionShardWriter writer(path_, {"shirt", "shoe", "bag"});
    for (int64_t i = 0; i < 14; ++i) {
      DetectionExample ex;
      ex.image_id = 1000 + i;
      ex.height = static_cast<int32_t>(30 + (i * 13) % 61);
      ex.width = static_cast<int32_t>(30 + (i * 29) % 61);
      ex.pixels.resize(static_cast<size_t>(ex.height) * ex.width * 3);
      for (size_t p = 0; p < ex.pixels.size(); ++p) ex.pixels[p] = static_cast<uint8_t>((p * 31 + i) % 256);
      for (int64_t b = 0; b < i % 4; ++b) {
        const float c = 0.2f + 0.2f * static_cast<float>(b);
        ex.boxes.insert(ex.boxes.end(), {c, 1.0f - c, 0.3f, 0.25f});
        ex.labels.push_back(static_cast<int32_t>((i + b) % 3));
      }
      examples_.push_back(ex);
      writer.add(ex);
    }
    writer.finish();
  }

  DetectionLoaderOptions options(int rank = 0, int world = 1) const {
    DetectionLoaderOptions o;
    o.shards = {path_};
    o.batch_size = 4;
    o.rank = rank;
    o.world = world;
    o.prefetch = 2;
    return o;
  }

  std::string path_;
  std::vector<DetectionExample> examples_;
};

void expect_well_formed(const DetectionBatch& b, const std::vector<DetectionExample>& examples) {
  const auto n = static_cast<int64_t>(b.ids.size());
  ASSERT_EQ(b.images.dim(), 4);
  ASSERT_EQ(b.images.size(0), n);
  ASSERT_EQ(b.images.size(1), 3);
  const int64_t h = b.images.size(2), w = b.images.size(3);
  ASSERT_EQ(b.mask.shape(), (Shape{n, h, w}));
  ASSERT_EQ(b.targets.size(), b.ids.size());
  int64_t max_h = 0, max_w = 0;
  const bool* mask = b.mask.data<bool>();
  for (int64_t i = 0; i < n; ++i) {
    const DetectionTarget& t = b.targets[i];
    const DetectionExample& ex = examples[b.ids[i]];
    EXPECT_EQ(t.image_id, ex.image_id);
    EXPECT_EQ(t.orig_height, ex.height);
    EXPECT_EQ(t.orig_width, ex.width);
    max_h = std::max<int64_t>(max_h, t.height);
    max_w = std::max<int64_t>(max_w, t.width);
    EXPECT_EQ(mask[(i * h + t.height - 1) * w + t.width - 1], false);
    if (t.width < w) {
      EXPECT_EQ(mask[(i * h) * w + t.width], true);
    }
    if (t.height < h) {
      EXPECT_EQ(mask[(i * h + t.height) * w], true);
    }
    const int64_t m = t.labels.numel();
    ASSERT_EQ(t.boxes.shape(), (Shape{m, 4}));
    const float* boxes = t.boxes.data<float>();
    for (int64_t k = 0; k < 4 * m; ++k) {
      EXPECT_GE(boxes[k], 0.0f);
      EXPECT_LE(boxes[k], 1.0f);
    }
    const int64_t* labels = t.labels.data<int64_t>();
    for (int64_t k = 0; k < m; ++k) EXPECT_TRUE(labels[k] >= 0 && labels[k] < 3);
  }
  EXPECT_EQ(max_h, h);
  EXPECT_EQ(max_w, w);
}

TEST_F(DetectionLoaderTest, BatchesAreWellFormedAndIndependentOfWorldSize) {
  DetectionLoader single(options(), DataCursor{.seed = 4});
  DetectionLoader rank0(options(0, 2), DataCursor{.seed = 4});
  DetectionLoader rank1(options(1, 2), DataCursor{.seed = 4});
  EXPECT_EQ(single.num_examples(), 14);
  EXPECT_EQ(single.category_names(), (std::vector<std::string>{"shirt", "shoe", "bag"}));
  for (int step = 0; step < 9; ++step) {  // 3 batches per epoch (drop_last): three epochs
    const DetectionBatch g = *single.next(), a = *rank0.next(), b = *rank1.next();
    ASSERT_EQ(g.ids.size(), 4u);
    EXPECT_EQ(g.epoch, step / 3);
    expect_well_formed(g, examples_);
    expect_well_formed(a, examples_);
    expect_well_formed(b, examples_);
    int64_t boxes = 0;
    for (int64_t id : g.ids) boxes += examples_[id].num_boxes();
    EXPECT_EQ(g.global_num_boxes, boxes);
    EXPECT_EQ(a.global_num_boxes, boxes);
    EXPECT_EQ(a.after, g.after);
    for (size_t i = 0; i < g.ids.size(); ++i) {
      const DetectionBatch& rank = i % 2 ? b : a;
      const DetectionTarget& mine = rank.targets[i / 2];
      ASSERT_EQ(rank.ids[i / 2], g.ids[i]);
      EXPECT_EQ(mine.height, g.targets[i].height);
      EXPECT_EQ(mine.width, g.targets[i].width);
      ASSERT_EQ(mine.boxes.numel(), g.targets[i].boxes.numel());
      EXPECT_TRUE(std::equal(mine.boxes.data<float>(), mine.boxes.data<float>() + mine.boxes.numel(),
                             g.targets[i].boxes.data<float>()));
    }
  }
  // A world-2 rank resumed from the world-1 cursor continues like the rank that never stopped.
  ASSERT_EQ(single.cursor(), rank1.cursor());
  DetectionLoader resumed(options(1, 2), single.cursor());
  const DetectionBatch r = *resumed.next(), c = *rank1.next();
  EXPECT_EQ(r.ids, c.ids);
  EXPECT_EQ(r.targets[0].height, c.targets[0].height);
  EXPECT_EQ(r.targets[0].width, c.targets[0].width);
}

TEST_F(DetectionLoaderTest, EvalVisitsEveryImageOnceAtTheEvalSize) {
  DetectionLoaderOptions o = options();
  o.shuffle = false;
  o.drop_last = false;
  o.max_epochs = 1;
  o.augment.train = false;
  DetectionLoader loader(o, DataCursor{});
  std::vector<int64_t> seen;
  while (std::optional<DetectionBatch> b = loader.next()) {
    expect_well_formed(*b, examples_);
    for (size_t i = 0; i < b->ids.size(); ++i) {
      const DetectionTarget& t = b->targets[i];
      EXPECT_TRUE(std::min(t.height, t.width) == o.augment.eval_size ||
                  std::max(t.height, t.width) <= o.augment.max_size);
      EXPECT_EQ(t.boxes.numel(), 4 * examples_[b->ids[i]].num_boxes());  // eval never drops boxes
    }
    seen.insert(seen.end(), b->ids.begin(), b->ids.end());
  }
  std::vector<int64_t> all(14);
  for (int64_t i = 0; i < 14; ++i) all[i] = i;
  EXPECT_EQ(seen, all);
}

TEST_F(DetectionLoaderTest, BatchSizeMustDivideByWorld) {
  DetectionLoaderOptions o = options(0, 3);
  EXPECT_THROW(DetectionLoader(o, DataCursor{}), ConfigError);
}

}  // namespace
}  // namespace px::data

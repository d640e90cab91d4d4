// Translation and detection shards: writer/reader round trips, sharded datasets with global ids, shards
// written by h5py, and a DataError naming file and dataset for every malformed-file case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>

#include "core/util/error.h"
#include "data/detection_shard.h"
#include "data/sharded_dataset.h"
#include "data/translation_shard.h"
#include "tests/common/pxt.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::expect_data_error;

using Tokens = std::vector<int32_t>;
using Pair = std::pair<Tokens, Tokens>;

class ShardTest : public px::test::TempDirTest {
 protected:
  // path(name), under another name: the tests call their file `path`.
  std::string file(const std::string& name) const { return path(name); }

  std::mt19937 rng_{1234};
};

int64_t uniform(std::mt19937& rng, int64_t lo, int64_t hi) {  // in [lo, hi]
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// Sentences of 0..max_len tokens; about one in ten is empty.
std::vector<Pair> random_corpus(std::mt19937& rng, int64_t n, int64_t max_len, int64_t vocab) {
  auto sentence = [&] {
    Tokens t(static_cast<size_t>(uniform(rng, 0, 9) == 0 ? 0 : uniform(rng, 1, max_len)));
    for (int32_t& v : t) v = static_cast<int32_t>(uniform(rng, 0, vocab - 1));
    return t;
  };
  std::vector<Pair> corpus;
  for (int64_t i = 0; i < n; ++i) corpus.emplace_back(sentence(), sentence());
  return corpus;
}

void write_translation(const std::string& path, const std::vector<Pair>& corpus, const std::string& hash,
                       int64_t vocab, const DatasetOptions& options = {}) {
  TranslationShardWriter writer(path, hash, vocab, options);
  for (const auto& [src, tgt] : corpus) writer.add(src, tgt);
  writer.finish();
}

void expect_translation(const TranslationShardReader& reader, const std::vector<Pair>& corpus) {
  ASSERT_EQ(reader.num_examples(), static_cast<int64_t>(corpus.size()));
  Tokens src, tgt;
  for (int64_t i = 0; i < reader.num_examples(); ++i) {
    reader.read(i, src, tgt);
    ASSERT_EQ(src, corpus[i].first) << "example " << i;
    ASSERT_EQ(tgt, corpus[i].second) << "example " << i;
    ASSERT_EQ(reader.src_length(i), static_cast<int64_t>(src.size()));
    ASSERT_EQ(reader.tgt_length(i), static_cast<int64_t>(tgt.size()));
  }
}

std::vector<DetectionExample> random_images(std::mt19937& rng, int64_t n, int64_t max_side, int64_t categories) {
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<DetectionExample> images(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    DetectionExample& e = images[i];
    e.image_id = 1000 + 3 * i;
    e.height = static_cast<int32_t>(uniform(rng, 1, max_side));
    e.width = static_cast<int32_t>(uniform(rng, 1, max_side));
    e.pixels.resize(static_cast<size_t>(e.height) * e.width * 3);
    for (uint8_t& p : e.pixels) p = static_cast<uint8_t>(uniform(rng, 0, 255));
    e.labels.resize(static_cast<size_t>(uniform(rng, 0, 6)));
    for (int32_t& l : e.labels) l = static_cast<int32_t>(uniform(rng, 0, categories - 1));
    e.boxes.resize(4 * e.labels.size());
    for (float& b : e.boxes) b = unit(rng);
  }
  return images;
}

void write_detection(const std::string& path, const std::vector<DetectionExample>& images,
                     const std::vector<std::string>& categories, const DatasetOptions& options = {}) {
  DetectionShardWriter writer(path, categories, options);
  for (const DetectionExample& e : images) writer.add(e);
  writer.finish();
}

void expect_same(const DetectionExample& got, const DetectionExample& want, int64_t i) {
  EXPECT_EQ(got.image_id, want.image_id) << "example " << i;
  EXPECT_EQ(got.height, want.height) << "example " << i;
  EXPECT_EQ(got.width, want.width) << "example " << i;
  EXPECT_EQ(got.channels, 3) << "example " << i;
  EXPECT_EQ(got.pixels, want.pixels) << "example " << i;
  EXPECT_EQ(got.boxes, want.boxes) << "example " << i;
  EXPECT_EQ(got.labels, want.labels) << "example " << i;
}

const std::vector<std::string> kCategories = {"person", "bag", "shoe", "hat"};

TEST_F(ShardTest, TranslationRoundTripAcrossChunks) {
  const std::vector<Pair> corpus = random_corpus(rng_, 300, 60, 32000);
  for (const DatasetOptions& options : {DatasetOptions{128, -1}, DatasetOptions{100, 4}, DatasetOptions{}}) {
    const std::string path = file("shard.h5");
    write_translation(path, corpus, "sha256:abc", 32000, options);
    const TranslationShardReader reader(path);
    EXPECT_EQ(reader.tokenizer_hash(), "sha256:abc");
    EXPECT_EQ(reader.vocab_size(), 32000);
    expect_translation(reader, corpus);
  }
}

TEST_F(ShardTest, TranslationWriterStreamsPastItsBuffer) {
  // ~1.2 MB of tokens per side: the writer appends while adding, not only at finish().
  const std::vector<Pair> corpus = random_corpus(rng_, 4000, 150, 8000);
  const std::string path = file("big.h5");
  TranslationShardWriter writer(path, "h", 8000, {4096, 1});
  for (const auto& [src, tgt] : corpus) writer.add(src, tgt);
  int64_t src_total = 0;
  for (const auto& pair : corpus) src_total += static_cast<int64_t>(pair.first.size());
  EXPECT_EQ(writer.num_examples(), 4000);
  EXPECT_EQ(writer.src_tokens(), src_total);
  EXPECT_GT(H5File::open_read(path).info("src_tokens").shape[0], 0);  // already appended
  writer.finish();
  expect_translation(TranslationShardReader(path), corpus);
}

TEST_F(ShardTest, DetectionRoundTripAcrossChunks) {
  const std::vector<DetectionExample> small = random_images(rng_, 150, 48, 4);
  const std::vector<DetectionExample> large = random_images(rng_, 40, 300, 4);  // ~5 MB: several flushes
  for (const auto* images : {&small, &large}) {
    const std::string path = file("det.h5");
    write_detection(path, *images, kCategories, {1000, 2});
    const DetectionShardReader reader(path);
    EXPECT_EQ(reader.category_names(), kCategories);
    ASSERT_EQ(reader.num_examples(), static_cast<int64_t>(images->size()));
    DetectionExample got;
    for (int64_t i = 0; i < reader.num_examples(); ++i) {
      EXPECT_EQ(reader.image_id(i), (*images)[i].image_id);
      EXPECT_EQ(reader.height(i), (*images)[i].height);
      EXPECT_EQ(reader.width(i), (*images)[i].width);
      reader.read(i, got);
      expect_same(got, (*images)[i], i);
    }
  }
}

TEST_F(ShardTest, TranslationDatasetSpansShardsWithGlobalIds) {
  std::vector<Pair> all;
  std::vector<std::string> paths;
  for (int64_t n : {50, 0, 70}) {  // an empty shard in the middle
    const std::vector<Pair> corpus = random_corpus(rng_, n, 20, 500);
    paths.push_back(file("t" + std::to_string(paths.size()) + ".h5"));
    write_translation(paths.back(), corpus, "hash-1", 500, {16, -1});
    all.insert(all.end(), corpus.begin(), corpus.end());
  }
  const TranslationDataset dataset(paths);
  EXPECT_EQ(dataset.size(), 120);
  EXPECT_EQ(dataset.tokenizer_hash(), "hash-1");
  EXPECT_EQ(dataset.vocab_size(), 500);
  Tokens src, tgt;
  for (int64_t id = 0; id < dataset.size(); ++id) {
    dataset.read(id, src, tgt);
    ASSERT_EQ(src, all[id].first) << "id " << id;
    ASSERT_EQ(tgt, all[id].second) << "id " << id;
    ASSERT_EQ(dataset.src_length(id), static_cast<int64_t>(src.size()));
    ASSERT_EQ(dataset.tgt_length(id), static_cast<int64_t>(tgt.size()));
  }
  expect_data_error([&] { dataset.read(120, src, tgt); }, {"example id 120 outside [0, 120)"});
  expect_data_error([&] { dataset.src_length(-1); }, {"example id -1"});
}

TEST_F(ShardTest, DetectionDatasetSpansShardsWithGlobalIds) {
  std::vector<DetectionExample> all;
  std::vector<std::string> paths;
  for (int64_t n : {12, 7, 20}) {
    const std::vector<DetectionExample> images = random_images(rng_, n, 16, 4);
    paths.push_back(file("d" + std::to_string(paths.size()) + ".h5"));
    write_detection(paths.back(), images, kCategories);
    all.insert(all.end(), images.begin(), images.end());
  }
  const DetectionDataset dataset(paths);
  EXPECT_EQ(dataset.size(), 39);
  EXPECT_EQ(dataset.category_names(), kCategories);
  DetectionExample got;
  for (int64_t id = 0; id < dataset.size(); ++id) {
    EXPECT_EQ(dataset.image_id(id), all[id].image_id);
    dataset.read(id, got);
    expect_same(got, all[id], id);
  }
  expect_data_error([&] { dataset.read(39, got); }, {"example id 39"});
}

TEST_F(ShardTest, DatasetsRejectMismatchedShards) {
  const std::vector<Pair> corpus = random_corpus(rng_, 5, 5, 100);
  write_translation(file("a.h5"), corpus, "hash-a", 100);
  write_translation(file("b.h5"), corpus, "hash-b", 100);
  write_translation(file("c.h5"), corpus, "hash-a", 99);
  expect_data_error([&] { TranslationDataset({file("a.h5"), file("b.h5")}); },
                    {file("a.h5"), file("b.h5"), "tokenizer_hash"});
  expect_data_error([&] { TranslationDataset({file("a.h5"), file("c.h5")}); },
                    {file("a.h5"), file("c.h5"), "vocab_size"});
  expect_data_error([&] { TranslationDataset(std::vector<std::string>{}); }, {"no shard files"});
  const std::vector<DetectionExample> images = random_images(rng_, 3, 8, 3);
  write_detection(file("d.h5"), images, {"x", "y", "z"});
  write_detection(file("e.h5"), images, {"x", "y", "w"});
  expect_data_error([&] { DetectionDataset({file("d.h5"), file("e.h5")}); },
                    {file("d.h5"), file("e.h5"), "category_names"});
  expect_data_error([&] { DetectionDataset(std::vector<std::string>{}); }, {"no shard files"});
}

// ---- h5py-written shards (tests/oracle/gen_h5py_shards.py, following data/SCHEMA.md) ----

template <typename T>
std::vector<T> values(const test::PxtFile& pxt, const std::string& key) {
  const Tensor& t = pxt.get(key);
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

TEST_F(ShardTest, ReadsTranslationShardWrittenByH5py) {
  const test::PxtFile expected("h5py_shards.pxt");
  const TranslationShardReader reader(std::string(PX_ORACLE_DIR) + "/h5py_translation.h5");
  EXPECT_EQ(reader.tokenizer_hash(), "h5py-oracle-tokenizer");
  EXPECT_EQ(reader.vocab_size(), 500);
  const auto src = values<int32_t>(expected, "src_tokens"), tgt = values<int32_t>(expected, "tgt_tokens");
  const auto src_off = values<int64_t>(expected, "src_offsets"), tgt_off = values<int64_t>(expected, "tgt_offsets");
  ASSERT_EQ(reader.num_examples(), static_cast<int64_t>(src_off.size()) - 1);
  Tokens s, t;
  for (int64_t i = 0; i < reader.num_examples(); ++i) {
    reader.read(i, s, t);
    EXPECT_EQ(s, Tokens(src.begin() + src_off[i], src.begin() + src_off[i + 1])) << "example " << i;
    EXPECT_EQ(t, Tokens(tgt.begin() + tgt_off[i], tgt.begin() + tgt_off[i + 1])) << "example " << i;
  }
}

TEST_F(ShardTest, ReadsDetectionShardWrittenByH5py) {
  const test::PxtFile expected("h5py_shards.pxt");
  const DetectionShardReader reader(std::string(PX_ORACLE_DIR) + "/h5py_detection.h5");
  EXPECT_EQ(reader.category_names(), (std::vector<std::string>{"person", "bag", "shoe"}));
  const auto images = values<uint8_t>(expected, "images");
  const auto image_off = values<int64_t>(expected, "image_offsets"), box_off = values<int64_t>(expected, "box_offsets");
  const auto shapes = values<int32_t>(expected, "image_shapes"), labels = values<int32_t>(expected, "labels");
  const auto boxes = values<float>(expected, "boxes");
  const auto ids = values<int64_t>(expected, "image_ids");
  ASSERT_EQ(reader.num_examples(), static_cast<int64_t>(ids.size()));
  DetectionExample got;
  for (int64_t i = 0; i < reader.num_examples(); ++i) {
    DetectionExample want;
    want.image_id = ids[i];
    want.height = shapes[3 * i];
    want.width = shapes[3 * i + 1];
    want.pixels.assign(images.begin() + image_off[i], images.begin() + image_off[i + 1]);
    want.labels.assign(labels.begin() + box_off[i], labels.begin() + box_off[i + 1]);
    want.boxes.assign(boxes.begin() + 4 * box_off[i], boxes.begin() + 4 * box_off[i + 1]);
    reader.read(i, got);
    expect_same(got, want, i);
  }
}

TEST_F(ShardTest, RejectsH5pyShardWithoutFletcher32) {
  const std::string path = std::string(PX_ORACLE_DIR) + "/h5py_no_fletcher32.h5";
  expect_data_error([&] { TranslationShardReader{path}; }, {path, "src_tokens", "fletcher32"});
}

// ---- malformed files ----

// A translation shard written field by field, so each test can break one thing.
struct HandTranslation {
  std::string schema = kTranslationSchema;
  int64_t version = kTranslationSchemaVersion;
  int64_t vocab_size = 100;
  std::optional<int64_t> num_examples = 2;
  Tokens src_tokens = {1, 2, 3}, tgt_tokens = {4, 5};
  std::vector<int64_t> src_offsets = {0, 1, 3}, tgt_offsets = {0, 2, 2};  // (N+1,)
  bool src_offsets_as_i32 = false;
  bool with_tgt_tokens = true;

  void write(const std::string& path) const {
    H5File f = H5File::create(path);
    f.write_attr("schema", schema);
    f.write_attr("schema_version", version);
    f.write_attr("tokenizer_hash", std::string("h"));
    f.write_attr("vocab_size", vocab_size);
    if (num_examples) f.write_attr("num_examples", *num_examples);
    put(f, "src_tokens", src_tokens);
    if (with_tgt_tokens) put(f, "tgt_tokens", tgt_tokens);
    if (src_offsets_as_i32) {
      put(f, "src_offsets", std::vector<int32_t>(src_offsets.begin(), src_offsets.end()));
    } else {
      put(f, "src_offsets", src_offsets);
    }
    put(f, "tgt_offsets", tgt_offsets);
    f.close();
  }
  template <typename T>
  static void put(H5File& f, const std::string& name, const std::vector<T>& v, const Shape& inner = {}) {
    const int64_t row = shape_numel(inner);
    f.create_dataset(name, dtype_of<T>::value, inner, {8, -1});
    f.append(name, dtype_of<T>::value, v.data(), static_cast<int64_t>(v.size()) / row);
  }
};

// Malformed shards of one kind: each case is the valid hand-written shard `Hand` with one change, and the
// strings its DataError must contain besides the path.
template <typename Hand>
class MalformedShards {
 public:
  template <typename Change>
  void add(std::string name, std::vector<std::string> expected, Change&& change) {
    Hand shard;
    change(shard);
    cases_.push_back({std::move(name), std::move(shard), std::move(expected)});
  }
  // Writes each case to dir/<name>.h5; read(path) must throw a DataError naming the path and the case's strings.
  void expect_data_errors(const fs::path& dir, void (*read)(const std::string&)) const {
    for (const Case& c : cases_) {
      SCOPED_TRACE(c.name);
      const std::string path = (dir / (c.name + ".h5")).string();
      c.shard.write(path);
      std::vector<std::string> expected = c.expected;
      expected.insert(expected.begin(), path);
      expect_data_error([&] { read(path); }, expected);
    }
  }

 private:
  struct Case {
    std::string name;
    Hand shard;
    std::vector<std::string> expected;
  };
  std::vector<Case> cases_;
};

// Opens a translation shard and reads every example.
void read_translation(const std::string& path) {
  const TranslationShardReader reader(path);
  Tokens src, tgt;
  for (int64_t i = 0; i < reader.num_examples(); ++i) reader.read(i, src, tgt);
}

TEST_F(ShardTest, HandWrittenTranslationShardIsValid) {
  const std::string path = file("hand.h5");
  HandTranslation{}.write(path);
  expect_translation(TranslationShardReader(path), {{{1}, {4, 5}}, {{2, 3}, {}}});
}

TEST_F(ShardTest, MalformedTranslationShardsAreDataErrors) {
  MalformedShards<HandTranslation> cases;
  cases.add("wrong_schema", {"schema", "unsupported schema 'parallax.detection'"},
      [](HandTranslation& s) { s.schema = kDetectionSchema; });
  cases.add("wrong_version", {"schema_version", "schema_version 2, this build reads 1"},
      [](HandTranslation& s) { s.version = 2; });
  cases.add("offsets_i32", {"src_offsets", "stored as i32"}, [](HandTranslation& s) { s.src_offsets_as_i32 = true; });
  cases.add("missing_dataset", {"tgt_tokens", "no such dataset"},
      [](HandTranslation& s) { s.with_tgt_tokens = false; });
  cases.add("offsets_decrease", {"src_offsets", "decreases at entry 2"},
      [](HandTranslation& s) { s.src_offsets = {0, 3, 1}; });
  cases.add("offsets_not_from_zero", {"tgt_offsets", "starts at 1"},
      [](HandTranslation& s) { s.tgt_offsets = {1, 2, 2}; });
  cases.add("last_offset_short", {"src_offsets", "ends at 2 but src_tokens holds 3 rows"},
      [](HandTranslation& s) { s.src_offsets = {0, 1, 2}; });
  cases.add("last_offset_long", {"tgt_offsets", "ends at 3 but tgt_tokens holds 2 rows"},
      [](HandTranslation& s) { s.tgt_offsets = {0, 2, 3}; });
  cases.add("num_examples_mismatch", {"src_offsets", "3 entries, expected 4"},
      [](HandTranslation& s) { s.num_examples = 3; });
  cases.add("no_num_examples", {"num_examples", "never finished"}, [](HandTranslation& s) { s.num_examples.reset(); });
  cases.add("vocab_zero", {"vocab_size", "outside"}, [](HandTranslation& s) { s.vocab_size = 0; });
  cases.add("token_too_large", {"tgt_tokens", "example 0: token id 100 outside [0, 100)"},
      [](HandTranslation& s) { s.tgt_tokens = {4, 100}; });
  cases.add("token_negative", {"src_tokens", "example 1: token id -3"},
      [](HandTranslation& s) { s.src_tokens = {1, 2, -3}; });
  cases.expect_data_errors(dir_, read_translation);
}

TEST_F(ShardTest, UnreadableShardFilesAreDataErrors) {
  const std::string missing = file("missing.h5");
  expect_data_error([&] { TranslationShardReader{missing}; }, {missing, "no such file"});
  expect_data_error([&] { DetectionShardReader{missing}; }, {missing, "no such file"});
  const std::string text = file("text.h5");
  std::ofstream(text) << "src_tokens\ttgt_tokens\n";
  expect_data_error([&] { TranslationShardReader{text}; }, {text, "not a readable HDF5 file"});
}

TEST_F(ShardTest, TruncatedShardsAreDataErrors) {
  const std::string valid = file("valid.h5");
  write_translation(valid, random_corpus(rng_, 200, 30, 1000), "h", 1000, {64, -1});
  const auto size = static_cast<int64_t>(fs::file_size(valid));
  for (int64_t keep : {int64_t{0}, int64_t{7}, int64_t{100}, int64_t{2048}, size / 3, size / 2, size - 100, size - 1}) {
    SCOPED_TRACE(keep);
    const std::string path = file("truncated_" + std::to_string(keep) + ".h5");
    fs::copy_file(valid, path);
    fs::resize_file(path, static_cast<uintmax_t>(keep));
    expect_data_error([&] { read_translation(path); }, {path});
  }
}

// Flips a byte of the first two consecutive `marker` tokens found in the file (a run of chunk size or
// more is whole in at least one chunk, wherever HDF5 put that chunk).
void flip_byte_in(const std::string& path, const Tokens& marker) {
  std::vector<char> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (size_t k = 0; k + 1 < marker.size(); ++k) {
    const char* pair = reinterpret_cast<const char*>(&marker[k]);
    const auto at = std::search(bytes.begin(), bytes.end(), pair, pair + 8);
    if (at == bytes.end()) continue;
    at[5] = static_cast<char>(at[5] ^ 0x10);
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return;
  }
  FAIL() << "token marker not found in " << path;
}

TEST_F(ShardTest, BitFlipInTokenChunkNamesTheDataset) {
  // Runs of recognisable token ids (little-endian i32 on disk) mark where each side's data chunks lie.
  const int64_t vocab = int64_t{1} << 24;
  std::vector<Pair> corpus = random_corpus(rng_, 60, 10, 1000);
  Tokens src_marker(64), tgt_marker(64);
  for (int32_t k = 0; k < 64; ++k) {
    src_marker[k] = 0xABCD00 + k;
    tgt_marker[k] = 0x5EED00 + k;
  }
  corpus[40] = {src_marker, tgt_marker};
  for (const std::string side : {"src", "tgt"}) {
    SCOPED_TRACE(side);
    const std::string path = file(side + "_flipped.h5");
    write_translation(path, corpus, "h", vocab, {32, -1});
    flip_byte_in(path, side == "src" ? src_marker : tgt_marker);
    const TranslationShardReader reader(path);  // the offsets are intact
    Tokens src, tgt;
    expect_data_error([&] { reader.read(40, src, tgt); }, {path, side + "_tokens", "checksum"});
  }
}

TEST_F(ShardTest, UnfinishedWritersLeaveShardsTheReadersReject) {
  const std::string translation = file("unfinished_t.h5"), detection = file("unfinished_d.h5");
  {
    TranslationShardWriter writer(translation, "h", 100, {});
    writer.add({1, 2}, {3});
  }
  {
    DetectionShardWriter writer(detection, kCategories, {});
    writer.add(random_images(rng_, 1, 4, 4)[0]);
  }
  expect_data_error([&] { TranslationShardReader{translation}; }, {translation, "num_examples", "never finished"});
  expect_data_error([&] { DetectionShardReader{detection}; }, {detection, "num_examples", "never finished"});
}

TEST_F(ShardTest, ReadOutsideTheShardIsDataError) {
  const std::string path = file("small.h5");
  write_translation(path, random_corpus(rng_, 3, 4, 10), "h", 10);
  const TranslationShardReader reader(path);
  Tokens src, tgt;
  expect_data_error([&] { reader.read(3, src, tgt); }, {path, "example 3 outside [0, 3)"});
  const std::string det = file("det.h5");
  write_detection(det, random_images(rng_, 2, 4, 4), kCategories);
  DetectionExample e;
  expect_data_error([&] { DetectionShardReader(det).read(-1, e); }, {det, "example -1 outside [0, 2)"});
}

TEST_F(ShardTest, WritersRejectInvalidExamples) {
  const std::string path = file("w.h5");
  TranslationShardWriter translation(path, "h", 50, {});
  expect_data_error([&] { translation.add({1, 50}, {2}); }, {path, "src_tokens", "token id 50"});
  expect_data_error([&] { translation.add({1}, {-1}); }, {path, "tgt_tokens", "token id -1"});
  EXPECT_EQ(translation.num_examples(), 0);

  const std::string det = file("d.h5");
  DetectionShardWriter detection(det, kCategories, {});
  const DetectionExample valid = random_images(rng_, 1, 6, 4)[0];
  auto broken = [&](auto&& change) {
    DetectionExample e = valid;
    e.labels = {1};
    e.boxes = {0.5f, 0.5f, 0.2f, 0.2f};
    change(e);
    return e;
  };
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.pixels.pop_back(); })); }, {det, "images"});
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.channels = 1; })); }, {det, "image_shapes"});
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.height = 0; })); }, {det, "image_shapes"});
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.labels = {4}; })); },
                    {det, "labels", "label 4"});
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.boxes[2] = 1.5f; })); }, {det, "boxes"});
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.boxes[0] = NAN; })); }, {det, "boxes"});
  expect_data_error([&] { detection.add(broken([](DetectionExample& e) { e.boxes.pop_back(); })); }, {det, "boxes"});
  EXPECT_EQ(detection.num_examples(), 0);
  expect_data_error([&] { DetectionShardWriter(file("e.h5"), {}, {}); }, {file("e.h5"), "category_names"});
}

// A detection shard written field by field: two images (2x2x3 and 1x3x3) with 1 and 2 boxes.
struct HandDetection {
  std::vector<std::string> categories = {"a", "b"};
  std::optional<int64_t> num_examples = 2;
  std::vector<uint8_t> images = std::vector<uint8_t>(21, 7);
  std::vector<int64_t> image_offsets = {0, 12, 21};      // (N+1,)
  std::vector<int32_t> image_shapes = {2, 2, 3, 1, 3, 3};  // (N, 3)
  std::vector<float> boxes = {0.5f, 0.5f, 0.2f, 0.2f, 0.1f, 0.1f, 0.1f, 0.1f, 0.9f, 0.9f, 0.1f, 0.1f};  // (M, 4)
  int64_t box_width = 4;
  std::vector<int32_t> labels = {0, 1, 1};       // (M,)
  std::vector<int64_t> box_offsets = {0, 1, 3};  // (N+1,)
  std::vector<int64_t> image_ids = {7, 9};       // (N,)

  void write(const std::string& path) const {
    H5File f = H5File::create(path);
    f.write_attr("schema", std::string(kDetectionSchema));
    f.write_attr("schema_version", kDetectionSchemaVersion);
    f.write_attr("category_names", categories);
    if (num_examples) f.write_attr("num_examples", *num_examples);
    HandTranslation::put(f, "images", images);
    HandTranslation::put(f, "image_offsets", image_offsets);
    HandTranslation::put(f, "image_shapes", image_shapes, {3});
    HandTranslation::put(f, "boxes", boxes, {box_width});
    HandTranslation::put(f, "labels", labels);
    HandTranslation::put(f, "box_offsets", box_offsets);
    HandTranslation::put(f, "image_ids", image_ids);
    f.close();
  }
};

void read_detection(const std::string& path) {
  const DetectionShardReader reader(path);
  DetectionExample e;
  for (int64_t i = 0; i < reader.num_examples(); ++i) reader.read(i, e);
}

TEST_F(ShardTest, HandWrittenDetectionShardIsValid) {
  const std::string path = file("hand.h5");
  HandDetection{}.write(path);
  const DetectionShardReader reader(path);
  DetectionExample e;
  reader.read(1, e);
  EXPECT_EQ(e.image_id, 9);
  EXPECT_EQ(e.height, 1);
  EXPECT_EQ(e.width, 3);
  EXPECT_EQ(e.labels, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(e.boxes.size(), 8u);
}

TEST_F(ShardTest, MalformedDetectionShardsAreDataErrors) {
  MalformedShards<HandDetection> cases;
  cases.add("label_out_of_range", {"labels", "example 1: label 2 outside [0, 2)"},
      [](HandDetection& s) { s.labels = {0, 1, 2}; });
  cases.add("label_negative", {"labels", "example 0: label -1"}, [](HandDetection& s) { s.labels = {-1, 1, 1}; });
  cases.add("box_above_one", {"boxes", "example 1: box 1 value 1.5"}, [](HandDetection& s) { s.boxes[9] = 1.5f; });
  cases.add("box_negative", {"boxes", "example 0: box 0"}, [](HandDetection& s) { s.boxes[3] = -0.25f; });
  cases.add("box_nan", {"boxes", "example 1"}, [](HandDetection& s) { s.boxes[4] = NAN; });
  cases.add("box_inf", {"boxes", "example 0"}, [](HandDetection& s) { s.boxes[0] = INFINITY; });
  cases.add("image_span_mismatch", {"image_offsets", "example 0: spans 10 bytes"},
      [](HandDetection& s) { s.image_offsets = {0, 10, 21}; });
  cases.add("four_channels", {"image_shapes", "example 1: 1x3x4"}, [](HandDetection& s) { s.image_shapes[5] = 4; });
  cases.add("zero_height", {"image_shapes", "example 0: 0x2x3"}, [](HandDetection& s) { s.image_shapes[0] = 0; });
  cases.add("last_image_offset", {"image_offsets", "ends at 21 but images holds 25 rows"},
      [](HandDetection& s) { s.images.resize(25); });
  cases.add("boxes_not_4_wide", {"boxes", "shape"}, [](HandDetection& s) { s.box_width = 2; });
  cases.add("labels_rows", {"labels", "rows differ"}, [](HandDetection& s) { s.labels = {0, 1}; });
  cases.add("box_offsets_end", {"box_offsets", "ends at 2 but labels holds 3 rows"},
      [](HandDetection& s) { s.box_offsets = {0, 1, 2}; });
  cases.add("box_offsets_decrease", {"box_offsets", "decreases"}, [](HandDetection& s) { s.box_offsets = {0, 3, 2}; });
  cases.add("image_ids_rows", {"image_ids", "rows differ"}, [](HandDetection& s) { s.image_ids = {7}; });
  cases.add("shapes_rows", {"image_shapes", "rows differ"}, [](HandDetection& s) { s.num_examples = 3; });
  cases.add("no_num_examples", {"num_examples", "never finished"}, [](HandDetection& s) { s.num_examples.reset(); });
  cases.add("no_categories", {"category_names", "empty"}, [](HandDetection& s) { s.categories.clear(); });
  cases.expect_data_errors(dir_, read_detection);
}

TEST_F(ShardTest, ShardOfTheOtherKindIsRejected) {
  const std::string translation = file("t.h5"), detection = file("d.h5");
  write_translation(translation, random_corpus(rng_, 3, 3, 10), "h", 10);
  write_detection(detection, random_images(rng_, 2, 3, 4), kCategories);
  expect_data_error([&] { DetectionShardReader{translation}; }, {translation, "schema", "unsupported schema"});
  expect_data_error([&] { TranslationShardReader{detection}; }, {detection, "schema", "unsupported schema"});
}

}  // namespace
}  // namespace px::data

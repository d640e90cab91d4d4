// H5File: attribute and dataset round trips for every dtype, appends across chunk boundaries, info(),
// and the DataErrors for bad row ranges, dtypes, attribute types and unreadable files.
#include "data/hdf5_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <thread>

#include "core/util/error.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::expect_data_error;

class H5FileTest : public px::test::TempDirTest {
 protected:
  // path(name), under another name: the tests call their file `path`.
  std::string file(const std::string& name) const { return path(name); }
};

TEST_F(H5FileTest, AttributesRoundTrip) {
  const std::string path = file("attrs.h5");
  {
    H5File f = H5File::create(path);
    f.write_attr("name", std::string("tokenizer \xc3\xa9t\xc3\xa9"));
    f.write_attr("empty", std::string());
    f.write_attr("count", int64_t{-7});
    f.write_attr("count", std::numeric_limits<int64_t>::max());  // replaces the first value
    f.write_attr("names", std::vector<std::string>{"person", "", "bag"});
    f.write_attr("no_names", std::vector<std::string>{});
    f.close();
  }
  const H5File f = H5File::open_read(path);
  EXPECT_TRUE(f.has_attr("name"));
  EXPECT_FALSE(f.has_attr("missing"));
  EXPECT_EQ(f.read_attr_string("name"), "tokenizer \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(f.read_attr_string("empty"), "");
  EXPECT_EQ(f.read_attr_int("count"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(f.read_attr_strings("names"), (std::vector<std::string>{"person", "", "bag"}));
  EXPECT_TRUE(f.read_attr_strings("no_names").empty());
}

TEST_F(H5FileTest, WrongOrMissingAttributeIsDataError) {
  const std::string path = file("attrs.h5");
  {
    H5File f = H5File::create(path);
    f.write_attr("text", std::string("x"));
    f.write_attr("number", int64_t{3});
    f.write_attr("list", std::vector<std::string>{"a", "b"});
  }
  const H5File f = H5File::open_read(path);
  expect_data_error([&] { f.read_attr_int("text"); }, {path, "text", "expected an integer"});
  expect_data_error([&] { f.read_attr_string("number"); }, {path, "number", "expected a string"});
  expect_data_error([&] { f.read_attr_strings("number"); }, {path, "number", "expected an array of strings"});
  expect_data_error([&] { f.read_attr_string("list"); }, {path, "list", "2 values"});
  expect_data_error([&] { f.read_attr_int("absent"); }, {path, "absent", "no such attribute"});
}

// Writes `rows` rows of (rows, inner...) in pieces of uneven size, reads them back whole and in slices.
template <typename T>
void round_trip(const std::string& path, DType dtype, const Shape& inner, const DatasetOptions& options) {
  const int64_t row_size = shape_numel(inner), rows = 301;
  std::vector<T> data(static_cast<size_t>(rows * row_size));
  for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<T>(k * 7 % 251);
  {
    H5File f = H5File::create(path);
    f.create_dataset("d", dtype, inner, options);
    for (int64_t begin = 0, piece = 1; begin < rows; begin += piece, piece = piece * 2 + 1) {
      const int64_t n = std::min(piece, rows - begin);
      f.append("d", dtype, data.data() + begin * row_size, n);
    }
    f.append("d", dtype, data.data(), 0);  // no-op
    f.close();
  }
  const H5File f = H5File::open_read(path);
  Shape expected_shape = {rows};
  expected_shape.insert(expected_shape.end(), inner.begin(), inner.end());
  EXPECT_EQ(f.info("d").shape, expected_shape);
  EXPECT_EQ(f.read_all<T>("d", dtype), data);
  std::vector<T> slice(static_cast<size_t>(50 * row_size));
  f.read_rows("d", dtype, 120, 50, slice.data());
  EXPECT_TRUE(std::equal(slice.begin(), slice.end(), data.begin() + 120 * row_size));
}

TEST_F(H5FileTest, DatasetRoundTripEveryDtypeAcrossChunks) {
  const DatasetOptions small_chunks{7, -1}, compressed{16, 6};
  round_trip<int32_t>(file("i32.h5"), DType::i32, {}, small_chunks);
  round_trip<int64_t>(file("i64.h5"), DType::i64, {}, small_chunks);
  round_trip<uint8_t>(file("u8.h5"), DType::u8, {}, small_chunks);
  round_trip<float>(file("f32.h5"), DType::f32, {4}, small_chunks);
  round_trip<int32_t>(file("i32x3.h5"), DType::i32, {3}, compressed);
  round_trip<uint8_t>(file("u8x2x5.h5"), DType::u8, {2, 5}, compressed);
  round_trip<float>(file("f32_default.h5"), DType::f32, {}, {});
}

TEST_F(H5FileTest, InfoReportsLayoutAndFilters) {
  const std::string path = file("info.h5");
  {
    H5File f = H5File::create(path);
    f.create_dataset("plain", DType::i64, {}, {10, -1});
    f.create_dataset("gzip", DType::f32, {4}, {0, 3});
    f.create_dataset("wide", DType::u8, {3 << 20}, {});
  }
  const H5File f = H5File::open_read(path);
  EXPECT_TRUE(f.has_dataset("plain"));
  EXPECT_FALSE(f.has_dataset("absent"));
  const DatasetInfo plain = f.info("plain");
  EXPECT_EQ(plain.dtype, DType::i64);
  EXPECT_EQ(plain.shape, Shape({0}));
  EXPECT_EQ(plain.chunk, Shape({10}));
  EXPECT_TRUE(plain.fletcher32);
  EXPECT_EQ(plain.deflate_level, -1);
  const DatasetInfo gzip = f.info("gzip");
  EXPECT_EQ(gzip.dtype, DType::f32);
  EXPECT_EQ(gzip.shape, Shape({0, 4}));
  EXPECT_EQ(gzip.chunk, Shape({(1 << 20) / 16, 4}));  // default: ~1 MiB chunks
  EXPECT_TRUE(gzip.fletcher32);
  EXPECT_EQ(gzip.deflate_level, 3);
  EXPECT_EQ(f.info("wide").chunk, Shape({1, 3 << 20}));  // at least one row per chunk
}

TEST_F(H5FileTest, ReadRowsOutOfBoundsIsDataError) {
  const std::string path = file("bounds.h5");
  {
    H5File f = H5File::create(path);
    f.create_dataset("tokens", DType::i32, {}, {4, -1});
    const std::vector<int32_t> v(10, 1);
    f.append("tokens", DType::i32, v.data(), 10);
  }
  const H5File f = H5File::open_read(path);
  std::vector<int32_t> out(16);
  const int64_t big = std::numeric_limits<int64_t>::max();
  const std::vector<std::pair<int64_t, int64_t>> bad = {{-1, 2}, {9, 2}, {11, 0}, {0, -1}, {5, big}, {big, 1}};
  for (auto [begin, rows] : bad) {
    expect_data_error([&] { f.read_rows("tokens", DType::i32, begin, rows, out.data()); },
                      {path, "tokens", "outside the 10 stored rows"});
  }
  f.read_rows("tokens", DType::i32, 10, 0, out.data());  // an empty range at the end is fine
  expect_data_error([&] { f.read_rows("absent", DType::i32, 0, 1, out.data()); }, {path, "absent", "no such dataset"});
}

TEST_F(H5FileTest, WrongDtypeIsDataError) {
  const std::string path = file("dtype.h5");
  H5File f = H5File::create(path);
  f.create_dataset("offsets", DType::i64, {}, {});
  const int32_t v = 1;
  expect_data_error([&] { f.append("offsets", DType::i32, &v, 1); }, {path, "offsets", "stored as i64"});
  const int64_t w = 1;
  f.append("offsets", DType::i64, &w, 1);
  std::vector<int32_t> out(1);
  expect_data_error([&] { f.read_rows("offsets", DType::i32, 0, 1, out.data()); },
                    {path, "offsets", "stored as i64, read as i32"});
  expect_data_error([&] { f.create_dataset("bad", DType::u8, {}, {0, 10}); }, {path, "bad", "deflate level 10"});
}

TEST_F(H5FileTest, UnreadableFilesAreDataErrors) {
  const std::string missing = file("missing.h5");
  expect_data_error([&] { H5File::open_read(missing); }, {missing, "no such file"});
  const std::string text = file("text.h5");
  std::ofstream(text) << "this is not an HDF5 file\n";
  expect_data_error([&] { H5File::open_read(text); }, {text, "not a readable HDF5 file"});
  expect_data_error([&] { H5File::open_read(dir_.string()); }, {dir_.string(), "directory"});
  const std::string valid = file("valid.h5");
  {
    H5File f = H5File::create(valid);
    f.create_dataset("x", DType::u8, {}, {});
    std::vector<uint8_t> bytes(5000, 9);
    f.append("x", DType::u8, bytes.data(), 5000);
  }
  fs::resize_file(valid, fs::file_size(valid) / 2);
  expect_data_error([&] { H5File::open_read(valid); }, {valid, "truncated"});
  expect_data_error([&] { H5File::create(file("no_dir/x.h5")); }, {file("no_dir/x.h5"), "cannot create"});
}

// Files written by h5py (tests/oracle/gen_h5py_shards.py): stored types H5File converts or rejects.
TEST_F(H5FileTest, ReadsH5pyTypesAndRejectsUnsupportedOnes) {
  const std::string path = std::string(PX_ORACLE_DIR) + "/h5py_types.h5";
  const H5File f = H5File::open_read(path);
  EXPECT_EQ(f.read_attr_string("fixed"), "hello");
  EXPECT_EQ(f.read_attr_strings("fixed_list"), (std::vector<std::string>{"a", "bcd"}));
  EXPECT_EQ(f.read_attr_string("vlen"), "h\xc3\xa9llo");
  EXPECT_EQ(f.read_attr_strings("vlen_list"), (std::vector<std::string>{"x", "yz"}));
  std::vector<int32_t> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(f.read_all<int32_t>("big_endian", DType::i32), expected);
  EXPECT_TRUE(f.info("big_endian").chunk.empty());  // contiguous
  EXPECT_FALSE(f.info("big_endian").fletcher32);
  EXPECT_EQ(f.info("f64").dtype, DType::f64);  // checkpoints store f64 tensors
  expect_data_error([&] { f.info("i16"); }, {path, "i16", "int16"});
  expect_data_error([&] { f.check_dataset("big_endian", DType::i32, {}); }, {path, "big_endian", "fletcher32"});
}

TEST_F(H5FileTest, ValidationHelpers) {
  const std::string path = file("helpers.h5");
  {
    H5File f = H5File::create(path);
    f.write_attr("schema", std::string("parallax.test"));
    f.write_attr("schema_version", int64_t{2});
    f.create_dataset("rows", DType::f32, {2}, {});
    f.create_dataset("offsets", DType::i64, {}, {});
    const std::vector<float> rows(10, 0.5f);
    const std::vector<int64_t> offsets = {0, 2, 5};
    f.append("rows", DType::f32, rows.data(), 5);
    f.append("offsets", DType::i64, offsets.data(), 3);
  }
  const H5File f = H5File::open_read(path);
  f.check_schema("parallax.test", 2);
  expect_data_error([&] { f.check_schema("parallax.other", 2); }, {path, "schema", "unsupported schema"});
  expect_data_error([&] { f.check_schema("parallax.test", 1); }, {path, "schema_version", "this build reads 1"});
  EXPECT_EQ(f.check_dataset("rows", DType::f32, {2}), 5);
  expect_data_error([&] { f.check_dataset("rows", DType::f32, {3}); }, {path, "rows", "shape"});
  expect_data_error([&] { f.check_dataset("rows", DType::i32, {2}); }, {path, "rows", "stored as f32"});
  EXPECT_EQ(f.read_offsets("offsets", 3, "rows"), (std::vector<int64_t>{0, 2, 5}));
  expect_data_error([&] { f.read_offsets("offsets", 4, "rows"); }, {path, "offsets", "expected 4"});
}

// Loaders read from background threads: concurrent readers of two files must not corrupt each other.
TEST_F(H5FileTest, ConcurrentReadersAreSerialised) {
  std::vector<int64_t> data(20000);
  std::iota(data.begin(), data.end(), 0);
  for (const char* name : {"a.h5", "b.h5"}) {
    H5File f = H5File::create(file(name));
    f.create_dataset("d", DType::i64, {}, {128, 1});
    f.append("d", DType::i64, data.data(), static_cast<int64_t>(data.size()));
  }
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const H5File f = H5File::open_read(file(t % 2 ? "a.h5" : "b.h5"));
      std::vector<int64_t> out(100);
      for (int64_t begin = t; begin + 100 <= 20000; begin += 397) {
        f.read_rows("d", DType::i64, begin, 100, out.data());
        failures[t] += out.front() != begin || out.back() != begin + 99;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace px::data

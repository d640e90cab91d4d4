// Corrupted shards: 200 copies of a small translation and detection shard with 1-8 random bytes flipped
// are opened and read in full; each must either read cleanly or throw DataError, never crash or throw else.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>

#include "core/util/error.h"
#include "data/detection_shard.h"
#include "data/translation_shard.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;

constexpr int kRuns = 200;

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

int64_t uniform(std::mt19937& rng, int64_t lo, int64_t hi) {  // in [lo, hi]
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

void write_translation(const std::string& path, std::mt19937& rng) {
  TranslationShardWriter writer(path, "fuzz", 1000, {64, -1});
  for (int i = 0; i < 60; ++i) {
    std::vector<int32_t> src(static_cast<size_t>(uniform(rng, 0, 20))), tgt(static_cast<size_t>(uniform(rng, 1, 20)));
    for (int32_t& t : src) t = static_cast<int32_t>(uniform(rng, 0, 999));
    for (int32_t& t : tgt) t = static_cast<int32_t>(uniform(rng, 0, 999));
    writer.add(src, tgt);
  }
  writer.finish();
}

void write_detection(const std::string& path, std::mt19937& rng) {
  DetectionShardWriter writer(path, {"a", "b", "c"}, {512, -1});
  for (int i = 0; i < 20; ++i) {
    DetectionExample e;
    e.image_id = i;
    e.height = static_cast<int32_t>(uniform(rng, 1, 12));
    e.width = static_cast<int32_t>(uniform(rng, 1, 12));
    e.pixels.resize(static_cast<size_t>(e.height) * e.width * 3);
    for (uint8_t& p : e.pixels) p = static_cast<uint8_t>(uniform(rng, 0, 255));
    e.labels.resize(static_cast<size_t>(uniform(rng, 0, 4)));
    for (int32_t& l : e.labels) l = static_cast<int32_t>(uniform(rng, 0, 2));
    e.boxes.resize(4 * e.labels.size());
    for (float& b : e.boxes) b = static_cast<float>(uniform(rng, 0, 1000)) / 1000.0f;
    writer.add(e);
  }
  writer.finish();
}

void read_translation(const std::string& path) {
  const TranslationShardReader reader(path);
  std::vector<int32_t> src, tgt;
  for (int64_t i = 0; i < reader.num_examples(); ++i) reader.read(i, src, tgt);
}

void read_detection(const std::string& path) {
  const DetectionShardReader reader(path);
  DetectionExample e;
  for (int64_t i = 0; i < reader.num_examples(); ++i) reader.read(i, e);
}

TEST(ShardFuzzTest, FlippedBytesReadCleanlyOrRaiseDataError) {
  const fs::path dir = px::test::make_temp_dir("px_shard_fuzz");
  std::mt19937 rng(20240601);
  const std::string translation = (dir / "translation.h5").string(), detection = (dir / "detection.h5").string();
  write_translation(translation, rng);
  write_detection(detection, rng);
  read_translation(translation);  // the originals are valid
  read_detection(detection);

  struct Kind {
    const char* name;
    std::vector<char> original;
    void (*read)(const std::string&);
    int errors = 0, clean = 0;
  };
  Kind kinds[] = {{"translation", read_bytes(translation), read_translation},
                  {"detection", read_bytes(detection), read_detection}};
  const std::string corrupted = (dir / "corrupted.h5").string();
  for (int run = 0; run < kRuns; ++run) {
    Kind& kind = kinds[run % 2];
    std::vector<char> bytes = kind.original;
    const int64_t flips = uniform(rng, 1, 8);
    for (int64_t k = 0; k < flips; ++k) {
      const auto at = static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(bytes.size()) - 1));
      bytes[at] = static_cast<char>(bytes[at] ^ static_cast<char>(uniform(rng, 1, 255)));
    }
    write_bytes(corrupted, bytes);
    try {
      kind.read(corrupted);
      ++kind.clean;
    } catch (const DataError&) {
      ++kind.errors;
    }
  }
  for (const Kind& kind : kinds) {
    std::cout << kind.name << " (" << kind.original.size() << " bytes): " << kind.errors << " DataError, " << kind.clean
              << " read cleanly\n";
    EXPECT_EQ(kind.errors + kind.clean, kRuns / 2);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace px::data

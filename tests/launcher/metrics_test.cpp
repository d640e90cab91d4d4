// Tests of launcher/metrics: metrics.jsonl records (appending across writers, valid JSON per line, key
// order, exact doubles, NaN as null, unwritable paths), ETA durations and the console progress line.
#include "launcher/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "tests/common/temp_dir.h"

namespace px {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class MetricsWriterTest : public test::TempDirTest {};

TEST_F(MetricsWriterTest, AppendsAcrossWritersAsAResumedRunDoes) {
  const std::string file = path("metrics.jsonl");
  {
    MetricsWriter first(file);
    EXPECT_EQ(first.path(), file);
    first.write(100, {{"loss", 4.5}, {"lr", 7e-4}});
    first.write(200, {{"loss", 4.25}, {"lr", 6.5e-4}});
  }
  {
    MetricsWriter resumed(file);
    resumed.write(300, {{"valid_bleu", 12.5}});
  }
  const std::vector<std::string> lines = read_lines(file);
  ASSERT_EQ(lines.size(), 3u);
  const std::vector<int64_t> steps = {100, 200, 300};
  for (size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json record = nlohmann::json::parse(lines[i]);  // throws on invalid JSON
    ASSERT_TRUE(record["step"].is_number_integer()) << lines[i];
    EXPECT_EQ(record["step"].get<int64_t>(), steps[i]);
  }
  EXPECT_EQ(nlohmann::json::parse(lines[2])["valid_bleu"].get<double>(), 12.5);
}

TEST_F(MetricsWriterTest, KeysInOrderAndDoublesExact) {
  const std::string file = path("metrics.jsonl");
  const std::vector<std::pair<std::string, double>> values = {
      {"zeta", 0.1}, {"alpha", 1e-9}, {"mid", 123456.789}, {"big", 9007199254740993.0}, {"whole", 3.0}};
  MetricsWriter writer(file);
  writer.write(int64_t{1} << 40, values);
  const std::vector<std::string> lines = read_lines(file);  // readable before the writer closes: flushed
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::ordered_json record = nlohmann::ordered_json::parse(lines[0]);
  std::vector<std::string> keys;
  for (const auto& item : record.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"step", "zeta", "alpha", "mid", "big", "whole"}));
  EXPECT_EQ(record["step"].get<int64_t>(), int64_t{1} << 40);
  for (const auto& [key, value] : values) EXPECT_EQ(record[key].get<double>(), value) << key;  // round trip
}

TEST_F(MetricsWriterTest, NonFiniteValuesAreNull) {
  const std::string file = path("metrics.jsonl");
  MetricsWriter writer(file);
  writer.write(7, {{"loss", std::nan("")},
                   {"grad_norm", std::numeric_limits<double>::infinity()},
                   {"scale", -std::numeric_limits<double>::infinity()},
                   {"lr", 1e-3}});
  const std::vector<std::string> lines = read_lines(file);
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::json record = nlohmann::json::parse(lines[0]);
  EXPECT_TRUE(record["loss"].is_null()) << lines[0];
  EXPECT_TRUE(record["grad_norm"].is_null()) << lines[0];
  EXPECT_TRUE(record["scale"].is_null()) << lines[0];
  EXPECT_EQ(record["lr"].get<double>(), 1e-3);
}

TEST_F(MetricsWriterTest, UnwritablePathIsAnErrorNamingIt) {
  const std::string missing_dir = path("no/such/dir/metrics.jsonl");
  try {
    MetricsWriter writer(missing_dir);
    ADD_FAILURE() << "no px::Error for " << missing_dir;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing_dir), std::string::npos) << e.what();
  }
  EXPECT_THROW(MetricsWriter{dir_.string()}, Error);  // a directory cannot be opened for appending
}

TEST(FormatDuration, SecondsMinutesHours) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(12.4), "12s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(59.6), "1m00s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3599), "59m59s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(14640), "4h04m");
  EXPECT_EQ(format_duration(100 * 3600 + 59), "100h00m");
  EXPECT_EQ(format_duration(-1), "--");
  EXPECT_EQ(format_duration(std::nan("")), "--");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "--");
}

TEST(ProgressLineTest, FormatsEveryField) {
  ProgressLine line{.step = 1200,
                    .max_steps = 20000,
                    .loss = 4.2131,
                    .lr = 6.1e-4,
                    .units_per_s = 10500,
                    .step_time_s = 0.78,
                    .eta_s = 4 * 3600 + 3 * 60};
  EXPECT_EQ(line.str(), "step  1200/20000 | loss 4.213 | lr 6.1e-04 | 10.5k tok/s | 0.78 s/step | ETA 4h03m");
}

TEST(ProgressLineTest, StepFieldIsFixedWidth) {
  ProgressLine first{
      .step = 5, .max_steps = 100000, .loss = 9.9, .lr = 1e-5, .units_per_s = 900, .step_time_s = 1.5, .eta_s = 50};
  ProgressLine later = first;
  later.step = 100000;
  EXPECT_EQ(first.str().find('|'), later.str().find('|')) << first.str() << "\n" << later.str();
  EXPECT_EQ(first.str().rfind("step      5/100000 |", 0), 0u) << first.str();
}

TEST(ProgressLineTest, RateSuffixes) {
  auto rate_of = [](double tokens_per_s) {
    ProgressLine line{.step = 1, .max_steps = 10, .units_per_s = tokens_per_s};
    const std::string s = line.str();
    const size_t end = s.find(" tok/s");
    const size_t start = s.rfind("| ", end) + 2;
    return s.substr(start, end - start);
  };
  EXPECT_EQ(rate_of(850), "850");
  EXPECT_EQ(rate_of(999.7), "1.0k");  // rounding moves to the next unit, never "1000"
  EXPECT_EQ(rate_of(10500), "10.5k");
  EXPECT_EQ(rate_of(999970), "1.0M");
  EXPECT_EQ(rate_of(2.5e6), "2.5M");
}

}  // namespace
}  // namespace px

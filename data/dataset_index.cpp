// Reading, validating and atomically writing dataset.pbtxt, and the small helpers around it
// (split lookup, shard paths, length statistics).
#include "data/dataset_index.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include <google/protobuf/text_format.h>

#include "core/util/durable_file.h"
#include "core/util/error.h"
#include "data/detection_shard.h"
#include "data/text_proto.h"
#include "data/translation_shard.h"

namespace px::data {

proto::DatasetIndex read_index(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kIndexFile).string();
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open (is '" + dir + "' a dataset directory built by `parallax data build-*`?)");
  std::stringstream text;
  text << in.rdbuf();
  proto::DatasetIndex index;
  parse_text_proto<DataError>(text.str(), path, index);
  if (index.schema() != kTranslationSchema && index.schema() != kDetectionSchema)
    throw DataError(path + ": schema: unknown value '" + index.schema() + "'");
  if (index.splits().empty()) throw DataError(path + ": splits: none listed");
  std::set<std::string> names;
  for (const auto& split : index.splits()) {
    if (!names.insert(split.name()).second) throw DataError(path + ": splits: duplicate name '" + split.name() + "'");
    if (split.shards().empty()) throw DataError(path + ": splits[" + split.name() + "].shards: none listed");
    int64_t total = 0;
    for (const auto& shard : split.shards()) {
      if (shard.file().empty() || shard.file().find('/') != std::string::npos)
        throw DataError(path + ": splits[" + split.name() + "].shards.file: '" + shard.file() +
                        "' must be a file name inside the dataset directory");
      total += shard.num_examples();
    }
    if (total != split.num_examples())
      throw DataError(path + ": splits[" + split.name() + "].num_examples: " + std::to_string(split.num_examples()) +
                      " but its shards hold " + std::to_string(total));
  }
  return index;
}

void write_index(const std::string& dir, const proto::DatasetIndex& index) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(index, &text)) throw DataError(dir + ": cannot print the index");
  write_file_durably<DataError>((std::filesystem::path(dir) / kIndexFile).string(),
                                "# Parallax dataset index (protobuf text format, schema data/dataset.proto).\n" + text);
}

const proto::SplitInfo& find_split(const proto::DatasetIndex& index, const std::string& name, const std::string& dir) {
  std::string present;
  for (const auto& split : index.splits()) {
    if (split.name() == name) return split;
    present += (present.empty() ? "" : ", ") + split.name();
  }
  throw DataError(dir + ": no split '" + name + "' (present: " + present + ")");
}

std::vector<std::string> shard_paths(const std::string& dir, const proto::SplitInfo& split) {
  std::vector<std::string> paths;
  for (const auto& shard : split.shards()) paths.push_back((std::filesystem::path(dir) / shard.file()).string());
  return paths;
}

proto::LengthStats length_stats(std::vector<int64_t> values) {
  proto::LengthStats stats;
  if (values.empty()) return stats;
  std::sort(values.begin(), values.end());
  const auto at = [&](double q) { return values[static_cast<size_t>(q * double(values.size() - 1))]; };
  stats.set_min(values.front());
  stats.set_max(values.back());
  stats.set_mean(double(std::accumulate(values.begin(), values.end(), int64_t{0})) / double(values.size()));
  stats.set_p50(at(0.5));
  stats.set_p90(at(0.9));
  stats.set_p99(at(0.99));
  return stats;
}

}  // namespace px::data

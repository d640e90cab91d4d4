// dataset.pbtxt, the index of a shard directory: read with validation (unknown fields and
// inconsistent values are DataErrors naming the field), written atomically, split lookups.
#pragma once

#include <string>
#include <vector>

#include "data/dataset.pb.h"

namespace px::data {

inline constexpr const char* kIndexFile = "dataset.pbtxt";

// Reads <dir>/dataset.pbtxt. Throws DataError naming the file (and the field) when it is missing,
// does not parse, has an unknown schema, a split without shards or duplicate split names.
proto::DatasetIndex read_index(const std::string& dir);
// Writes <dir>/dataset.pbtxt durably (write_file_durably); DataError naming the file on failure.
void write_index(const std::string& dir, const proto::DatasetIndex& index);

// The split named `name`; DataError listing the splits present when it is absent.
const proto::SplitInfo& find_split(const proto::DatasetIndex& index, const std::string& name,
                                   const std::string& dir);
// Full paths of a split's shards, in index order.
std::vector<std::string> shard_paths(const std::string& dir, const proto::SplitInfo& split);

// min / max / mean / p50 / p90 / p99 of values (empty -> all zero).
proto::LengthStats length_stats(std::vector<int64_t> values);

}  // namespace px::data

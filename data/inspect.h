// `parallax data inspect DIR [--verify]`: a human summary of a shard directory (counts, histograms,
// decoded examples, PNGs with boxes drawn) or a full integrity check of every chunk of every shard.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace px::data {

struct InspectOptions {
  std::string dir;
  int examples = 3;       // decoded examples per split
  std::string png_dir;    // detection: where example PNGs go (default <dir>/inspect)
  bool draw_boxes = true; // detection: the ground-truth boxes drawn on the PNGs
};

// Prints the summary to `out`. DataError on a malformed index or shard.
void inspect_dataset(const InspectOptions& options, std::ostream& out);

// Opens every shard listed in the index, checks its counts and tokenizer/categories against the
// index and reads every example (so HDF5 verifies every chunk's fletcher32 checksum). Throws the
// first DataError, which names the file and dataset. Prints one line per shard to `out`.
void verify_dataset(const std::string& dir, std::ostream& out);

}  // namespace px::data

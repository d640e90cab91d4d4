// Summaries and integrity checks of shard directories: index counts, length / size histograms,
// detokenised examples, example images with their boxes drawn, and a full read of every shard.
#include "data/inspect.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>

#include "core/util/error.h"
#include "data/dataset_index.h"
#include "data/detection_shard.h"
#include "data/image_io.h"
#include "data/sharded_dataset.h"
#include "data/tokenizer.h"
#include "data/translation_shard.h"

namespace fs = std::filesystem;

namespace px::data {
namespace {

void print_stats(std::ostream& out, const char* what, const proto::LengthStats& s) {
  out << "    " << what << ": min " << s.min() << ", mean " << std::fixed << std::setprecision(1) << s.mean()
      << ", p50 " << s.p50() << ", p90 " << s.p90() << ", p99 " << s.p99() << ", max " << s.max() << "\n";
}

// A text histogram of values in power-of-two buckets [1, 2), [2, 4), ...
void print_histogram(std::ostream& out, const char* what, const std::vector<int64_t>& values) {
  std::vector<int64_t> buckets;
  for (const int64_t v : values) {
    size_t b = 0;
    while ((int64_t{2} << b) <= v) ++b;
    if (buckets.size() <= b) buckets.resize(b + 1, 0);
    ++buckets[b];
  }
  const int64_t peak = buckets.empty() ? 1 : *std::max_element(buckets.begin(), buckets.end());
  out << "    " << what << " histogram:\n";
  size_t first = 0;
  while (first + 1 < buckets.size() && buckets[first] == 0) ++first;
  for (size_t b = first; b < buckets.size(); ++b) {
    const int64_t lo = b == 0 ? 0 : (int64_t{1} << b);
    out << "      [" << std::setw(5) << lo << ", " << std::setw(5) << (int64_t{2} << b) << ") " << std::setw(8)
        << buckets[b] << " " << std::string(static_cast<size_t>(40 * buckets[b] / peak), '#') << "\n";
  }
}

// value(i) for every example i of n (a statistic read from the offsets, no payload).
template <typename F>
std::vector<int64_t> per_example(int64_t n, F value) {
  std::vector<int64_t> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = value(i);
  return values;
}

void inspect_translation(const InspectOptions& options, const proto::DatasetIndex& index, std::ostream& out) {
  const auto& tok = index.tokenizer();
  const Tokenizer src_tok((fs::path(options.dir) / tok.src_model()).string());
  const Tokenizer tgt_tok((fs::path(options.dir) / tok.tgt_model()).string());
  out << "tokenizer: " << (tok.joint() ? "joint " : "separate ") << tok.src_model() << " vocab " << tok.vocab_size()
      << " hash " << tok.hash() << "\n";
  for (const auto& split : index.splits()) {
    out << "split " << split.name() << ": " << split.num_examples() << " pairs in " << split.shards_size()
        << " shards (" << split.skipped_examples() << " skipped when built)\n";
    print_stats(out, "source tokens", split.src_length());
    print_stats(out, "target tokens", split.tgt_length());
    const TranslationDataset data(shard_paths(options.dir, split));
    print_histogram(out, "source length", per_example(data.size(), [&](int64_t i) { return data.src_length(i); }));
    print_histogram(out, "target length", per_example(data.size(), [&](int64_t i) { return data.tgt_length(i); }));
    std::vector<int32_t> src, tgt;
    for (int64_t i = 0; i < std::min<int64_t>(options.examples, data.size()); ++i) {
      data.read(i, src, tgt);
      out << "    [" << i << "] " << src_tok.decode(src) << "\n        => " << tgt_tok.decode(tgt) << "\n";
    }
  }
}

void inspect_detection(const InspectOptions& options, const proto::DatasetIndex& index, std::ostream& out) {
  out << "categories (" << index.category_names_size() << "):";
  for (const auto& c : index.category_names()) out << " " << c;
  out << "\n";
  const std::string png_dir = options.png_dir.empty() ? (fs::path(options.dir) / "inspect").string() : options.png_dir;
  fs::create_directories(png_dir);
  for (const auto& split : index.splits()) {
    out << "split " << split.name() << ": " << split.num_examples() << " images, " << split.num_boxes()
        << " boxes in " << split.shards_size() << " shards\n";
    print_stats(out, "longer image side", split.image_size());
    const DetectionDataset data(shard_paths(options.dir, split));
    print_histogram(out, "longer image side", per_example(data.size(), [&](int64_t i) { return data.longer_side(i); }));
    print_histogram(out, "boxes per image", per_example(data.size(), [&](int64_t i) { return data.num_boxes(i); }));
    DetectionExample ex;
    for (int64_t i = 0; i < std::min<int64_t>(options.examples, data.size()); ++i) {
      data.read(i, ex);
      Image img{ex.height, ex.width, 3, ex.pixels};
      static const uint8_t kRed[3] = {255, 40, 40};
      for (int64_t b = 0; options.draw_boxes && b < ex.num_boxes(); ++b) {
        const float* x = &ex.boxes[4 * b];  // cx, cy, w, h
        draw_box(img, (x[0] - x[2] / 2) * ex.width, (x[1] - x[3] / 2) * ex.height,
                 (x[0] + x[2] / 2) * ex.width - 1, (x[1] + x[3] / 2) * ex.height - 1, kRed);
      }
      const std::string png = (fs::path(png_dir) / (split.name() + "_" + std::to_string(i) + ".png")).string();
      write_png(png, img);
      out << "    [" << i << "] image " << ex.image_id << " " << ex.width << "x" << ex.height << ", "
          << ex.num_boxes() << " boxes:";
      for (int64_t b = 0; b < ex.num_boxes(); ++b) out << " " << data.category_names()[ex.labels[b]];
      out << " -> " << png << "\n";
    }
  }
}

}  // namespace

void inspect_dataset(const InspectOptions& options, std::ostream& out) {
  const proto::DatasetIndex index = read_index(options.dir);
  out << options.dir << ": " << index.schema() << " v" << index.schema_version() << "\n";
  if (!index.source().empty()) out << "built by: " << index.source() << "\n";
  if (index.schema() == kTranslationSchema) inspect_translation(options, index, out);
  else inspect_detection(options, index, out);
}

void verify_dataset(const std::string& dir, std::ostream& out) {
  const proto::DatasetIndex index = read_index(dir);
  const bool translation = index.schema() == kTranslationSchema;
  for (const auto& split : index.splits()) {
    for (const auto& shard : split.shards()) {
      const std::string path = (fs::path(dir) / shard.file()).string();
      int64_t n = 0;
      if (translation) {
        const TranslationShardReader reader(path);
        if (reader.tokenizer_hash() != index.tokenizer().hash())
          throw DataError(path + ": tokenizer_hash " + reader.tokenizer_hash() + " differs from the index's " +
                          index.tokenizer().hash());
        std::vector<int32_t> src, tgt;
        for (n = 0; n < reader.num_examples(); ++n) reader.read(n, src, tgt);
      } else {
        const DetectionShardReader reader(path);
        const std::vector<std::string> names(index.category_names().begin(), index.category_names().end());
        if (reader.category_names() != names) throw DataError(path + ": category_names differ from the index's");
        DetectionExample ex;
        for (n = 0; n < reader.num_examples(); ++n) reader.read(n, ex);
      }
      if (n != shard.num_examples())
        throw DataError(path + ": holds " + std::to_string(n) + " examples, the index says " +
                        std::to_string(shard.num_examples()));
      out << "ok " << shard.file() << " (" << n << " examples)\n";
    }
  }
}

}  // namespace px::data

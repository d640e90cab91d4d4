// bench_data_reader: examples/s and MB/s of Parallax's shard reader over one epoch of the shuffled
// global order (and of the full loader: sampler + read + collate + prefetch); peer: reader_h5py.py.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "core/util/error.h"
#include "data/dataset_index.h"
#include "data/detection_loader.h"
#include "data/sampler.h"
#include "data/sharded_dataset.h"
#include "data/translation_loader.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
  std::string dir, split = "train", order_out, mode = "read";
  int64_t max_tokens = 8192, batch_size = 16;
  uint64_t seed = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") a.dir = v;
    else if (k == "--split") a.split = v;
    else if (k == "--order-out") a.order_out = v;
    else if (k == "--mode") a.mode = v;
    else if (k == "--max-tokens") a.max_tokens = std::stoll(v);
    else if (k == "--batch-size") a.batch_size = std::stoll(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else throw px::UsageError("unknown option " + k);
  }
  if (a.dir.empty()) throw px::UsageError("usage: bench_data_reader --dir DATASET [--split S] [--mode read|loader]");
  return a;
}

// One epoch of the global order, read example by example (what the loader's thread does).
void bench_read(const Args& a, const px::data::proto::DatasetIndex& index, const std::vector<std::string>& shards) {
  const bool translation = index.schema() == px::data::kTranslationSchema;
  int64_t n = 0;
  if (translation) n = px::data::TranslationDataset(shards).size();
  else n = px::data::DetectionDataset(shards).size();
  const std::vector<int64_t> order = px::data::epoch_permutation(n, a.seed, 0);
  if (!a.order_out.empty()) std::ofstream(a.order_out, std::ios::binary).write(
      reinterpret_cast<const char*>(order.data()), static_cast<std::streamsize>(order.size() * sizeof(int64_t)));
  const auto t0 = Clock::now();  // opening (offset validation) counts too
  int64_t bytes = 0;
  if (translation) {
    const px::data::TranslationDataset data(shards);
    std::vector<int32_t> src, tgt;
    for (const int64_t id : order) {
      data.read(id, src, tgt);
      bytes += static_cast<int64_t>((src.size() + tgt.size()) * sizeof(int32_t));
    }
  } else {
    const px::data::DetectionDataset data(shards);
    px::data::DetectionExample ex;
    for (const int64_t id : order) {
      data.read(id, ex);
      bytes += static_cast<int64_t>(ex.pixels.size() + ex.boxes.size() * 4 + ex.labels.size() * 4);
    }
  }
  const double s = seconds_since(t0);
  std::printf("{\"impl\": \"parallax\", \"mode\": \"read\", \"examples\": %lld, \"bytes\": %lld, \"seconds\": %.4f, "
              "\"examples_per_s\": %.1f, \"mb_per_s\": %.2f}\n",
              static_cast<long long>(n), static_cast<long long>(bytes), s, n / s, bytes / s / 1e6);
}

// Takes every batch of a loader; adds to the batch and example counts.
template <typename Loader>
void drain(Loader& loader, int64_t& batches, int64_t& examples) {
  while (auto b = loader.next()) {
    ++batches;
    examples += static_cast<int64_t>(b->ids.size());
  }
}

// One epoch through the full loader: batches/s and examples/s as the trainer would see them.
void bench_loader(const Args& a, const px::data::proto::DatasetIndex& index, const std::vector<std::string>& shards) {
  int64_t batches = 0, examples = 0;
  const auto t0 = Clock::now();
  if (index.schema() == px::data::kTranslationSchema) {
    px::data::TranslationLoaderOptions o;
    o.shards = shards;
    o.max_tokens = a.max_tokens;
    o.max_epochs = 1;
    px::data::TranslationLoader loader(o, px::data::DataCursor{a.seed});
    drain(loader, batches, examples);
    std::fprintf(stderr, "padding waste %.3f (%lld examples filtered by max_length %lld)\n", loader.padding().waste(),
                 static_cast<long long>(loader.padding().filtered_examples), static_cast<long long>(o.max_length));
  } else {
    px::data::DetectionLoaderOptions o;
    o.shards = shards;
    o.batch_size = a.batch_size;
    o.max_epochs = 1;
    px::data::DetectionLoader loader(o, px::data::DataCursor{a.seed});
    drain(loader, batches, examples);
  }
  const double s = seconds_since(t0);
  std::printf("{\"impl\": \"parallax\", \"mode\": \"loader\", \"batches\": %lld, \"examples\": %lld, \"seconds\": %.4f, "
              "\"batches_per_s\": %.1f, \"examples_per_s\": %.1f}\n",
              static_cast<long long>(batches), static_cast<long long>(examples), s, batches / s, examples / s);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const auto index = px::data::read_index(a.dir);
    const auto shards = px::data::shard_paths(a.dir, px::data::find_split(index, a.split, a.dir));
    if (a.mode == "read") bench_read(a, index, shards);
    else bench_loader(a, index, shards);
  } catch (const px::Error& e) {
    std::fprintf(stderr, "bench_data_reader: %s\n", e.what());
    return 2;
  }
  return 0;
}

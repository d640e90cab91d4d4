// DetectionLoader: fixed-size global batches, this rank's slice read, augmented with DETR's
// transforms and collated into padded, normalised images with masks and targets on the prefetch thread.
#include "data/detection_loader.h"

#include <algorithm>
#include <string>
#include <utility>

#include "core/util/error.h"
#include "data/detection_transforms.h"
#include "data/prefetcher.h"
#include "data/sharded_dataset.h"

namespace px::data {
namespace {

const DetectionLoaderOptions& validated(const DetectionLoaderOptions& o) {
  const auto fail = [](const std::string& what) { throw ConfigError("detection loader: " + what); };
  if (o.shards.empty()) fail("no shards");
  if (o.world <= 0 || o.rank < 0 || o.rank >= o.world) {
    fail("rank " + std::to_string(o.rank) + " outside world " + std::to_string(o.world));
  }
  if (o.batch_size <= 0 || o.batch_size % o.world != 0) {
    fail("batch_size " + std::to_string(o.batch_size) + " is not a positive multiple of the world size " +
         std::to_string(o.world));
  }
  if (o.max_epochs < 0) fail("max_epochs must not be negative, got " + std::to_string(o.max_epochs));
  if (o.prefetch <= 0) fail("prefetch must be positive, got " + std::to_string(o.prefetch));
  return o;
}

// Stored boxes per example of the split, from each shard's box_offsets (N+1), so global_num_boxes
// needs no other rank's images. DetectionDataset exposes no box counts, hence the second handle.
Tensor boxes_tensor(const std::vector<float>& boxes) {
  const auto m = static_cast<int64_t>(boxes.size() / 4);
  Tensor out = Tensor::empty({m, 4}, DType::f32);  // (M, 4)
  std::copy(boxes.begin(), boxes.end(), out.data<float>());
  return out;
}

Tensor labels_tensor(const std::vector<int32_t>& labels) {
  Tensor out = Tensor::empty({static_cast<int64_t>(labels.size())}, DType::i64);  // (M,)
  std::copy(labels.begin(), labels.end(), out.data<int64_t>());
  return out;
}

}  // namespace

struct DetectionLoader::Impl {
  Impl(const DetectionLoaderOptions& o, const DataCursor& start)
      : options(validated(o)),
        dataset(o.shards),
        num_examples(dataset.size()),
        category_names(dataset.category_names()),
        seed(start.seed),
        sampler(std::vector<int64_t>(static_cast<size_t>(num_examples), 0),
                SamplerOptions{.batch_size = o.batch_size, .shuffle = o.shuffle, .drop_last = o.drop_last}, start),
        cursor(start),
        prefetcher([this] { return produce(); }, o.prefetch) {}

  // Runs on the prefetch thread: the only place the sampler and the shards are used after construction.
  std::optional<DetectionBatch> produce() {
    if (options.max_epochs > 0 && sampler.cursor().epoch >= options.max_epochs) return std::nullopt;
    const GlobalBatch global = sampler.next();
    DetectionBatch batch;
    batch.ids = rank_slice(global.ids, options.rank, options.world);
    batch.epoch = global.epoch;
    batch.after = global.after;
    for (int64_t id : global.ids) batch.global_num_boxes += dataset.num_boxes(id);

    std::vector<DetectionSample> samples;
    for (int64_t id : batch.ids) {
      DetectionExample example;
      dataset.read(id, example);
      DetectionTarget target;
      target.image_id = example.image_id;
      target.orig_height = example.height;
      target.orig_width = example.width;
      DetectionSample sample = to_sample(std::move(example));
      PhiloxStream rng = augment_stream(seed, global.epoch, id);
      augment(sample, options.augment, rng);
      target.boxes = boxes_tensor(sample.boxes);
      target.labels = labels_tensor(sample.labels);
      target.height = sample.image.height;
      target.width = sample.image.width;
      batch.targets.push_back(std::move(target));
      samples.push_back(std::move(sample));
    }
    PaddedImages padded = collate_images(samples);
    batch.images = std::move(padded.images);
    batch.mask = std::move(padded.mask);
    return batch;
  }

  const DetectionLoaderOptions options;
  DetectionDataset dataset;
  const int64_t num_examples;
  const std::vector<std::string> category_names;
  const uint64_t seed;                    // keys the augmentation draws
  GlobalBatchSampler sampler;             // used by the prefetch thread only
  DataCursor cursor;                      // consumer side: after the last batch returned
  Prefetcher<DetectionBatch> prefetcher;  // last: joined before the members it uses go away
};

DetectionLoader::DetectionLoader(const DetectionLoaderOptions& options, const DataCursor& start)
    : impl_(std::make_unique<Impl>(options, start)) {}

DetectionLoader::~DetectionLoader() = default;

std::optional<DetectionBatch> DetectionLoader::next() {
  std::optional<DetectionBatch> batch = impl_->prefetcher.next();
  if (batch) impl_->cursor = batch->after;
  return batch;
}

DataCursor DetectionLoader::cursor() const { return impl_->cursor; }

int64_t DetectionLoader::num_examples() const { return impl_->num_examples; }

const std::vector<std::string>& DetectionLoader::category_names() const { return impl_->category_names; }

}  // namespace px::data

// TranslationLoader: max-length filter into sampler lengths, this rank's slice of each token-budget
// global batch read and collated (src + eos, bos + tgt, tgt + eos, padded) on the prefetch thread.
#include "data/translation_loader.h"

#include <algorithm>
#include <string>

#include "core/util/error.h"
#include "data/prefetcher.h"
#include "data/sharded_dataset.h"

namespace px::data {
namespace {

const TranslationLoaderOptions& validated(const TranslationLoaderOptions& o) {
  const auto fail = [](const std::string& what) { throw ConfigError("translation loader: " + what); };
  if (o.shards.empty()) fail("no shards");
  if (o.max_tokens <= 0) fail("max_tokens must be positive, got " + std::to_string(o.max_tokens));
  if (o.max_length <= 1) fail("max_length must exceed 1, got " + std::to_string(o.max_length));
  if (o.window < 0) fail("window must not be negative, got " + std::to_string(o.window));
  if (o.max_epochs < 0) fail("max_epochs must not be negative, got " + std::to_string(o.max_epochs));
  if (o.world <= 0 || o.rank < 0 || o.rank >= o.world) {
    fail("rank " + std::to_string(o.rank) + " outside world " + std::to_string(o.world));
  }
  if (o.prefetch <= 0) fail("prefetch must be positive, got " + std::to_string(o.prefetch));
  return o;
}

}  // namespace

Tensor pad_rows(const std::vector<std::vector<int32_t>>& rows, int32_t pad_id) {
  const auto b = static_cast<int64_t>(rows.size());
  int64_t len = 1;
  for (const auto& r : rows) len = std::max(len, static_cast<int64_t>(r.size()));
  Tensor out = Tensor::empty({b, len}, DType::i64);  // (B, L)
  int64_t* data = out.data<int64_t>();
  std::fill_n(data, b * len, static_cast<int64_t>(pad_id));
  for (int64_t i = 0; i < b; ++i) std::copy(rows[i].begin(), rows[i].end(), data + i * len);
  return out;
}

struct TranslationLoader::Impl {
  Impl(const TranslationLoaderOptions& o, const DataCursor& start)
      : options(validated(o)),
        dataset(o.shards),
        num_examples(dataset.size()),
        sampler(sampler_lengths(), SamplerOptions{.max_tokens = o.max_tokens, .window = o.window, .shuffle = o.shuffle},
                start),
        cursor(start),
        prefetcher([this] { return produce(); }, o.prefetch) {}

  // max(src, tgt) + 1 per example; -1 for those the max-length filter drops (counted in `filtered`).
  std::vector<int64_t> sampler_lengths() {
    std::vector<int64_t> lengths(static_cast<size_t>(dataset.size()));
    for (int64_t id = 0; id < dataset.size(); ++id) {
      const int64_t src = dataset.src_length(id), tgt = dataset.tgt_length(id);
      const bool keep = src > 0 && tgt > 0 && src + 1 <= options.max_length && tgt + 1 <= options.max_length;
      lengths[static_cast<size_t>(id)] = keep ? std::max(src, tgt) + 1 : -1;
      if (!keep) ++filtered;
    }
    return lengths;
  }

  // Runs on the prefetch thread: the only place the sampler and the shards are used after construction.
  std::optional<TranslationBatch> produce() {
    if (options.max_epochs > 0 && sampler.cursor().epoch >= options.max_epochs) return std::nullopt;
    return collate(sampler.next());
  }

  TranslationBatch collate(const GlobalBatch& global) {
    TranslationBatch batch;
    batch.ids = rank_slice(global.ids, options.rank, options.world);
    batch.epoch = global.epoch;
    batch.after = global.after;
    for (int64_t id : global.ids) batch.global_tgt_tokens += dataset.tgt_length(id) + 1;

    std::vector<std::vector<int32_t>> src_rows, tgt_in_rows, tgt_out_rows;
    std::vector<int32_t> src, tgt;
    for (int64_t id : batch.ids) {
      dataset.read(id, src, tgt);
      src_rows.emplace_back(src.begin(), src.end());
      src_rows.back().push_back(options.eos_id);
      tgt_in_rows.emplace_back(1, options.bos_id);
      tgt_in_rows.back().insert(tgt_in_rows.back().end(), tgt.begin(), tgt.end());
      tgt_out_rows.emplace_back(tgt.begin(), tgt.end());
      tgt_out_rows.back().push_back(options.eos_id);
      batch.src_tokens += static_cast<int64_t>(src_rows.back().size());
      batch.tgt_tokens += static_cast<int64_t>(tgt_out_rows.back().size());
    }
    batch.src = pad_rows(src_rows, options.pad_id);
    batch.tgt_in = pad_rows(tgt_in_rows, options.pad_id);
    batch.tgt_out = pad_rows(tgt_out_rows, options.pad_id);
    batch.padded_tokens = batch.src.numel() + batch.tgt_out.numel();
    return batch;
  }

  const TranslationLoaderOptions options;
  TranslationDataset dataset;
  const int64_t num_examples;
  int64_t filtered = 0;
  GlobalBatchSampler sampler;  // used by the prefetch thread only
  DataCursor cursor;           // consumer side: after the last batch returned
  PaddingStats stats;          // consumer side
  Prefetcher<TranslationBatch> prefetcher;  // last: joined before the members it uses go away
};

TranslationLoader::TranslationLoader(const TranslationLoaderOptions& options, const DataCursor& start)
    : impl_(std::make_unique<Impl>(options, start)) {}

TranslationLoader::~TranslationLoader() = default;

std::optional<TranslationBatch> TranslationLoader::next() {
  std::optional<TranslationBatch> batch = impl_->prefetcher.next();
  if (batch) {
    impl_->cursor = batch->after;
    impl_->stats.real_tokens += batch->src_tokens + batch->tgt_tokens;
    impl_->stats.padded_tokens += batch->padded_tokens;
  }
  return batch;
}

DataCursor TranslationLoader::cursor() const { return impl_->cursor; }

PaddingStats TranslationLoader::padding() const {
  PaddingStats stats = impl_->stats;
  stats.filtered_examples = impl_->filtered;
  return stats;
}

int64_t TranslationLoader::num_examples() const { return impl_->num_examples; }

}  // namespace px::data

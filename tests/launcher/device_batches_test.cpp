// DeviceBatches: on the host a pass-through (the same batch objects, order, cursors, end and errors); on a GPU the
// same batches copied to the device from pinned memory with no host sync. GPU cases skip in one line.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "data/translation_loader.h"
#include "data/translation_shard.h"
#include "launcher/device_batches.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/temp_dir.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {

class FakeBatch : public TaskBatch {
 public:
  bool empty() const override { return ids.size(0) == 0; }
  std::vector<Tensor*> device_tensors() override { return {&ids, &values}; }
  Tensor ids;     // (B, S) i64
  Tensor values;  // (S, B) f32: a transposed view, so DeviceBatches meets a non-contiguous tensor too
  int64_t index = 0;
};

// `count` batches (batch k of B = 1 + k % 3 rows, B = 0 for k = 4), then the end; throws instead of batch
// `throw_at`. Batches k % 2 == 1 collate into pinned memory, as a loader asked for it does.
class FakeSource : public BatchSource {
 public:
  FakeSource(int count, int throw_at = -1) : count_(count), throw_at_(throw_at) {}
  std::unique_ptr<TaskBatch> next() override {
    if (k_ == throw_at_) throw std::runtime_error("bad shard at batch " + std::to_string(k_));
    if (k_ >= count_) return nullptr;
    auto b = std::make_unique<FakeBatch>();
    const int64_t rows = k_ == 4 ? 0 : 1 + k_ % 3, cols = 5;
    std::vector<int64_t> ids(rows * cols);
    std::vector<double> values(rows * cols);
    for (int64_t i = 0; i < rows * cols; ++i) {
      ids[i] = 100 * k_ + i;
      values[i] = 0.5 * static_cast<double>(k_) - static_cast<double>(i);
    }
    b->ids = from_vector(ids, {rows, cols});
    if (k_ % 2 == 1) {
      Tensor pinned = Tensor::empty_pinned({rows, cols}, DType::i64);
      backend_for(cpu()).copy(b->ids, pinned);
      b->ids = pinned;
    }
    b->values = transpose(from_vector(values, {rows, cols}, DType::f32), 0, 1);  // (cols, rows)
    b->index = k_;
    b->after.epoch = k_ / 3;
    b->after.position = k_ + 1;
    produced.push_back(b.get());
    ++k_;
    return b;
  }
  std::vector<const TaskBatch*> produced;

 private:
  int count_, throw_at_, k_ = 0;
};

const FakeBatch& fake(const TaskBatch& b) { return dynamic_cast<const FakeBatch&>(b); }

TEST(DeviceBatches, PassesHostBatchesThroughUnchanged) {
  auto inner = std::make_unique<FakeSource>(6);
  FakeSource& source = *inner;
  FakeSource reference(6);
  DeviceBatches batches(std::move(inner), cpu());
  for (int k = 0; k < 6; ++k) {
    std::unique_ptr<TaskBatch> b = batches.next();
    ASSERT_NE(b, nullptr) << k;
    ASSERT_EQ(source.produced.size(), static_cast<size_t>(k + 1)) << "no read-ahead on the host";
    EXPECT_EQ(b.get(), source.produced[k]) << "the same batch object";
    const std::unique_ptr<TaskBatch> want = reference.next();
    EXPECT_EQ(fake(*b).index, k);
    EXPECT_TRUE(b->after == want->after);
    EXPECT_EQ(b->empty(), want->empty());
    EXPECT_TRUE(fake(*b).ids.device().is_cpu());
    EXPECT_EQ(to_vector(fake(*b).ids), to_vector(fake(*want).ids));
    EXPECT_EQ(to_vector(fake(*b).values), to_vector(fake(*want).values));
  }
  EXPECT_EQ(batches.next(), nullptr);
  EXPECT_EQ(batches.next(), nullptr);
}

// Real loader batches, as TranslatorTask wraps them.
class LoaderBatch : public TaskBatch {
 public:
  explicit LoaderBatch(data::TranslationBatch b) : batch(std::move(b)) { after = batch.after; }
  bool empty() const override { return batch.src.size(0) == 0; }
  std::vector<Tensor*> device_tensors() override { return {&batch.src, &batch.tgt_in, &batch.tgt_out}; }
  data::TranslationBatch batch;
};

class LoaderSource : public BatchSource {
 public:
  LoaderSource(const data::TranslationLoaderOptions& o, const data::DataCursor& start) : loader_(o, start) {}
  std::unique_ptr<TaskBatch> next() override {
    std::optional<data::TranslationBatch> b = loader_.next();
    return b ? std::make_unique<LoaderBatch>(std::move(*b)) : nullptr;
  }

 private:
  data::TranslationLoader loader_;
};

class DeviceBatchesLoaderTest : public test::TempDirTest {
 protected:
  void SetUp() override {
    test::TempDirTest::SetUp();
    for (int shard = 0; shard < 2; ++shard) {
      options_.shards.push_back(path("tr" + std::to_string(shard) + ".h5"));
      data::TranslationShardWriter writer(options_.shards.back(), "hash", 100);
      for (int i = 0; i < 40; ++i) {
        std::vector<int32_t> src, tgt;
        for (int j = 0; j < 1 + (i * 5 + shard) % 13; ++j) src.push_back(3 + (7 * i + j) % 97);
        for (int j = 0; j < 1 + (i * 3 + shard) % 11; ++j) tgt.push_back(3 + (5 * i + j + 11) % 97);
        writer.add(src, tgt);
      }
      writer.finish();
    }
    options_.max_tokens = 90;
    options_.max_length = 20;
    options_.window = 20;
    options_.max_epochs = 2;
    options_.prefetch = 2;
  }

  // Every batch of DeviceBatches over the loader on `device` against the plain loader's, from `start` to the end.
  void expect_same_batches(Device device, const data::DataCursor& start, bool count_syncs) {
    data::TranslationLoader plain(options_, start);
    DeviceBatches batches(std::make_unique<LoaderSource>(options_, start), device);
#ifdef PARALLAX_WITH_CUDA
    const uint64_t syncs = count_syncs ? cuda_host_syncs() : 0;
#endif
    std::vector<std::unique_ptr<TaskBatch>> got;
    for (std::unique_ptr<TaskBatch> b = batches.next(); b != nullptr; b = batches.next()) got.push_back(std::move(b));
    EXPECT_EQ(batches.next(), nullptr);
#ifdef PARALLAX_WITH_CUDA
    if (count_syncs) EXPECT_EQ(cuda_host_syncs(), syncs) << got.size() << " batches blocked the host";
#endif
    ASSERT_GT(got.size(), 4u);
    for (size_t k = 0; k < got.size(); ++k) {
      const std::optional<data::TranslationBatch> want = plain.next();
      ASSERT_TRUE(want.has_value()) << "batch " << k << ": more batches than the plain loader gives";
      const data::TranslationBatch& b = dynamic_cast<const LoaderBatch&>(*got[k]).batch;
      EXPECT_TRUE(got[k]->after == want->after) << "batch " << k;
      EXPECT_EQ(b.ids, want->ids) << "batch " << k;
      EXPECT_EQ(b.global_tgt_tokens, want->global_tgt_tokens) << "batch " << k;
      for (const auto& [t, w] : {std::pair{&b.src, &want->src}, {&b.tgt_in, &want->tgt_in}, {&b.tgt_out, &want->tgt_out}}) {
        EXPECT_EQ(t->device(), device) << "batch " << k;
        EXPECT_EQ(t->shape(), w->shape()) << "batch " << k;
        EXPECT_EQ(to_vector(*t), to_vector(*w)) << "batch " << k;
      }
    }
    EXPECT_FALSE(plain.next().has_value()) << "fewer batches than the plain loader gives";
  }

  data::TranslationLoaderOptions options_;
};

TEST_F(DeviceBatchesLoaderTest, HostBatchesCursorsAndTheEndAreTheLoaders) {
  expect_same_batches(cpu(), data::DataCursor{}, false);
  data::TranslationLoader probe(options_, data::DataCursor{});
  for (int k = 0; k < 5; ++k) probe.next();
  expect_same_batches(cpu(), probe.cursor(), false);  // resumed mid-epoch
}

TEST(DeviceBatches, PassesErrorsThroughOnTheHost) {
  DeviceBatches batches(std::make_unique<FakeSource>(6, 2), cpu());
  EXPECT_NE(batches.next(), nullptr);
  EXPECT_NE(batches.next(), nullptr);
  EXPECT_THROW(batches.next(), std::runtime_error);
}

#ifdef PARALLAX_WITH_CUDA

#define PX_SKIP_WITHOUT_GPU() \
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why

TEST(DeviceBatchesGpu, BatchesArriveOnTheGpuEqualToTheHostBatchesWithoutAHostSync) {
  PX_SKIP_WITHOUT_GPU();
  const int count = 9;
  std::vector<std::unique_ptr<TaskBatch>> got;
  {
    DeviceBatches batches(std::make_unique<FakeSource>(count), cuda());
    const uint64_t before = cuda_host_syncs();
    for (int k = 0; k < count; ++k) {
      std::unique_ptr<TaskBatch> b = batches.next();
      ASSERT_NE(b, nullptr) << k;
      got.push_back(std::move(b));
    }
    EXPECT_EQ(batches.next(), nullptr);
    EXPECT_EQ(batches.next(), nullptr);
    EXPECT_EQ(cuda_host_syncs(), before) << "taking " << count << " batches blocked the host";
  }
  FakeSource reference(count);
  for (int k = 0; k < count; ++k) {
    const std::unique_ptr<TaskBatch> want = reference.next();
    const FakeBatch& b = fake(*got[k]);
    EXPECT_EQ(b.index, k);
    EXPECT_TRUE(b.after == want->after);
    EXPECT_EQ(b.empty(), want->empty());
    EXPECT_EQ(b.ids.device(), cuda()) << k;
    EXPECT_EQ(b.values.device(), cuda()) << k;
    EXPECT_EQ(b.ids.shape(), fake(*want).ids.shape()) << k;
    EXPECT_EQ(b.values.shape(), fake(*want).values.shape()) << k;
    // Read on the compute stream, which waited for the copy stream's event.
    EXPECT_EQ(to_vector(b.ids), to_vector(fake(*want).ids)) << k;
    EXPECT_EQ(to_vector(b.values), to_vector(fake(*want).values)) << k;
  }
}

// Device memory of consumed batches goes back to the copy stream's pool only after the compute stream's work on it:
// compute on each batch, drop it, and check every result once all ran.
TEST(DeviceBatchesGpu, ConsumedBatchesStayIntactUntilTheComputeStreamIsDone) {
  PX_SKIP_WITHOUT_GPU();
  const int count = 40;
  DeviceBatches batches(std::make_unique<FakeSource>(count), cuda(), 3);
  std::vector<Tensor> sums;
  for (int k = 0; k < count; ++k) {
    std::unique_ptr<TaskBatch> b = batches.next();
    ASSERT_NE(b, nullptr);
    // Queued on the compute stream; b is freed right after. (No reduction over the empty batch.)
    sums.push_back(b->empty() ? Tensor() : sum(to_dtype(fake(*b).ids, DType::f64)));
  }
  FakeSource reference(count);
  for (int k = 0; k < count; ++k) {
    const std::unique_ptr<TaskBatch> want = reference.next();
    if (!sums[k].defined()) continue;
    EXPECT_EQ(sums[k].item(), sum(to_dtype(fake(*want).ids, DType::f64)).item()) << "batch " << k;
  }
}

TEST_F(DeviceBatchesLoaderTest, GpuBatchesCursorsAndTheEndAreTheLoadersWithoutAHostSync) {
  PX_SKIP_WITHOUT_GPU();
  expect_same_batches(cuda(), data::DataCursor{}, true);
  data::TranslationLoader probe(options_, data::DataCursor{});
  for (int k = 0; k < 5; ++k) probe.next();
  expect_same_batches(cuda(), probe.cursor(), true);
}

TEST(DeviceBatchesGpu, RethrowsTheSourcesErrorAfterTheBatchesBeforeIt) {
  PX_SKIP_WITHOUT_GPU();
  DeviceBatches batches(std::make_unique<FakeSource>(6, 3), cuda());
  for (int k = 0; k < 3; ++k) EXPECT_NE(batches.next(), nullptr) << k;
  EXPECT_THROW(batches.next(), std::runtime_error);
  EXPECT_THROW(batches.next(), std::runtime_error);
}

TEST(DeviceBatchesGpu, StopsPromptlyWhenDroppedMidStream) {
  PX_SKIP_WITHOUT_GPU();
  DeviceBatches batches(std::make_unique<FakeSource>(100), cuda());
  EXPECT_NE(batches.next(), nullptr);
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

// The translator on a GPU against the same translator on the CPU: loss and gradients of one batch, 20-step AdamW
// loss curves in f32 and bf16, bit-identical repeated runs, the host syncs of a step, decoding. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/clip_grad_norm.h"
#include "models/translator/decoding.h"
#include "models/translator/transformer.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {

#ifdef PARALLAX_WITH_CUDA

namespace tr = translator;

#define PX_SKIP_WITHOUT_GPU() \
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why

constexpr int64_t kVocab = 96, kPad = 0, kBos = 2, kEos = 3;

tr::TranslatorOptions small_options(double dropout) {
  tr::TranslatorOptions o;
  o.src_vocab = o.tgt_vocab = kVocab;
  o.d_model = 64;
  o.num_heads = 4;
  o.encoder_layers = o.decoder_layers = 2;
  o.d_ff = 128;
  o.dropout = dropout;
  o.share_embeddings = o.tie_output = true;
  o.pad_id = kPad;
  return o;
}

struct Batch {
  Tensor src, tgt_in, tgt_out;  // i64 (B, S), (B, T), (B, T), right-padded
  double tokens = 0;            // non-pad target positions
};

// B sentences of random words, lengths in [3, 12], target = the source reversed (something to learn).
Batch make_batch(int64_t b, uint64_t seed) {
  Generator gen(seed);
  const std::vector<double> u = to_vector(rand({b, 16}, gen));
  const int64_t width = 13;
  std::vector<int64_t> src(b * width, kPad), tin(b * width, kPad), tout(b * width, kPad);
  Batch batch;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = 3 + static_cast<int64_t>(u[i * 16] * 10);
    for (int64_t k = 0; k < len; ++k) src[i * width + k] = 4 + static_cast<int64_t>(u[i * 16 + 1 + k] * (kVocab - 4));
    src[i * width + len] = kEos;
    tin[i * width] = kBos;
    for (int64_t k = 0; k < len; ++k) {
      tin[i * width + 1 + k] = tout[i * width + k] = src[i * width + len - 1 - k];
    }
    tout[i * width + len] = kEos;
    batch.tokens += static_cast<double>(len + 1);
  }
  batch.src = from_vector(src, {b, width});
  batch.tgt_in = from_vector(tin, {b, width});
  batch.tgt_out = from_vector(tout, {b, width});
  return batch;
}

Batch on(const Batch& b, Device d) {
  return {to_device(b.src, d), to_device(b.tgt_in, d), to_device(b.tgt_out, d), b.tokens};
}

// A model from seed 1 (dropout from seed 2) on `device` in `dtype`, the same weights wherever it lives.
struct PlacedModel {
  Generator init{1}, drop{2};
  tr::Translator model;
  PlacedModel(double dropout, Device device, DType dtype) : model(small_options(dropout), init, drop) {
    model.train();
    model.to(device, dtype);
  }
  Tensor loss(const Batch& b) const { return model.loss(b.src, b.tgt_in, b.tgt_out, 0.1) * (1.0 / b.tokens); }
};

// The mean loss of each of `steps` AdamW steps (clipped at 1) over 4 batches in turn.
std::vector<double> curve(double dropout, Device device, DType dtype, int steps) {
  PlacedModel run(dropout, device, dtype);
  optim::AdamW opt(run.model.parameters(), 2e-3, 0.01, {0.9, 0.98, 1e-9});
  std::vector<Batch> batches;
  for (uint64_t s = 0; s < 4; ++s) batches.push_back(on(make_batch(24, 10 + s), device));
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    opt.zero_grad();
    const Tensor loss = run.loss(batches[step % 4]);
    backward(loss);
    optim::clip_grad_norm(run.model.parameters(), 1.0, {});
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}

// max |a - r| / max |r| over the elements.
double relative_error(const Tensor& a, const Tensor& r) {
  const std::vector<double> x = to_vector(a), y = to_vector(r);
  double err = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? err / scale : err;
}

TEST(TranslatorGpu, SameWeightsAndBatchGiveTheCpuLossAndGradients) {
  PX_SKIP_WITHOUT_GPU();
  PlacedModel cpu_run(0.0, cpu(), DType::f32), gpu_run(0.0, cuda(), DType::f32);
  const Batch batch = make_batch(16, 3);
  const Tensor lc = cpu_run.loss(batch), lg = gpu_run.loss(on(batch, cuda()));
  EXPECT_NEAR(lg.item(), lc.item(), 1e-5 * std::abs(lc.item()));
  backward(lc);
  backward(lg);
  const auto pc = cpu_run.model.named_parameters(), pg = gpu_run.model.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_LT(relative_error(pg[i].second, pc[i].second), 1e-6) << pc[i].first << ": weights differ";
    ASSERT_TRUE(pg[i].second.grad().defined()) << pg[i].first;
    EXPECT_EQ(pg[i].second.grad().device(), cuda()) << pg[i].first;
    EXPECT_LT(relative_error(pg[i].second.grad(), pc[i].second.grad()), 1e-4) << pc[i].first;
  }
}

TEST(TranslatorGpu, TwentyStepsFollowTheCpuCurveInF32AndWithinOnePercentInBf16) {
  PX_SKIP_WITHOUT_GPU();
  const std::vector<double> ref = curve(0.0, cpu(), DType::f32, 20);
  const std::vector<double> f32 = curve(0.0, cuda(), DType::f32, 20), bf16 = curve(0.0, cuda(), DType::bf16, 20);
  ASSERT_LT(ref.back(), 0.9 * ref.front()) << "the CPU run does not learn: the comparison would mean little";
  for (size_t s = 0; s < ref.size(); ++s) {
    EXPECT_NEAR(f32[s], ref[s], 1e-3 * ref[s]) << "f32, step " << s + 1;
    EXPECT_NEAR(bf16[s], ref[s], 1e-2 * ref[s]) << "bf16, step " << s + 1;
  }
}

TEST(TranslatorGpu, TwoRunsWithDropoutGiveBitIdenticalLosses) {
  PX_SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::f32, DType::bf16}) {
    const std::vector<double> a = curve(0.1, cuda(), dtype, 20), b = curve(0.1, cuda(), dtype, 20);
    ASSERT_EQ(a.size(), b.size());
    for (size_t s = 0; s < a.size(); ++s)
      EXPECT_EQ(std::memcmp(&a[s], &b[s], sizeof(double)), 0)
          << dtype_name(dtype) << ", step " << s + 1 << ": " << a[s] << " vs " << b[s];
  }
}

// A step's blocking reads: the three id range checks (source and target embeddings, the loss's targets; one read
// each), the gradient norm (one read for every tensor) and the loss. None per parameter, none in AdamW.
TEST(TranslatorGpu, AStepBlocksTheHostFiveTimes) {
  PX_SKIP_WITHOUT_GPU();
  PlacedModel run(0.1, cuda(), DType::bf16);
  optim::AdamW opt(run.model.parameters(), 1e-3);
  const Batch batch = on(make_batch(16, 4), cuda());
  for (int step = 0; step < 3; ++step) {  // the first step creates the AdamW state; count the later ones
    const uint64_t before = cuda_host_syncs();
    opt.zero_grad();
    const Tensor loss = run.loss(batch);
    backward(loss);
    optim::clip_grad_norm(run.model.parameters(), 1.0, {});
    opt.step();
    loss.item();
    if (step > 0) EXPECT_LE(cuda_host_syncs() - before, 5u) << "step " << step + 1;
  }
}

// Greedy and beam search on the GPU (the next-token top-k on the device, preallocated key/value buffers) find what
// the CPU finds for the same f32 weights, and a step blocks the host at most twice (the new tokens up, the top-k
// down) instead of reading the (B', V) log-probabilities.
TEST(TranslatorGpu, DecodingOnTheGpuMatchesTheCpuAndReadsOnlyTheTopK) {
  PX_SKIP_WITHOUT_GPU();
  PlacedModel cpu_run(0.0, cpu(), DType::f32), gpu_run(0.0, cuda(), DType::f32);
  cpu_run.model.eval();
  gpu_run.model.eval();
  const Batch batch = make_batch(8, 5);
  for (int beam : {1, 4}) {
    tr::DecodeOptions o;
    o.beam = beam;
    o.bos_id = kBos;
    o.eos_id = kEos;
    o.pad_id = kPad;
    const std::vector<tr::Hypothesis> on_cpu = tr::decode(cpu_run.model, batch.src, o);
    const uint64_t before = cuda_host_syncs();
    const std::vector<tr::Hypothesis> on_gpu = tr::decode(gpu_run.model, batch.src, o);
    const uint64_t syncs = cuda_host_syncs() - before;
    ASSERT_EQ(on_gpu.size(), on_cpu.size());
    size_t same = 0, longest = 0;
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      // A near-tie may pick another path under f32 rounding; the best score stays within rounding.
      EXPECT_NEAR(on_gpu[i].score, on_cpu[i].score, 1e-3 * std::max(1.0, std::abs(on_cpu[i].score)))
          << "beam " << beam << ", row " << i;
      same += on_gpu[i].tokens == on_cpu[i].tokens ? 1 : 0;
      longest = std::max(longest, on_gpu[i].tokens.size());
    }
    EXPECT_GE(same, on_cpu.size() - 2) << "beam " << beam << ": too many rows decoded differently";
    EXPECT_LE(syncs, 2 * (longest + 1) + 4) << "beam " << beam << ": " << syncs << " host syncs for "
                                            << longest + 1 << " steps";
  }
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

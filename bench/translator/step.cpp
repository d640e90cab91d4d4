// bench/translator/step.cpp (bench_translator_step): one training step of the translator (forward, loss,
// backward, AdamW) on a fixed synthetic batch, on the CPU or a GPU; its PyTorch peer is step_torch.py. Prints one JSON line.
//
// The model is built from the options on the command line (defaults: the "tiny" config); the batch comes
// from a seed through SplitMix64, drawn in the same order as step_torch.py, so both sides train on the same
// ids (batch_hash checks it). Each step: zero_grad (set to none), logits = forward(src, tgt_in),
// loss = translation_loss(sum) / target tokens, backward, AdamW step; the three phases are timed apart.
// With --device cuda the model is moved to GPU 0 in --precision (bf16: f32 gradients, masters and AdamW state),
// the step time is the median of steps that block the host only where the step itself does (and at its end),
// the phase split comes from further steps with a device sync between phases, and the caching allocator's
// peak is reported. --profile-step 1 runs one more step between cudaProfilerStart/Stop (for ncu / nsys).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/util/error.h"
#include "models/translator/transformer.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/caching_allocator.h"
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace {

using px::Tensor;
namespace pb = px::bench;
namespace tr = px::translator;

constexpr int64_t kPadId = 0, kBosId = 2, kEosId = 3, kFirstWordId = 4;  // data/tokenizer.h's special ids

// SplitMix64 (Steele et al.): the batch's random source, mirrored bit for bit in step_torch.py.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int64_t uniform(int64_t lo, int64_t hi) {  // in [lo, hi]
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
};

struct Batch {
  Tensor src;      // i64 (B, S): words then eos, right-padded with pad
  Tensor tgt_in;   // i64 (B, T): bos then words, right-padded
  Tensor tgt_out;  // i64 (B, T): words then eos, right-padded
  int64_t B = 0, S = 0, T = 0;
  int64_t src_tokens = 0, tgt_tokens = 0;  // non-pad positions
  uint64_t hash = 0;                       // h = h * 1000003 + id over src, tgt_in, tgt_out (row-major)
};

// Sentence b has a source of ls and a target of lt positions, each uniform in [min_len, max_len]; the
// padded widths S and T are the longest of each side. Draw order: (ls, lt) for every sentence, then per
// sentence its ls - 1 source words and lt - 1 target words, uniform in [4, vocab).
Batch make_batch(int64_t B, int64_t min_len, int64_t max_len, int64_t vocab, uint64_t seed) {
  SplitMix64 rng{seed};
  std::vector<int64_t> ls(B), lt(B);
  for (int64_t b = 0; b < B; ++b) {
    ls[b] = rng.uniform(min_len, max_len);
    lt[b] = rng.uniform(min_len, max_len);
  }
  Batch batch;
  batch.B = B;
  for (int64_t b = 0; b < B; ++b) {
    batch.S = std::max(batch.S, ls[b]);
    batch.T = std::max(batch.T, lt[b]);
  }
  std::vector<int64_t> src(B * batch.S, kPadId), tin(B * batch.T, kPadId), tout(B * batch.T, kPadId);
  for (int64_t b = 0; b < B; ++b) {
    int64_t* s = &src[b * batch.S];
    for (int64_t i = 0; i + 1 < ls[b]; ++i) s[i] = rng.uniform(kFirstWordId, vocab - 1);
    s[ls[b] - 1] = kEosId;
    int64_t* ti = &tin[b * batch.T];
    int64_t* to = &tout[b * batch.T];
    ti[0] = kBosId;
    for (int64_t i = 0; i + 1 < lt[b]; ++i) {
      const int64_t w = rng.uniform(kFirstWordId, vocab - 1);
      ti[i + 1] = w;
      to[i] = w;
    }
    to[lt[b] - 1] = kEosId;
    batch.src_tokens += ls[b];
    batch.tgt_tokens += lt[b];
  }
  for (const auto* ids : {&src, &tin, &tout})
    for (int64_t v : *ids) batch.hash = batch.hash * 1000003ull + static_cast<uint64_t>(v);
  batch.src = px::from_vector(src, {B, batch.S}, px::DType::i64);
  batch.tgt_in = px::from_vector(tin, {B, batch.T}, px::DType::i64);
  batch.tgt_out = px::from_vector(tout, {B, batch.T}, px::DType::i64);
  return batch;
}

// Model FLOPs of one step over the padded positions (the work both frameworks do), 2 FLOPs per multiply-add
// and backward = 2 x forward for every product (dX and dW), so each weight costs 6 FLOPs per position:
//   6 * [ B*S * Le * (4 d^2 + 2 d dff)     encoder: qkv 3d^2 + out d^2, fc1 + fc2
//       + B*T * Ld * (6 d^2 + 2 d dff)     decoder: self qkv 3d^2 + out d^2, cross q d^2 + out d^2, fc1 + fc2
//       + B*S * Ld * 2 d^2                 decoder: cross-attention k, v of the encoder memory
//       + B*T * d * V ]                    output projection (tied or not)
//   + 12 * B * d * [Le * S^2 + Ld * (T^2 + T*S)]   attention scores Q K^T and P V: 2 x 2 B Tq Tk d forward, x 3
// Full T x T score matrices are counted (both frameworks compute them under the causal mask). Embedding
// lookups, softmax, layer norms, the loss and the optimizer are not counted (memory-bound).
double step_gflop(const tr::TranslatorOptions& o, const Batch& b) {
  const double d = o.d_model, f = o.d_ff, V = o.tgt_vocab, Le = o.encoder_layers, Ld = o.decoder_layers;
  const double Ns = static_cast<double>(b.B) * b.S, Nt = static_cast<double>(b.B) * b.T;
  const double S = b.S, T = b.T;
  const double weights = Ns * Le * (4 * d * d + 2 * d * f) + Nt * Ld * (6 * d * d + 2 * d * f) +
                         Ns * Ld * 2 * d * d + Nt * d * V;
  const double attention = 12.0 * b.B * d * (Le * S * S + Ld * (T * T + T * S));
  return (6.0 * weights + attention) * 1e-9;
}

bool flag(const pb::Args& args, const std::string& name, bool def) {
  const int64_t v = args.num(name, def ? 1 : 0);
  if (v != 0 && v != 1) throw px::UsageError(name + " must be 0 or 1");
  return v == 1;
}

void usage() {
  std::cout << "bench_translator_step [--threads N] [--warmup 2] [--reps 5] [--seed 1]\n"
               "  device: [--device cpu|cuda] [--precision f32|bf16] [--profile-step 0|1]\n"
               "  model: [--vocab 8000] [--d-model 256] [--heads 4] [--encoder-layers 3] [--decoder-layers 3]\n"
               "         [--d-ff 1024] [--dropout 0.1] [--attention-dropout 0] [--activation relu] [--pre-norm 1]\n"
               "         [--share-embeddings 1] [--tie-output 1]\n"
               "  batch: [--B 64] [--min-len 26] [--max-len 38] [--label-smoothing 0.1] [--lr 5e-4]\n"
               "  Times forward + loss, backward and the AdamW step of the translator on one fixed batch.\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const pb::Args args(argc, argv,
                        {"--threads", "--warmup", "--reps", "--seed", "--vocab", "--d-model", "--heads",
                         "--encoder-layers", "--decoder-layers", "--d-ff", "--dropout", "--attention-dropout",
                         "--activation", "--pre-norm", "--share-embeddings", "--tie-output", "--B", "--min-len",
                         "--max-len", "--label-smoothing", "--lr", "--device", "--precision", "--profile-step",
                         "--help"});
    if (args.has("--help")) {
      usage();
      return 0;
    }
    const int threads = static_cast<int>(args.num("--threads", px::default_num_threads()));
    const int warmup = static_cast<int>(args.num("--warmup", 2));
    const int reps = static_cast<int>(args.num("--reps", 5));
    const uint64_t seed = static_cast<uint64_t>(args.num("--seed", 1));
    if (threads < 1 || warmup < 0 || reps < 1) throw px::UsageError("--threads and --reps must be >= 1, --warmup >= 0");
    const std::string device_name = args.str("--device", "cpu"), precision = args.str("--precision", "f32");
    if (device_name != "cpu" && device_name != "cuda") throw px::UsageError("--device must be cpu or cuda");
    if (precision != "f32" && precision != "bf16") throw px::UsageError("--precision must be f32 or bf16");
    const bool profile_step = flag(args, "--profile-step", false);
    const bool on_gpu = device_name == "cuda";
    if (on_gpu) {
      std::string why;
      if (px::visible_gpus(&why).empty()) {
        std::cerr << "bench_translator_step: --device cuda: no usable GPU (" << why << ")\n";
        return 3;
      }
    }
    const px::Device device = on_gpu ? px::cuda(0) : px::cpu();
    const px::DType dtype = precision == "bf16" ? px::DType::bf16 : px::DType::f32;

    tr::TranslatorOptions o;
    o.src_vocab = o.tgt_vocab = args.num("--vocab", 8000);
    o.d_model = args.num("--d-model", 256);
    o.num_heads = args.num("--heads", 4);
    o.encoder_layers = args.num("--encoder-layers", 3);
    o.decoder_layers = args.num("--decoder-layers", 3);
    o.d_ff = args.num("--d-ff", 1024);
    o.dropout = args.real("--dropout", 0.1);
    o.attention_dropout = args.real("--attention-dropout", 0.0);
    o.activation = px::nn::parse_activation(args.str("--activation", "relu"));
    o.pre_norm = flag(args, "--pre-norm", true);
    o.share_embeddings = flag(args, "--share-embeddings", true);
    o.tie_output = flag(args, "--tie-output", true);
    o.pad_id = kPadId;
    tr::check_options(o);

    const int64_t B = args.num("--B", 64), min_len = args.num("--min-len", 26), max_len = args.num("--max-len", 38);
    const double label_smoothing = args.real("--label-smoothing", 0.1), lr = args.real("--lr", 5e-4);
    if (B < 1) throw px::UsageError("--B must be >= 1");
    if (min_len < 2 || max_len < min_len || max_len > o.max_positions)
      throw px::UsageError("--min-len/--max-len must satisfy 2 <= min <= max <= max_positions");
    if (o.tgt_vocab <= kFirstWordId) throw px::UsageError("--vocab must exceed the 4 special ids");

    px::set_num_threads(threads);
    px::Generator init_gen(seed), dropout_gen(seed + 1);
    tr::Translator model(o, init_gen, dropout_gen);
    model.train();
    if (on_gpu || dtype != px::DType::f32) model.to(device, dtype);  // before the optimizer: its state follows
    px::optim::AdamW opt(model.parameters(), lr, /*weight_decay=*/0.0, {0.9, 0.98, 1e-9});
    Batch batch = make_batch(B, min_len, max_len, o.tgt_vocab, seed);
    if (on_gpu) {
      batch.src = px::to_device(batch.src, device);
      batch.tgt_in = px::to_device(batch.tgt_in, device);
      batch.tgt_out = px::to_device(batch.tgt_out, device);
    }
    const double gflop = step_gflop(o, batch);
    // Between phases on a GPU when the split is measured: the host clock then sees each phase's device work.
    bool sync_phases = false;
    auto phase_end = [&] {
#ifdef PARALLAX_WITH_CUDA
      if (on_gpu && sync_phases) px::cuda_synchronize();
#endif
    };

    double first_loss = 0.0;
    auto step = [&](double* fwd_ms, double* bwd_ms, double* opt_ms) {
      const double t0 = pb::now_ms();
      opt.zero_grad();
      Tensor logits = model.forward(batch.src, batch.tgt_in);
      Tensor loss = tr::translation_loss(logits, batch.tgt_out, kPadId, label_smoothing) *
                    (1.0 / static_cast<double>(batch.tgt_tokens));
      phase_end();
      const double t1 = pb::now_ms();
      px::backward(loss);
      phase_end();
      const double t2 = pb::now_ms();
      opt.step();
      const double value = on_gpu ? loss.item() : 0.0;  // on a GPU: waits for the step's device work
      const double t3 = pb::now_ms();
      *fwd_ms = t1 - t0;
      *bwd_ms = t2 - t1;
      *opt_ms = t3 - t2;
      return on_gpu ? value : loss.item();
    };
    double f = 0, b = 0, u = 0;
    for (int w = 0; w < warmup; ++w) {
      const double l = step(&f, &b, &u);
      if (w == 0) first_loss = l;
    }
    std::vector<double> total, fwd, bwd, upd, cpu;
    if (on_gpu) {
      // The step as training runs it (no syncs between phases): its time is the total; the phases come after.
      for (int r = 0; r < reps; ++r) {
        const double c0 = pb::cpu_now_ms();
        const double l = step(&f, &b, &u);
        cpu.push_back(pb::cpu_now_ms() - c0);
        if (warmup == 0 && r == 0) first_loss = l;
        total.push_back(f + b + u);
      }
      sync_phases = true;
      for (int r = 0; r < reps; ++r) {
        step(&f, &b, &u);
        fwd.push_back(f);
        bwd.push_back(b);
        upd.push_back(u);
      }
    }
    for (int r = 0; r < (on_gpu ? 0 : reps); ++r) {
      const double c0 = pb::cpu_now_ms();
      const double l = step(&f, &b, &u);
      cpu.push_back(pb::cpu_now_ms() - c0);
      if (warmup == 0 && r == 0) first_loss = l;
      total.push_back(f + b + u);
      fwd.push_back(f);
      bwd.push_back(b);
      upd.push_back(u);
    }
    int64_t peak_bytes = 0, reserved_bytes = 0;
#ifdef PARALLAX_WITH_CUDA
    if (on_gpu) {
      const px::CudaAllocatorStats st = px::cuda_caching_allocator().stats();
      peak_bytes = static_cast<int64_t>(st.peak_allocated_bytes);
      reserved_bytes = static_cast<int64_t>(st.reserved_bytes);
      if (profile_step) {
        sync_phases = false;
        px::cuda_synchronize();
        px::cuda_profiler_start();
        step(&f, &b, &u);
        px::cuda_profiler_stop();
      }
    }
#endif
    (void)profile_step;
    const double med = pb::median(total);
    std::printf(
        "{\"impl\": \"parallax\", \"threads\": %d, \"B\": %ld, \"S\": %ld, \"T\": %ld, \"src_tokens\": %ld, "
        "\"tgt_tokens\": %ld, \"batch_hash\": \"%016lx\", \"params\": %ld, \"gflop\": %.4f, \"first_loss\": %.4f, "
        "\"peak_gflops\": %.0f, \"median_ms\": %.3f, \"min_ms\": %.3f, \"cpu_median_ms\": %.3f, \"fwd_ms\": %.3f, "
        "\"bwd_ms\": %.3f, \"opt_ms\": %.3f, \"gflops\": %.2f, \"device\": \"%s\", \"precision\": \"%s\", "
        "\"tokens_per_s\": %.1f, \"peak_mem_bytes\": %ld, \"reserved_mem_bytes\": %ld}\n",
        threads, batch.B, batch.S, batch.T, batch.src_tokens, batch.tgt_tokens,
        static_cast<unsigned long>(batch.hash), model.num_parameters(), gflop, first_loss,
        on_gpu ? 0.0 : pb::measured_fma_gflops(threads, 100.0), med, pb::min_of(total), pb::median(cpu),
        pb::median(fwd), pb::median(bwd), pb::median(upd), gflop / (med * 1e-3), device_name.c_str(),
        precision.c_str(), static_cast<double>(batch.tgt_tokens) / (med * 1e-3), static_cast<long>(peak_bytes),
        static_cast<long>(reserved_bytes));
  } catch (const std::exception& e) {
    std::cerr << "bench_translator_step: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

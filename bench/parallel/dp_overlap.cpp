// bench/parallel/dp_overlap.cpp (bench_dp_overlap): how much of the data-parallel gradient all-reduce a
// translator training step exposes, with GradBucketer's overlap on and off, against the compute-only step.
//
// Run under mpirun (one thread per rank: PARALLAX_NUM_THREADS=1) with a spare core per rank for the MPI
// communication thread: `mpirun --bind-to none` or `--map-by slot:PE=2`. Open MPI binds each rank to a
// single core by default, and the communication thread then time-slices with backward, so nothing overlaps
// (measured on a 16-core Xeon, dp 2: overlap exposed 9.7 % bound to one core vs 1.8 % unbound).
// Each rank trains the same translator on its own synthetic batch. Three step kinds, interleaved in a rotating
// order within every repetition so that load changes hit all of them alike:
//   compute  forward + loss + backward + AdamW, no communication (both bucketers' sync off, hooks idle);
//   overlap  the same with GradBucketer(overlap = true): buckets all-reduce while backward runs, finish() waits;
//   serial   GradBucketer(overlap = false): every bucket starts in finish(), after backward.
// A barrier precedes every timed step; a step's time is the slowest rank's. exposed = step - compute (the
// communication the step did not hide); wait = finish()'s time blocked on all-reduces. The goal is
// exposed / step <= 10 % with overlap on. `allreduce` is one all-reduce of the whole gradient (one buffer):
// the communication there is to hide; `copies` is GradBucketer's own memory traffic per step (the gradient
// copied into the bucket buffers and back), part of the exposed time that no overlap hides.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/util/error.h"
#include "models/translator/transformer.h"
#include "parallel/comm/world.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/grid.h"

namespace {

using px::Tensor;
namespace pb = px::bench;
namespace par = px::parallel;
namespace tr = px::translator;

constexpr int64_t kPadId = 0, kBosId = 2, kFirstWordId = 4;  // data/tokenizer.h's special ids

// A batch of B sentences of `len` tokens on both sides (no padding), ids uniform in [4, vocab) from seed.
struct Batch {
  Tensor src, tgt_in, tgt_out;  // i64 (B, len) each
  int64_t tgt_tokens = 0;
};
Batch make_batch(int64_t B, int64_t len, int64_t vocab, uint64_t seed) {
  px::Generator gen(seed);
  const std::vector<double> u = px::to_vector(px::rand({3, B, len}, gen, 0.0, 1.0, px::DType::f64));
  auto ids = [&](int64_t part) {
    std::vector<int64_t> v(B * len);
    for (int64_t i = 0; i < B * len; ++i)
      v[i] = kFirstWordId + static_cast<int64_t>(u[part * B * len + i] * static_cast<double>(vocab - kFirstWordId));
    return v;
  };
  std::vector<int64_t> tgt = ids(1), tgt_in(B * len);
  for (int64_t b = 0; b < B; ++b) {
    tgt_in[b * len] = kBosId;
    for (int64_t t = 1; t < len; ++t) tgt_in[b * len + t] = tgt[b * len + t - 1];
  }
  Batch batch;
  batch.src = px::from_vector(ids(0), {B, len}, px::DType::i64);
  batch.tgt_in = px::from_vector(tgt_in, {B, len}, px::DType::i64);
  batch.tgt_out = px::from_vector(tgt, {B, len}, px::DType::i64);
  batch.tgt_tokens = B * len;
  return batch;
}

enum class Kind { compute, overlap, serial };
constexpr Kind kKinds[] = {Kind::compute, Kind::overlap, Kind::serial};
const char* kind_name(Kind k) { return k == Kind::compute ? "compute" : k == Kind::overlap ? "overlap" : "serial"; }

// The largest of every rank's values, element by element (a few scalars; outside the timed region).
std::vector<double> max_over_ranks(par::ProcessGroup& group, const std::vector<double>& values) {
  const Tensor t = px::from_vector(values, {static_cast<int64_t>(values.size())}, px::DType::f64);
  group.all_reduce(t, par::ReduceOp::max)->wait();
  return px::to_vector(t);
}

void usage() {
  std::cout << "mpirun -np 2 bench_dp_overlap [--warmup 1] [--reps 5] [--seed 1] [--bucket-mb 25]\n"
               "  model: [--vocab 8000] [--d-model 512] [--heads 8] [--encoder-layers 6] [--decoder-layers 6]\n"
               "         [--d-ff 2048]   batch per rank: [--B 8] [--len 32]\n"
               "  Step time with GradBucketer overlap on / off vs the compute-only step; set PARALLAX_NUM_THREADS=1\n"
               "  and give each rank a spare core for the communication thread (mpirun --bind-to none).\n";
}

int run(int argc, char** argv) {
  const pb::Args args(argc, argv,
                      {"--warmup", "--reps", "--seed", "--bucket-mb", "--vocab", "--d-model", "--heads",
                       "--encoder-layers", "--decoder-layers", "--d-ff", "--B", "--len", "--help"});
  if (args.has("--help")) {
    usage();
    return 0;
  }
  const int warmup = static_cast<int>(args.num("--warmup", 1)), reps = static_cast<int>(args.num("--reps", 5));
  const uint64_t seed = static_cast<uint64_t>(args.num("--seed", 1));
  const double bucket_mb = args.real("--bucket-mb", 25);
  const int64_t B = args.num("--B", 8), len = args.num("--len", 32);
  if (warmup < 0 || reps < 1 || bucket_mb <= 0 || B < 1 || len < 2)
    throw px::UsageError("--reps, --B >= 1, --len >= 2, --bucket-mb > 0 and --warmup >= 0 are required");

  tr::TranslatorOptions o;
  o.src_vocab = o.tgt_vocab = args.num("--vocab", 8000);
  o.d_model = args.num("--d-model", 512);
  o.num_heads = args.num("--heads", 8);
  o.encoder_layers = args.num("--encoder-layers", 6);
  o.decoder_layers = args.num("--decoder-layers", 6);
  o.d_ff = args.num("--d-ff", 2048);
  o.dropout = 0.1;
  o.pre_norm = true;
  o.share_embeddings = o.tie_output = true;
  o.pad_id = kPadId;
  tr::check_options(o);
  if (o.tgt_vocab <= kFirstWordId) throw px::UsageError("--vocab must exceed the 4 special ids");
  if (len > o.max_positions) throw px::UsageError("--len must be <= max_positions");

  par::World world;
  par::ParallelGrid grid(world.group(), /*tp=*/1);
  par::ProcessGroup& dp = grid.dp();
  const bool root = dp.rank() == 0;
  const int threads = px::default_num_threads(world.placement().local_size);
  px::set_num_threads(threads);

  px::Generator init_gen(seed), dropout_gen(seed + 1 + dp.rank());
  tr::Translator model(o, init_gen, dropout_gen);
  model.train();
  const std::vector<Tensor> params = model.parameters();
  px::optim::AdamW opt(params, /*lr=*/1e-4, /*weight_decay=*/0.0, {0.9, 0.98, 1e-9});
  const auto bucket_bytes = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  par::GradBucketer overlapped(params, dp, {bucket_bytes, par::ReduceOp::sum, /*overlap=*/true, /*wire_dtype=*/std::nullopt});
  par::GradBucketer serial(params, dp, {bucket_bytes, par::ReduceOp::sum, /*overlap=*/false, /*wire_dtype=*/std::nullopt});
  const Batch batch = make_batch(B, len, o.tgt_vocab, seed + 100 + dp.rank());
  const double global_tokens = static_cast<double>(batch.tgt_tokens) * dp.size();

  // One step of `kind`: {milliseconds, finish()'s wait in milliseconds}.
  auto step = [&](Kind kind) {
    par::GradBucketer* bucketer = kind == Kind::overlap ? &overlapped : kind == Kind::serial ? &serial : nullptr;
    overlapped.set_sync(bucketer == &overlapped);
    serial.set_sync(bucketer == &serial);
    dp.barrier()->wait();
    const double t0 = pb::now_ms();
    opt.zero_grad();
    const Tensor logits = model.forward(batch.src, batch.tgt_in);
    const Tensor loss = tr::translation_loss(logits, batch.tgt_out, kPadId, 0.1) * (1.0 / global_tokens);
    px::backward(loss);
    if (bucketer) bucketer->finish();
    opt.step();
    const double ms = pb::now_ms() - t0;
    return max_over_ranks(dp, {ms, bucketer ? bucketer->last_wait_seconds() * 1e3 : 0.0});
  };

  // The whole gradient in one buffer, all-reduced alone: the communication volume without any compute.
  int64_t numel = 0;
  for (const Tensor& p : params) numel += p.numel();
  const Tensor flat = px::zeros({numel});
  auto allreduce_ms = [&] {
    dp.barrier()->wait();
    const double t0 = pb::now_ms();
    dp.all_reduce(flat, par::ReduceOp::sum)->wait();
    return max_over_ranks(dp, {pb::now_ms() - t0})[0];
  };
  // What GradBucketer adds to every synchronised step besides the all-reduce: the whole gradient copied into
  // the bucket buffers and the reduced values copied back (two copies of `numel` elements).
  const Tensor grads = px::zeros({numel});
  auto copies_ms = [&] {
    px::Backend& be = px::backend_for(flat.device());
    const double t0 = pb::now_ms();
    be.copy(grads, flat);
    be.copy(flat, grads);
    return pb::now_ms() - t0;
  };

  for (int w = 0; w < warmup; ++w) {
    for (Kind k : kKinds) step(k);
    allreduce_ms();
  }
  std::vector<double> step_ms[3], wait_ms[3], comm_ms, copy_ms;
  for (int r = 0; r < reps; ++r) {
    for (int i = 0; i < 3; ++i) {
      const int k = (i + r) % 3;  // rotate which kind goes first
      const std::vector<double> m = step(kKinds[k]);
      step_ms[k].push_back(m[0]);
      wait_ms[k].push_back(m[1]);
    }
    comm_ms.push_back(allreduce_ms());
    copy_ms.push_back(copies_ms());
  }

  if (root) {
    const double compute = pb::median(step_ms[0]);
    std::printf("bench_dp_overlap: dp %d, %d thread(s)/rank, params %ld (%.1f MiB f32), %d buckets of <= %.0f MiB, "
                "B %ld x len %ld per rank, %d reps (median), load %s\n",
                dp.size(), threads, static_cast<long>(numel), numel * 4.0 / (1024 * 1024), overlapped.num_buckets(),
                bucket_mb, static_cast<long>(B), static_cast<long>(len), reps, pb::load_average().c_str());
    std::printf("whole-gradient all_reduce alone: %.1f ms; gradient copied into buckets and back: %.1f ms\n",
                pb::median(comm_ms), pb::median(copy_ms));
    std::printf("%-8s %10s %10s %12s %10s %10s\n", "mode", "step_ms", "wait_ms", "exposed_ms", "exposed%", "min_step");
    for (int k = 0; k < 3; ++k) {
      const double s = pb::median(step_ms[k]), exposed = s - compute;
      std::printf("%-8s %10.1f %10.1f %12.1f %9.1f%% %10.1f\n", kind_name(kKinds[k]), s, pb::median(wait_ms[k]),
                  exposed, 100.0 * exposed / s, pb::min_of(step_ms[k]));
    }
    const double on = pb::median(step_ms[1]), off = pb::median(step_ms[2]);
    std::printf("SUMMARY bench_dp_overlap dp=%d threads=%d compute_ms=%.1f overlap_ms=%.1f serial_ms=%.1f "
                "allreduce_ms=%.1f exposed_overlap=%.3f exposed_serial=%.3f goal<=0.10 %s\n",
                dp.size(), threads, compute, on, off, pb::median(comm_ms), (on - compute) / on, (off - compute) / off,
                (on - compute) / on <= 0.10 ? "MET" : "NOT_MET");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_dp_overlap: " << e.what() << "\n";
    return 2;
  }
}

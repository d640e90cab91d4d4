// bench/cuda/adamw.cpp: one AdamW step over a Transformer's parameters on CUDA, the fused multi-tensor kernel
// (Backend::adamw, a few launches per step) against the device-generic path it replaced (about ten elementwise ops
// and their temporaries per parameter), interleaved in one run; prints the median ms of each and the ratio.
//
//   bench_cuda_adamw [--reps 9] [--layers 6] [--d-model 512] [--ffn 2048] [--vocab 32000]
//
// The parameters are those of an encoder-decoder Transformer (`--layers` of each; base: ~60M). Bytes per element of
// the fused step: f32 parameters read p, g, m, v and write p, m, v (28 B); bf16 ones read the f32 master, g, m, v
// and write master, m, v and the bf16 parameter (30 B). Read the GB/s against HBM's ~3.3 (H100) or ~4.8 (H200) TB/s.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"

namespace px {
namespace {

// The shapes of an encoder-decoder Transformer's parameters: embeddings, per layer attention (fused QKV and the
// output projection; the decoder adds cross-attention), feed-forward and layer norms (weights and biases).
std::vector<Shape> transformer_shapes(int64_t layers, int64_t d, int64_t ffn, int64_t vocab) {
  std::vector<Shape> s{{vocab, d}};
  const auto attention = [&] {
    for (const Shape& t : {Shape{3 * d, d}, Shape{3 * d}, Shape{d, d}, Shape{d}}) s.push_back(t);
  };
  const auto feed_forward = [&] {
    for (const Shape& t : {Shape{ffn, d}, Shape{ffn}, Shape{d, ffn}, Shape{d}}) s.push_back(t);
  };
  const auto norm = [&] {
    s.push_back({d});
    s.push_back({d});
  };
  for (int64_t l = 0; l < layers; ++l) {
    attention();
    norm();
    feed_forward();
    norm();
  }
  for (int64_t l = 0; l < layers; ++l) {
    attention();
    norm();
    attention();
    norm();
    feed_forward();
    norm();
  }
  norm();
  norm();
  return s;
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv, {"--reps", "--layers", "--d-model", "--ffn", "--vocab"});
  const int reps = static_cast<int>(args.num("--reps", 9));
  const int64_t layers = args.num("--layers", 6), d = args.num("--d-model", 512), ffn = args.num("--ffn", 2048);
  const int64_t vocab = args.num("--vocab", 32000);
  std::string why;
  if (visible_gpus(&why).empty()) {
    std::printf("bench_cuda_adamw: no usable GPU (%s)\n", why.c_str());
    return 1;
  }
  const std::vector<Shape> shapes = transformer_shapes(layers, d, ffn, vocab);
  int64_t elements = 0;
  for (const Shape& s : shapes) elements += shape_numel(s);
  std::printf("AdamW step over %zu tensors, %.1fM parameters (layers %lld, d_model %lld, ffn %lld, vocab %lld); "
              "%d reps, median ms\n",
              shapes.size(), static_cast<double>(elements) * 1e-6, static_cast<long long>(layers),
              static_cast<long long>(d), static_cast<long long>(ffn), static_cast<long long>(vocab), reps);
  std::printf("%-5s %10s %11s %9s %12s\n", "dtype", "fused_ms", "generic_ms", "gen/fused", "fused_GB/s");
  Generator gen(1);
  for (DType dtype : {DType::f32, DType::bf16}) {
    std::vector<Tensor> params;
    for (const Shape& s : shapes) {
      Tensor p = to_device(to_dtype(mul(randn(s, gen), 0.02), dtype), cuda()).set_requires_grad(true);
      p.set_grad(to_device(mul(randn(s, gen), 1e-3), cuda()));  // the master dtype: f32
      params.push_back(p);
    }
    optim::AdamW fused(params, 1e-4, 0.01), generic(params, 1e-4, 0.01);
    generic.set_fused(false);
    const auto time_one = [&](optim::AdamW& opt) {
      cuda_synchronize();
      const double t0 = bench::now_ms();
      opt.step();
      cuda_synchronize();
      return bench::now_ms() - t0;
    };
    time_one(fused);  // warm-up: the state's allocation, the allocator's blocks for the temporaries
    time_one(generic);
    std::vector<double> f, g;
    for (int r = 0; r < reps; ++r) {  // A B B A ...
      if (r % 2 == 0) {
        f.push_back(time_one(fused));
        g.push_back(time_one(generic));
      } else {
        g.push_back(time_one(generic));
        f.push_back(time_one(fused));
      }
    }
    const double mf = bench::median(f), mg = bench::median(g);
    const double bytes = static_cast<double>(elements) * (dtype == DType::f32 ? 28.0 : 30.0);
    std::printf("%-5s %10.3f %11.3f %9.2f %12.1f\n", dtype_name(dtype), mf, mg, mg / mf, bytes / mf * 1e-6);
  }
  return 0;
}

}  // namespace
}  // namespace px

int main(int argc, char** argv) { return px::run(argc, argv); }

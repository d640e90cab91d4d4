// bench/cuda/index_add.cpp: the deterministic CUDA index_add (sort + segmented sums, the embedding backward)
// against the atomicAdd kernel it replaced, interleaved in one run; prints the median ms of each and the ratio.
//
//   bench_cuda_index_add [--reps 9] [--tokens 16384] [--vocab 32000] [--dim 512]
//
// Bytes: the atomic kernel reads src (L x C) and index and read-modify-writes L x C elements of out; the
// deterministic one adds the sort (4 passes over 16 bytes per token), the piece sums (src read, partial write)
// and the totals (partial read, out read+write of the touched rows). Read the GB/s against HBM's ~3.3 (H100) or
// ~4.8 (H200) TB/s. Rows: uniform ids, ids with half the tokens on one id (a padding-like segment), and a Zipf
// vocabulary, in f32 and bf16.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_kernels.h"
#include "core/ops/ops.h"

namespace px {
namespace {

// n ids below v: "uniform", "padded" (every other id 0) or "zipf" (p(k) ~ 1 / (k + 1)).
Tensor make_ids(const std::string& kind, int64_t n, int64_t v, Generator& gen) {
  const std::vector<double> u = to_vector(rand({n}, gen));
  std::vector<int64_t> ids(static_cast<size_t>(n));
  const double h = std::log(static_cast<double>(v) + 1.0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = static_cast<int64_t>(u[i] * static_cast<double>(v));
    if (kind == "padded" && i % 2 == 0) k = 0;
    if (kind == "zipf") k = static_cast<int64_t>(std::exp(u[i] * h)) - 1;
    ids[i] = std::min(std::max<int64_t>(k, 0), v - 1);
  }
  return to_device(from_vector(ids, {n}), cuda());
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv, {"--reps", "--tokens", "--vocab", "--dim"});
  const int reps = static_cast<int>(args.num("--reps", 9));
  const int64_t l = args.num("--tokens", 16384), v = args.num("--vocab", 32000), c = args.num("--dim", 512);
  std::string why;
  if (visible_gpus(&why).empty()) {
    std::printf("bench_cuda_index_add: no usable GPU (%s)\n", why.c_str());
    return 1;
  }
  std::printf("index_add: out (%lld, %lld) += src (%lld, %lld) rows at ids (%lld); %d reps, median ms\n",
              static_cast<long long>(v), static_cast<long long>(c), static_cast<long long>(l),
              static_cast<long long>(c), static_cast<long long>(l), reps);
  std::printf("%-8s %-5s %10s %10s %8s %12s %12s\n", "ids", "dtype", "det_ms", "atomic_ms", "det/atom", "det_GB/s",
              "atomic_GB/s");
  Generator gen(1);
  for (DType dtype : {DType::f32, DType::bf16})
    for (const std::string kind : {"uniform", "padded", "zipf"}) {
      const Tensor ids = make_ids(kind, l, v, gen);
      const Tensor src = to_device(to_dtype(randn({l, c}, gen), dtype), cuda());
      const Tensor out = zeros({v, c}, dtype, cuda());
      const auto time_one = [&](gpu::Impl impl) {
        cuda_synchronize();
        const double t0 = bench::now_ms();
        gpu::index_add(out, 0, ids, src, impl);
        cuda_synchronize();
        return bench::now_ms() - t0;
      };
      time_one(gpu::Impl::fast);  // warm-up: the allocator's blocks, the sort's first launch
      time_one(gpu::Impl::atomic);
      std::vector<double> det, atomic;
      for (int r = 0; r < reps; ++r) {  // A B B A ...
        if (r % 2 == 0) {
          det.push_back(time_one(gpu::Impl::fast));
          atomic.push_back(time_one(gpu::Impl::atomic));
        } else {
          atomic.push_back(time_one(gpu::Impl::atomic));
          det.push_back(time_one(gpu::Impl::fast));
        }
      }
      const double md = bench::median(det), ma = bench::median(atomic);
      const double es = static_cast<double>(dtype_size(dtype));
      const double atomic_bytes = static_cast<double>(l) * (8 + 3 * c * es);
      const double det_bytes = static_cast<double>(l) * (4 * 16 + 8 + c * es + 2 * 4 * c) + 2 * l * c * es;
      std::printf("%-8s %-5s %10.3f %10.3f %8.2f %12.1f %12.1f\n", kind.c_str(), dtype_name(dtype), md, ma, md / ma,
                  det_bytes / md * 1e-6, atomic_bytes / ma * 1e-6);
    }
  return 0;
}

}  // namespace
}  // namespace px

int main(int argc, char** argv) { return px::run(argc, argv); }

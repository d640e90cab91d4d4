// bench/gemm.cpp (bench_gemm): Parallax Linear forward+backward (y = x W^T, dX = gy W, dW = gy^T x)
// against the same three raw cblas_sgemm calls, interleaved in one run; prints GFLOP/s and the ratio.
#include <cblas.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"

namespace {

using px::Tensor;
namespace pb = px::bench;

// x (M, K), W (N, K): y = x W^T is (M, N); each of the three GEMMs costs 2 M N K FLOPs.
struct GemmShape {
  std::string name;
  int64_t M, K, N;
};

std::vector<GemmShape> parse_shapes(const std::string& list) {
  std::vector<GemmShape> out;
  std::stringstream ss(list);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.empty()) continue;
    if (tok == "tf") {
      out.push_back({"tf(BT=4096,C=1024->4096)", 4096, 1024, 4096});
    } else if (tok.find('x') != std::string::npos) {
      int64_t m = 0, k = 0, n = 0;
      if (std::sscanf(tok.c_str(), "%ldx%ldx%ld", &m, &k, &n) != 3) throw std::runtime_error("bad shape " + tok);
      out.push_back({tok, m, k, n});
    } else {
      const int64_t s = std::stoll(tok);
      out.push_back({std::to_string(s) + "^3", s, s, s});
    }
  }
  return out;
}

// Largest |a - b| over the largest |b|: both sides compute the same products, so this is tiny.
double rel_diff(const float* a, const float* b, int64_t n) {
  double md = 0.0, mb = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    md = std::max(md, static_cast<double>(std::fabs(a[i] - b[i])));
    mb = std::max(mb, static_cast<double>(std::fabs(b[i])));
  }
  return mb > 0.0 ? md / mb : md;
}

const float* host_f32(const Tensor& t) {
  CHECK(t.defined() && t.is_contiguous()) << "expected a contiguous tensor";
  return t.data<float>();
}

void usage() {
  std::cout << "bench_gemm [--threads N] [--reps R] [--warmup W] [--shapes 512,1024,2048,4096,tf,MxKxN]\n"
               "           [--quick] [--bias] [--min-sample-ms T]\n"
               "  Times Parallax linear forward+backward and the same 3 cblas_sgemm calls, interleaved.\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    pb::Args args(argc, argv,
                  {"--threads", "--reps", "--warmup", "--shapes", "--quick", "--bias", "--min-sample-ms", "--help"});
    if (args.has("--help")) {
      usage();
      return 0;
    }
    const int threads = static_cast<int>(args.num("--threads", px::default_num_threads()));
    const bool quick = args.has("--quick");
    const int reps = static_cast<int>(args.num("--reps", quick ? 5 : 7));
    const int warmup = static_cast<int>(args.num("--warmup", 1));
    const bool bias = args.has("--bias");
    const double min_sample_ms = args.real("--min-sample-ms", 100.0);
    const auto shapes = parse_shapes(args.str("--shapes", quick ? "512,1024" : "512,1024,2048,4096,tf"));

    px::set_num_threads(threads);  // OpenMP and OpenBLAS (the raw peer runs in the same library)
    const pb::Peak peak = pb::cpu_peak();
    std::printf("# bench_gemm: Parallax linear fwd+bwd (%s) vs raw cblas_sgemm x3, threads=%d, reps=%d (median)\n",
                bias ? "with bias: +db = sum(gy) and +b broadcast, not in the raw peer" : "no bias: exactly 3 GEMMs",
                threads, reps);
    const double fma_peak = pb::measured_fma_gflops(threads);
    std::printf("# cpu:%s, nominal %.0f MHz x %d FLOP/cycle x %d threads = %.0f GFLOP/s; measured FMA peak %.0f GFLOP/s"
                " (%%peak uses it); load %s\n",
                peak.model.c_str(), peak.mhz, peak.flops_per_cycle, threads, peak.gflops(threads), fma_peak,
                pb::load_average().c_str());
    std::printf("%-26s %9s %10s %10s %10s %10s %9s %7s %9s\n", "shape(MxKxN)", "GFLOP", "px_ms", "raw_ms",
                "px_GF/s", "raw_GF/s", "px/raw", "%peak", "maxrel");

    px::Generator gen(1234);
    for (const auto& s : shapes) {
      const int64_t M = s.M, K = s.K, N = s.N;
      const double gflop = 3.0 * 2.0 * static_cast<double>(M) * N * K * 1e-9;

      Tensor x = px::randn({M, K}, gen);
      Tensor W = px::randn({N, K}, gen) * (1.0 / std::sqrt(static_cast<double>(K)));
      W = W.detach();
      Tensor b = bias ? px::randn({N}, gen) : Tensor();
      Tensor gy = px::randn({M, N}, gen);
      x.set_requires_grad(true);
      W.set_requires_grad(true);
      if (bias) b.set_requires_grad(true);

      // Raw peer: same inputs, preallocated outputs, no autograd.
      std::vector<float> rx(host_f32(x), host_f32(x) + M * K), rW(host_f32(W), host_f32(W) + N * K),
          rgy(host_f32(gy), host_f32(gy) + M * N);
      std::vector<float> ry(M * N), rdx(M * K), rdw(N * K);

      Tensor last_y;
      auto run_px = [&] {
        x.set_grad(Tensor());
        W.set_grad(Tensor());
        if (bias) b.set_grad(Tensor());
        Tensor y = px::linear(x, W, b);
        px::backward(y, gy);
        last_y = y.detach();
      };
      auto run_raw = [&] {
        // y (M,N) = x (M,K) W^T;  dX (M,K) = gy (M,N) W (N,K);  dW (N,K) = gy^T (N,M) x (M,K)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, rx.data(), K, rW.data(), K, 0.f,
                    ry.data(), N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.f, rgy.data(), N, rW.data(), K, 0.f,
                    rdx.data(), K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.f, rgy.data(), N, rx.data(), K, 0.f,
                    rdw.data(), K);
      };

      // Warm-up (also sizes the inner loop so small shapes are not timer noise), then check results.
      double one_px = 0, one_raw = 0;
      for (int w = 0; w < std::max(1, warmup); ++w) {
        one_px = pb::time_ms(run_px, 1);
        one_raw = pb::time_ms(run_raw, 1);
      }
      double maxrel = 0.0;
      if (!bias) {
        maxrel = std::max({rel_diff(host_f32(last_y), ry.data(), M * N),
                           rel_diff(host_f32(px::contiguous(x.grad())), rdx.data(), M * K),
                           rel_diff(host_f32(px::contiguous(W.grad())), rdw.data(), N * K)});
      }
      const int inner_px = pb::inner_for(one_px, min_sample_ms), inner_raw = pb::inner_for(one_raw, min_sample_ms);

      std::vector<double> t_px, t_raw;
      for (int r = 0; r < reps; ++r) {  // interleaved, alternating who goes first
        if (r % 2 == 0) {
          t_px.push_back(pb::time_ms(run_px, inner_px));
          t_raw.push_back(pb::time_ms(run_raw, inner_raw));
        } else {
          t_raw.push_back(pb::time_ms(run_raw, inner_raw));
          t_px.push_back(pb::time_ms(run_px, inner_px));
        }
      }
      const double mp = pb::median(t_px), mr = pb::median(t_raw);
      const double gp = gflop / (mp * 1e-3), gr = gflop / (mr * 1e-3);
      char shape_txt[64];
      std::snprintf(shape_txt, sizeof shape_txt, "%s", s.name.c_str());
      std::printf("%-26s %9.2f %10.2f %10.2f %10.1f %10.1f %9.3f %6.0f%% %9.1e\n", shape_txt, gflop, mp, mr, gp, gr,
                  mr / mp, 100.0 * gp / fma_peak, maxrel);
      std::printf("SUMMARY bench_gemm shape=%s M=%ld K=%ld N=%ld threads=%d px_ms=%.3f raw_ms=%.3f px_gflops=%.1f "
                  "raw_gflops=%.1f ratio_px_over_raw=%.3f\n",
                  s.name.c_str(), M, K, N, threads, mp, mr, gp, gr, mr / mp);
      std::fflush(stdout);
    }
    std::printf("# px/raw = raw_ms / px_ms (throughput ratio; target >= 0.90). load at end %s\n",
                pb::load_average().c_str());
  } catch (const std::exception& e) {
    std::cerr << "bench_gemm: " << e.what() << "\n";
    usage();
    return 2;
  }
  return 0;
}

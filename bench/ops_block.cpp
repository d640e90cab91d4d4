// bench/ops_block.cpp (bench_ops): a Transformer-sized block of Parallax ops, forward + backward,
// mirrored op for op by bench/ops_block_torch.py; prints one JSON line (median ms, GFLOP/s).
//
// The block (N = B*T rows, C channels, H heads of D = C/H, V vocab):
//   h = layer_norm(x) ; u = dropout(gelu(linear(h, W1, b1)), 0.1) ; r = x + linear(u, W2, b2)
//   q = heads(r) (B,H,T,D) ; p = softmax((q q^T / sqrt(D)) as (B*H*T, T)) ; o = merge(p @ q)
//   loss = cross_entropy(linear(o, Wv, bv), target, label_smoothing = 0.1) ; backward(loss)
// --breakdown times each stage alone (forward + backward with a random upstream gradient).
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"

namespace {

using px::Tensor;
namespace pb = px::bench;

struct Sizes {
  int64_t B, T, C, H, V;
  int64_t N() const { return B * T; }
  int64_t D() const { return C / H; }
};

// GEMM FLOPs of one forward + backward (backward = 2 x forward for every product).
double block_gflop(const Sizes& s) {
  const double N = s.N(), C = s.C, T = s.T, V = s.V;
  const double fwd = 2.0 * N * C * 4 * C      // linear C -> 4C
                     + 2.0 * N * 4 * C * C    // linear 4C -> C
                     + 2.0 * N * T * C        // scores q q^T (B*H*T*T*D = N*T*C MACs)
                     + 2.0 * N * T * C        // p @ q
                     + 2.0 * N * C * V;       // linear C -> V
  return 3.0 * fwd * 1e-9;
}

// Rough least bytes moved by the non-GEMM ops (f32 reads + writes, forward + backward): a floor
// for the memory-bound part of the block.
double block_nongemm_gbytes(const Sizes& s) {
  const double NC = static_cast<double>(s.N()) * s.C, S = static_cast<double>(s.N()) * s.H * s.T,
               NV = static_cast<double>(s.N()) * s.V;
  // layer_norm 5NC, gelu 20NC, dropout 16NC, residual 4NC, head permutes 8NC, scale 4S,
  // softmax 5S, cross_entropy 3NV (+ bias grads and grad accumulation, ~NC each)
  return 4.0 * (55.0 * NC + 9.0 * S + 3.0 * NV) * 1e-9;
}

struct Params {
  Tensor x, ln_w, ln_b, W1, b1, W2, b2, Wv, bv, target;
  std::vector<Tensor> leaves() const { return {x, ln_w, ln_b, W1, b1, W2, b2, Wv, bv}; }
};

Tensor scaled(const Tensor& t, double s) { return (t * s).detach(); }

Params make_params(const Sizes& s, px::Generator& gen) {
  Params p;
  const int64_t N = s.N(), C = s.C, V = s.V;
  p.x = px::randn({N, C}, gen);
  p.ln_w = px::ones({C});
  p.ln_b = px::zeros({C});
  p.W1 = scaled(px::randn({4 * C, C}, gen), 1.0 / std::sqrt(double(C)));
  p.b1 = px::zeros({4 * C});
  p.W2 = scaled(px::randn({C, 4 * C}, gen), 1.0 / std::sqrt(double(4 * C)));
  p.b2 = px::zeros({C});
  p.Wv = scaled(px::randn({V, C}, gen), 1.0 / std::sqrt(double(C)));
  p.bv = px::zeros({V});
  for (auto& t : p.leaves()) t.set_requires_grad(true);
  std::vector<int64_t> tgt(N);
  uint64_t state = 88172645463325252ull;  // xorshift: labels need not match torch's, only the cost
  for (auto& v : tgt) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    v = static_cast<int64_t>(state % static_cast<uint64_t>(V));
  }
  p.target = px::from_vector(tgt, {N}, px::DType::i64);
  return p;
}

Tensor heads(const Tensor& r, const Sizes& s) {  // (N, C) -> (B, H, T, D) contiguous
  return px::contiguous(px::permute(px::reshape(r, {s.B, s.T, s.H, s.D()}), {0, 2, 1, 3}));
}
Tensor merge(const Tensor& o, const Sizes& s) {  // (B, H, T, D) -> (N, C)
  return px::reshape(px::contiguous(px::permute(o, {0, 2, 1, 3})), {s.N(), s.C});
}

Tensor block_loss(const Params& p, const Sizes& s, px::Generator& gen) {
  Tensor h = px::layer_norm(p.x, p.ln_w, p.ln_b);
  Tensor u = px::dropout(px::gelu(px::linear(h, p.W1, p.b1)), 0.1, true, gen);
  Tensor r = p.x + px::linear(u, p.W2, p.b2);
  Tensor q = heads(r, s);
  Tensor scores = px::matmul(q, px::transpose(q, -2, -1)) * (1.0 / std::sqrt(double(s.D())));
  Tensor prob = px::softmax(px::reshape(scores, {s.B * s.H * s.T, s.T}));
  Tensor o = merge(px::matmul(px::reshape(prob, {s.B, s.H, s.T, s.T}), q), s);
  Tensor logits = px::linear(o, p.Wv, p.bv);
  return px::cross_entropy(logits, p.target, -100, 0.1);
}

void clear_grads(const Params& p) {
  for (auto& t : p.leaves()) t.set_grad(Tensor());
}

// One stage of the block, run alone: inputs are leaves, forward then backward with gy.
struct Stage {
  std::string name;
  std::vector<Tensor> inputs;  // leaves requiring grad
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  bool scalar = false;  // a loss: backward without an upstream gradient
};

std::vector<Stage> make_stages(const Sizes& s, const Params& p, px::Generator& gen) {
  const int64_t N = s.N(), C = s.C, B = s.B, H = s.H, T = s.T, D = s.D(), V = s.V;
  auto leaf = [&](const px::Shape& shape) { return px::randn(shape, gen).set_requires_grad(true); };
  const double scale = 1.0 / std::sqrt(double(D));
  std::vector<Stage> st;
  st.push_back({"layer_norm", {leaf({N, C}), p.ln_w, p.ln_b},
                [](const std::vector<Tensor>& a) { return px::layer_norm(a[0], a[1], a[2]); }});
  st.push_back({"linear_c_4c", {leaf({N, C}), p.W1, p.b1},
                [](const std::vector<Tensor>& a) { return px::linear(a[0], a[1], a[2]); }});
  st.push_back({"gelu", {leaf({N, 4 * C})}, [](const std::vector<Tensor>& a) { return px::gelu(a[0]); }});
  st.push_back({"dropout", {leaf({N, 4 * C})},
                [&gen](const std::vector<Tensor>& a) { return px::dropout(a[0], 0.1, true, gen); }});
  st.push_back({"linear_4c_c", {leaf({N, 4 * C}), p.W2, p.b2},
                [](const std::vector<Tensor>& a) { return px::linear(a[0], a[1], a[2]); }});
  st.push_back({"residual_add", {leaf({N, C}), leaf({N, C})},
                [](const std::vector<Tensor>& a) { return a[0] + a[1]; }});
  st.push_back({"split_heads", {leaf({N, C})}, [s](const std::vector<Tensor>& a) { return heads(a[0], s); }});
  st.push_back({"scores_qqT_scale", {leaf({B, H, T, D})}, [scale](const std::vector<Tensor>& a) {
                  return px::matmul(a[0], px::transpose(a[0], -2, -1)) * scale;
                }});
  st.push_back({"softmax", {leaf({B * H * T, T})}, [](const std::vector<Tensor>& a) { return px::softmax(a[0]); }});
  st.push_back({"probs_at_v", {leaf({B, H, T, T}), leaf({B, H, T, D})},
                [](const std::vector<Tensor>& a) { return px::matmul(a[0], a[1]); }});
  st.push_back({"merge_heads", {leaf({B, H, T, D})}, [s](const std::vector<Tensor>& a) { return merge(a[0], s); }});
  st.push_back({"linear_c_vocab", {leaf({N, C}), p.Wv, p.bv},
                [](const std::vector<Tensor>& a) { return px::linear(a[0], a[1], a[2]); }});
  Tensor target = p.target;
  Stage ce{"cross_entropy_ls", {leaf({N, V})},
           [target](const std::vector<Tensor>& a) { return px::cross_entropy(a[0], target, -100, 0.1); }};
  ce.scalar = true;
  st.push_back(ce);
  return st;
}

std::string json_list(const std::vector<double>& v) {
  std::string out = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.3f", i ? ", " : "", v[i]);
    out += buf;
  }
  return out + "]";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    pb::Args args(argc, argv,
                  {"--threads", "--reps", "--warmup", "--B", "--T", "--C", "--H", "--V", "--breakdown", "--help"});
    if (args.has("--help")) {
      std::cout << "bench_ops [--threads N] [--reps R] [--warmup W] [--B 8] [--T 128] [--C 256] [--H 4] [--V 4096]"
                   " [--breakdown]\n";
      return 0;
    }
    const int threads = static_cast<int>(args.num("--threads", px::default_num_threads()));
    const int reps = static_cast<int>(args.num("--reps", 10));
    const int warmup = static_cast<int>(args.num("--warmup", 2));
    const Sizes s{args.num("--B", 8), args.num("--T", 128), args.num("--C", 256), args.num("--H", 4),
                  args.num("--V", 4096)};
    if (s.C % s.H != 0) throw std::runtime_error("C must be divisible by H");
    px::set_num_threads(threads);

    px::Generator gen(42);
    const Params p = make_params(s, gen);
    const double gflop = block_gflop(s), gbytes = block_nongemm_gbytes(s);
    const pb::Peak peak = pb::cpu_peak();
    char head[512];
    std::snprintf(head, sizeof head,
                  "\"impl\": \"parallax\", \"threads\": %d, \"B\": %ld, \"T\": %ld, \"C\": %ld, \"H\": %ld, \"V\": %ld, "
                  "\"gemm_gflop\": %.3f, \"nongemm_gbytes\": %.3f, \"peak_gflops\": %.0f, \"nominal_peak_gflops\": %.0f",
                  threads, s.B, s.T, s.C, s.H, s.V, gflop, gbytes,
                  pb::measured_fma_gflops(threads, 100.0), peak.gflops(threads));

    if (args.has("--breakdown")) {
      auto stages = make_stages(s, p, gen);
      std::string out = "{" + std::string(head) + ", \"breakdown_ms\": {", cpu;
      for (size_t i = 0; i < stages.size(); ++i) {
        auto& st = stages[i];
        Tensor y0 = st.fn(st.inputs);
        Tensor gy = st.scalar ? Tensor() : px::randn(y0.shape(), gen);
        y0 = Tensor();
        auto once = [&] {
          for (auto& t : st.inputs) t.set_grad(Tensor());
          Tensor y = st.fn(st.inputs);
          px::backward(y, gy);
        };
        for (int w = 0; w < warmup; ++w) once();
        const double one = pb::time_ms(once, 1);
        const int inner = pb::inner_for(one, 20.0);
        std::vector<double> t, c;
        for (int r = 0; r < reps; ++r) {
          const pb::Timing tm = pb::time_both(once, inner);
          t.push_back(tm.wall_ms);
          c.push_back(tm.cpu_ms);
        }
        char buf[128];
        std::snprintf(buf, sizeof buf, "%s\"%s\": %.3f", i ? ", " : "", st.name.c_str(), pb::median(t));
        out += buf;
        std::snprintf(buf, sizeof buf, "%s\"%s\": %.3f", i ? ", " : "", st.name.c_str(), pb::median(c));
        cpu += buf;
      }
      std::printf("%s}, \"breakdown_cpu_ms\": {%s}}\n", out.c_str(), cpu.c_str());
      return 0;
    }

    auto step = [&] {
      clear_grads(p);
      Tensor loss = block_loss(p, s, gen);
      px::backward(loss);
    };
    for (int w = 0; w < warmup; ++w) step();
    std::vector<double> t, c;
    for (int r = 0; r < reps; ++r) {
      const pb::Timing tm = pb::time_both(step, 1);
      t.push_back(tm.wall_ms);
      c.push_back(tm.cpu_ms);
    }
    const double med = pb::median(t);
    std::printf("{%s, \"median_ms\": %.3f, \"min_ms\": %.3f, \"cpu_median_ms\": %.3f, \"gflops\": %.2f, "
                "\"times_ms\": %s}\n",
                head, med, pb::min_of(t), pb::median(c), gflop / (med * 1e-3), json_list(t).c_str());
  } catch (const std::exception& e) {
    std::cerr << "bench_ops: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

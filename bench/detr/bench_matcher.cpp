// bench/detr/bench_matcher.cpp (bench_matcher, Google Benchmark): DETR's host HungarianMatcher over a batch
// (B images x 100 queries x M targets x 92 classes, f32 inputs) and the raw linear_sum_assignment on n x n.
#include <benchmark/benchmark.h>

#include <random>
#include <span>
#include <vector>

#include "models/detr/linear_assignment.h"
#include "models/detr/matcher.h"

namespace {

using namespace px::detr;

// Uniform [0, 1) costs, as random as DETR's early-training cost matrices.
void BM_LinearSumAssignment(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> cost(n * n);  // (n, n)
  for (double& x : cost) x = u(rng);
  for (auto _ : state) benchmark::DoNotOptimize(linear_sum_assignment(std::span<const double>(cost), n, n));
}
BENCHMARK(BM_LinearSumAssignment)->Arg(100)->Arg(300)->Unit(benchmark::kMicrosecond);

// A random batch: softmax-like probabilities, sigmoid-range boxes, M targets per image.
struct Batch {
  int64_t B, Q = 100, C = 92, M;
  std::vector<float> probs, boxes, tboxes;  // (B, Q, C+1), (B, Q, 4), (B, M, 4)
  std::vector<int64_t> labels;              // (B, M)

  Batch(int64_t b, int64_t m) : B(b), M(m), probs(B * Q * C), boxes(B * Q * 4), tboxes(B * M * 4), labels(B * M) {
    std::mt19937_64 rng(2);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t row = 0; row < B * Q; ++row) {
      float sum = 0.0f;
      for (int64_t c = 0; c < C; ++c) sum += probs[row * C + c] = u(rng);
      for (int64_t c = 0; c < C; ++c) probs[row * C + c] /= sum;
    }
    auto random_boxes = [&](std::vector<float>& v) {  // (N, 4): centres in [0, 1), sizes in [0, 0.5)
      for (size_t k = 0; k < v.size(); ++k) v[k] = (k % 4 < 2 ? 1.0f : 0.5f) * u(rng);
    };
    random_boxes(boxes);
    random_boxes(tboxes);
    for (int64_t& l : labels) l = static_cast<int64_t>(u(rng) * float(C - 1));
  }

  MatcherInput<float> input() const {
    MatcherInput<float> in{B, Q, C, probs, boxes, {}, {}};
    for (int64_t b = 0; b < B; ++b) {
      in.labels.push_back(std::span<const int64_t>(labels).subspan(b * M, M));
      in.target_boxes.push_back(std::span<const float>(tboxes).subspan(b * M * 4, M * 4));
    }
    return in;
  }
};

// Args: images B, targets per image M. Reports images/s.
void BM_Matcher(benchmark::State& state) {
  const Batch batch(state.range(0), state.range(1));
  const MatcherInput<float> in = batch.input();
  const HungarianMatcher matcher;
  for (auto _ : state) benchmark::DoNotOptimize(matcher.match(in));
  state.SetItemsProcessed(state.iterations() * batch.B);
}
BENCHMARK(BM_Matcher)->ArgsProduct({{2, 4, 8, 16}, {5, 20, 50}})->ArgNames({"B", "M"})->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

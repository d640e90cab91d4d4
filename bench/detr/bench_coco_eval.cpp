// bench_coco_eval: models/detr/coco_eval's evaluate_coco on DETR-shaped output (Google Benchmark): N images
// of a COCO-like set (80 categories, ~7 boxes each) with 100 scored detections per image.
#include <algorithm>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "models/detr/coco_eval.h"

namespace {

using px::detr::CocoDetection;
using px::detr::CocoGroundTruth;

struct Synthetic {
  CocoGroundTruth gt;
  std::vector<CocoDetection> dets;  // (N * 100,)
};

// Boxes on 640 x 480 images; each detection is a jittered copy of a box (class right 80% of the time) or a
// random box, as a trained DETR's 100 queries are.
Synthetic make_synthetic(int64_t num_images, uint64_t seed) {
  constexpr int kCategories = 80, kQueries = 100;
  constexpr double W = 640, H = 480;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> n(0.0, 1.0);
  Synthetic s;
  for (int c = 1; c <= kCategories; ++c) s.gt.category_ids.push_back(c);
  for (int64_t img = 1; img <= num_images; ++img) {
    s.gt.image_ids.push_back(img);
    const size_t first = s.gt.annotations.size();
    const int boxes = 1 + static_cast<int>(u(rng) * 13);
    for (int b = 0; b < boxes; ++b) {
      const double w = 4 + u(rng) * u(rng) * (W - 4), h = 4 + u(rng) * u(rng) * (H - 4);
      s.gt.annotations.push_back({img, 1 + static_cast<int64_t>(u(rng) * kCategories),
                                  {u(rng) * (W - w), u(rng) * (H - h), w, h}, w * h, u(rng) < 0.01});
    }
    for (int q = 0; q < kQueries; ++q) {
      CocoDetection d{img, 1 + static_cast<int64_t>(u(rng) * kCategories), {}, u(rng)};
      if (q < 3 * boxes) {
        const auto& a = s.gt.annotations[first + q % boxes];
        const double sigma = 0.02 + 0.15 * u(rng);
        for (int j = 0; j < 4; ++j) d.bbox[j] = a.bbox[j] + sigma * n(rng) * a.bbox[2 + j % 2];
        if (u(rng) < 0.8) d.category_id = a.category_id;
        d.score = 0.3 + 0.7 * d.score;
      } else {
        const double w = 4 + u(rng) * (W / 2), h = 4 + u(rng) * (H / 2);
        d.bbox = {u(rng) * (W - w), u(rng) * (H - h), w, h};
        d.score *= 0.5;
      }
      s.dets.push_back(d);
    }
  }
  return s;
}

void BM_EvaluateCoco(benchmark::State& state) {
  const Synthetic s = make_synthetic(state.range(0), 1);
  for (auto _ : state) benchmark::DoNotOptimize(px::detr::evaluate_coco(s.gt, s.dets));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(s.dets.size()));
  state.counters["images"] = static_cast<double>(state.range(0));
  state.counters["AP"] = px::detr::evaluate_coco(s.gt, s.dets).values[0];
}
BENCHMARK(BM_EvaluateCoco)->Arg(500)->Arg(5000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

// bench/detr/step.cpp (bench_detr_step): one DETR training step (forward, Hungarian matching, losses on every decoder
// layer, backward, AdamW with the backbone's lr group) built as the trainer's DetrTask builds it; peer: step_torch.py.
//
// The model, criterion and optimizer come from a config file through launcher/detr_task's build_detr,
// criterion_options and the DetrTask's two parameter groups (the dataset only gives the class count: --num-classes).
// The batch is read from a PXT file that step_vs_torch.py writes (step_batch.py; the PyTorch side draws the same one
// from the same seed). Per step, timed apart:
//   forward    feature_positions(mask) + Detr::forward (every decoder layer's predictions when model.detr.aux_loss)
//   loss       SetCriterion over every layer (its Hungarian matching included), / the box count
//   backward   px::backward(loss)
//   optimizer  zero_grad (set to none) + AdamW::step
// matcher_ms is the matching SetCriterion does (per layer: softmax in f64, read back to the host, cost matrices and
// assignments) run once more on the same predictions outside the step's clock (match_call_ms: the part inside
// HungarianMatcher::match); loss_ms is reported without it.
// backbone_ms times the ResNet's forward + backward alone on the same images (a fixed random upstream gradient),
// after the steps: the convolutions' part of the step with their batch norms, ReLUs, max pool and residual adds.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/nn/resnet.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/util/error.h"
#include "launcher/config.h"
#include "launcher/detr_task.h"
#include "tests/common/pxt.h"

namespace {

using px::Tensor;
namespace pb = px::bench;
namespace detr = px::detr;

struct Batch {
  Tensor images, mask;                            // (B, 3, H, W) f32, (B, H, W) bool
  std::vector<px::data::DetectionTarget> targets;  // (B)
  int64_t num_boxes = 0, labels_sum = 0;
  double images_sum = 0;
};

Batch read_batch(const std::string& path) {
  const px::test::PxtFile file(path);
  Batch batch;
  batch.images = file.get("images");
  batch.mask = file.get("mask");
  const int64_t images = batch.images.size(0);
  CHECK(batch.images.dim() == 4 && batch.images.size(1) == 3 && batch.mask.dim() == 3 && batch.mask.size(0) == images)
      << path << ": images " << batch.images.str() << " and mask " << batch.mask.str();
  for (double v : px::to_vector(batch.images)) batch.images_sum += v;
  for (int64_t b = 0; b < images; ++b) {
    px::data::DetectionTarget t;
    t.labels = file.get("labels." + std::to_string(b));
    t.boxes = file.get("boxes." + std::to_string(b));
    batch.num_boxes += t.labels.size(0);
    for (double v : px::to_vector(t.labels)) batch.labels_sum += static_cast<int64_t>(v);
    batch.targets.push_back(std::move(t));
  }
  return batch;
}

// FLOPs, 2 per multiply-add. Every product runs forward; backward adds its weight gradient when the weight trains
// and its input gradient when the input requires grad, each as much again as the forward.
struct Flops {
  double backbone = 0, transformer = 0;
  std::string ref_gemm;  // a layer3 3x3 convolution (layer<stages> when fewer) as an M x K x N GEMM, for bench_gemm
};

struct Activation {
  int64_t h, w;
  bool requires_grad;
};

// A k x k convolution with padding k / 2 (the ResNet's) of n images.
Activation count_conv(const Activation& x, int64_t n, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                      bool trains, double* flop) {
  const Activation y{(x.h + 2 * (k / 2) - k) / stride + 1, (x.w + 2 * (k / 2) - k) / stride + 1,
                     x.requires_grad || trains};
  const double forward = 2.0 * n * cout * y.h * y.w * cin * k * k;
  *flop += forward * (1 + (trains ? 1 : 0) + (x.requires_grad ? 1 : 0));
  return y;
}

// The backbone's convolutions over the padded (n, 3, H, W) images, walking core/nn/resnet's layout (torchvision's),
// which the PyTorch side counts from the modules it runs (step_vs_torch.py compares the two).
void count_backbone(const detr::DetrOptions& o, int64_t n, int64_t height, int64_t width, Flops* flops) {
  const px::nn::ResNetOptions& r = o.backbone;
  const bool bottleneck = r.depth == "resnet50";
  const std::vector<int64_t> blocks = r.depth == "resnet18" ? std::vector<int64_t>{2, 2, 2, 2}
                                                            : std::vector<int64_t>{3, 4, 6, 3};
  const auto trains = [&](int stage) { return o.train_backbone && !(o.freeze_stem && stage <= 0); };  // -1: stem
  const int64_t base = std::max<int64_t>(8, std::llround(64.0 * r.width_multiplier));
  Activation x = count_conv({height, width, false}, n, 3, base, 7, 2, trains(-1), &flops->backbone);
  x.h = (x.h - 1) / 2 + 1;  // max pool 3x3 / 2, padding 1
  x.w = (x.w - 1) / 2 + 1;
  int64_t cin = base;
  const int ref_stage = std::min(2, r.stages - 1);
  for (int s = 0; s < r.stages; ++s) {
    const int64_t planes = base << s, cout = bottleneck ? 4 * planes : planes;
    for (int64_t b = 0; b < blocks[s]; ++b) {
      const int64_t stride = b == 0 && s > 0 ? 2 : 1;
      double* f = &flops->backbone;
      Activation y = x;
      if (bottleneck) {
        y = count_conv(y, n, cin, planes, 1, 1, trains(s), f);
        y = count_conv(y, n, planes, planes, 3, stride, trains(s), f);
        y = count_conv(y, n, planes, cout, 1, 1, trains(s), f);
      } else {
        y = count_conv(y, n, cin, planes, 3, stride, trains(s), f);
        y = count_conv(y, n, planes, planes, 3, 1, trains(s), f);
      }
      if (s == ref_stage && b == 1) {  // its 3x3 convolution: (n OH OW) x (planes 9) -> planes
        flops->ref_gemm =
            std::to_string(n * y.h * y.w) + "x" + std::to_string(planes * 9) + "x" + std::to_string(planes);
      }
      if (stride != 1 || cin != cout) {  // the downsample of the block's input
        y.requires_grad |= count_conv(x, n, cin, cout, 1, stride, trains(s), f).requires_grad;
      }
      x = y;
      cin = cout;
    }
  }
}

// The transformer, input projection and heads as products (x3: forward, input and weight gradients), for n images of
// an S = h w feature map with backbone_channels channels, Q queries and `heads_layers` decoder layers with heads:
//   n S [ Cb d (input projection) + Le (4 d^2 + 2 d dff) + Ld 2 d^2 (cross-attention keys, values) ]
// + n Q [ Ld (6 d^2 + 2 d dff) + heads_layers (d (C + 1) + 2 d^2 + 4 d) ]
// + attention n d [ Le 2 S^2 + Ld (2 Q^2 + 2 Q S) ]            (scores and their products with the values)
// Softmax, layer norms, positions, the loss and the optimizer are memory-bound and not counted.
double transformer_flop(const detr::DetrOptions& o, int64_t n, int64_t S, int64_t backbone_channels,
                        int64_t heads_layers) {
  const double d = o.d_model, f = o.d_ff, Le = o.encoder_layers, Ld = o.decoder_layers, Q = o.num_queries;
  const double tokens = static_cast<double>(n) * S, queries = static_cast<double>(n) * Q;
  const double heads = d * (o.num_classes + 1) + 2 * d * d + 4 * d;  // class and the 3-layer box MLP, per query
  const double macs = tokens * (backbone_channels * d + Le * (4 * d * d + 2 * d * f) + Ld * 2 * d * d) +
                      queries * (Ld * (6 * d * d + 2 * d * f) + heads_layers * heads) +
                      n * d * (Le * 2.0 * S * S + Ld * (2.0 * Q * Q + 2.0 * Q * S));
  return 3 * 2 * macs;
}

// What SetCriterion::layer_loss does before its losses, for one layer: the f64 softmax and boxes read back, the
// targets as host arrays, and HungarianMatcher::match, whose own time is added to *match_call_ms. Returns the matched
// pair count (so nothing is optimised away).
int64_t match_layer(const detr::HungarianMatcher& matcher, const detr::DetrPrediction& p,
                    const std::vector<px::data::DetectionTarget>& targets, double* match_call_ms) {
  std::vector<double> probs, boxes;
  {
    px::NoGradGuard no_grad;
    probs = px::to_vector(px::softmax(px::to_dtype(p.logits.detach(), px::DType::f64)));
    boxes = px::to_vector(p.boxes.detach());
  }
  for (std::vector<double>* v : {&probs, &boxes})
    for (double& x : *v)
      if (!std::isfinite(x)) x = 0.0;
  const int64_t batch = p.logits.size(0);
  std::vector<std::vector<int64_t>> labels(batch);
  std::vector<std::vector<double>> target_boxes(batch);
  detr::MatcherInput<double> in;
  in.batch = batch;
  in.queries = p.logits.size(1);
  in.classes = p.logits.size(2);
  in.probs = probs;
  in.boxes = boxes;
  for (int64_t b = 0; b < batch; ++b) {
    for (double v : px::to_vector(targets[b].labels)) labels[b].push_back(static_cast<int64_t>(v));
    target_boxes[b] = px::to_vector(targets[b].boxes);
    in.labels.emplace_back(labels[b]);
    in.target_boxes.emplace_back(target_boxes[b]);
  }
  const double t0 = pb::now_ms();
  const std::vector<detr::ImageMatch> matches = matcher.match(in);
  *match_call_ms += pb::now_ms() - t0;
  int64_t pairs = 0;
  for (const detr::ImageMatch& m : matches) pairs += static_cast<int64_t>(m.pred.size());
  return pairs;
}

void usage() {
  std::cout << "bench_detr_step --config FILE --num-classes N --batch FILE.pxt [--threads N] [--warmup 1] [--reps 3]\n"
               "                [--backbone-reps REPS]\n"
               "  Times forward, loss (matching included), backward and AdamW of DETR on the batch step_vs_torch.py\n"
               "  wrote; prints one JSON line.\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const pb::Args args(argc, argv, {"--config", "--num-classes", "--batch", "--threads", "--warmup", "--reps",
                                     "--backbone-reps", "--help"});
    if (args.has("--help")) {
      usage();
      return 0;
    }
    const std::string config_path = args.str("--config", ""), batch_path = args.str("--batch", "");
    const int64_t num_classes = args.num("--num-classes", 0);
    const int threads = static_cast<int>(args.num("--threads", px::default_num_threads()));
    const int warmup = static_cast<int>(args.num("--warmup", 1)), reps = static_cast<int>(args.num("--reps", 3));
    const int backbone_reps = static_cast<int>(args.num("--backbone-reps", reps));
    if (config_path.empty() || batch_path.empty() || num_classes < 1)
      throw px::UsageError("--config, --batch and --num-classes (>= 1) are required");
    if (threads < 1 || warmup < 0 || reps < 1 || backbone_reps < 0)
      throw px::UsageError("--threads and --reps must be >= 1, --warmup and --backbone-reps >= 0");
    px::set_num_threads(threads);

    const px::config::Config config = px::load_config_file(config_path);
    const auto& m = config.model().detr();
    const auto& o = config.optimizer();
    px::DetectionData data;  // build_detr reads only the class count from it
    data.category_names.assign(static_cast<size_t>(num_classes), "class");
    px::DetrBundle bundle = px::build_detr(config, data);
    detr::Detr& model = *bundle.model;
    model.train();
    const detr::SetCriterion criterion(px::criterion_options(config, num_classes));
    // DetrTask::param_groups: the transformer and heads at optimizer.lr, the backbone at model.detr.backbone_lr.
    std::vector<px::optim::ParamGroup> groups{{model.other_parameters(), o.lr(), o.weight_decay(), "", -1.0}};
    const std::vector<Tensor> backbone_params = model.backbone_parameters();
    if (!backbone_params.empty())
      groups.push_back({backbone_params, m.backbone_lr(), o.weight_decay(), "backbone", -1.0});
    int64_t trainable = 0, backbone_trainable = 0;
    for (const Tensor& p : model.other_parameters()) trainable += p.numel();
    for (const Tensor& p : backbone_params) backbone_trainable += p.numel();
    px::optim::AdamW opt(groups, px::optim::AdamWOptions{o.beta1(), o.beta2(), o.eps()});

    const Batch batch = read_batch(batch_path);
    const int64_t n = batch.images.size(0), height = batch.images.size(2), width = batch.images.size(3);
    const auto [feat_h, feat_w] = model.feature_size(height, width);
    const int64_t decoder_layers = model.options().decoder_layers, heads_layers = m.aux_loss() ? decoder_layers : 1;
    Flops flops;
    count_backbone(model.options(), n, height, width, &flops);
    std::shared_ptr<px::nn::ResNet> backbone;
    for (const auto& [name, child] : model.named_children())
      if (name == "backbone") backbone = std::dynamic_pointer_cast<px::nn::ResNet>(child);
    CHECK(backbone != nullptr) << "Detr has no ResNet child named backbone";
    flops.transformer = transformer_flop(model.options(), n, feat_h * feat_w, backbone->out_channels(), heads_layers);
    // DetrTask::normaliser at dp 1, one micro-batch: the box count, also the cross-entropy's scale.
    const double count = std::max<double>(static_cast<double>(batch.num_boxes), 1.0);

    // Wall and process-CPU milliseconds of each phase of one step (CPU: all threads; with one thread the work done,
    // whatever else runs on the machine).
    enum Phase { kForward, kMatcher, kLoss, kBackward, kOptimizer, kPhases };
    struct Times {
      double wall[kPhases], cpu[kPhases];
      double match_call;  // the part of the matcher's wall time inside HungarianMatcher::match
    };
    struct Mark {
      double wall, cpu;
    };
    const auto mark = [] { return Mark{pb::now_ms(), pb::cpu_now_ms()}; };
    int64_t matched = 0;
    auto step = [&](Times* t) {
      const Mark t0 = mark();
      opt.zero_grad();
      const Mark t1 = mark();
      const detr::FeaturePositions positions = model.feature_positions(batch.mask, px::cpu());
      const std::vector<detr::DetrPrediction> predictions = model.forward(batch.images, positions, m.aux_loss());
      const Mark t2 = mark();
      t->match_call = 0;
      for (const detr::DetrPrediction& p : predictions)
        matched += match_layer(criterion.options().matcher, p, batch.targets, &t->match_call);
      const Mark t3 = mark();
      const Tensor loss = criterion(predictions, batch.targets, count).loss_sum * (1.0 / count);
      const double value = loss.item();
      const Mark t4 = mark();
      px::backward(loss);
      const Mark t5 = mark();
      opt.step();
      const Mark t6 = mark();
      // The criterion's time (t3 .. t4) less the matching it repeats: the loss phase without matching.
      const auto set = [&](double Mark::*clock, double* out) {
        out[kForward] = t2.*clock - t1.*clock;
        out[kMatcher] = t3.*clock - t2.*clock;
        out[kLoss] = (t4.*clock - t3.*clock) - out[kMatcher];
        out[kBackward] = t5.*clock - t4.*clock;
        out[kOptimizer] = (t1.*clock - t0.*clock) + (t6.*clock - t5.*clock);
      };
      set(&Mark::wall, t->wall);
      set(&Mark::cpu, t->cpu);
      return value;
    };
    Times t{};
    double first_loss = 0.0;
    for (int w = 0; w < warmup; ++w) {
      const double l = step(&t);
      if (w == 0) first_loss = l;
    }
    // Per timed step: the step's own time (the matching re-run for matcher_ms is not part of it), each phase's, and
    // the time inside HungarianMatcher::match.
    std::vector<double> total, total_cpu, wall[kPhases], cpu[kPhases], match_call;
    for (int r = 0; r < reps; ++r) {
      const double l = step(&t);
      if (warmup == 0 && r == 0) first_loss = l;
      total.push_back(0);
      total_cpu.push_back(0);
      for (int k = 0; k < kPhases; ++k) {
        wall[k].push_back(t.wall[k]);
        cpu[k].push_back(t.cpu[k]);
        total.back() += t.wall[k];
        total_cpu.back() += t.cpu[k];
      }
      match_call.push_back(t.match_call);
    }

    // The backbone alone: forward + backward with a fixed upstream gradient, one untimed round first.
    std::vector<double> backbone_ms, backbone_cpu_ms;
    if (backbone_reps > 0) {
      px::Generator gen(7);
      Tensor gy;
      for (int r = 0; r <= backbone_reps; ++r) {
        model.zero_grad();
        const Mark b0 = mark();
        const Tensor y = backbone->forward(batch.images);
        if (!gy.defined()) gy = px::randn(y.shape(), gen, y.dtype());
        if (y.requires_grad()) px::backward(y, gy);
        const Mark b1 = mark();
        if (r > 0) {
          backbone_ms.push_back(b1.wall - b0.wall);
          backbone_cpu_ms.push_back(b1.cpu - b0.cpu);
        }
      }
    }

    const double med = pb::median(total), gflop = (flops.backbone + flops.transformer) * 1e-9;
    std::printf(
        "{\"impl\": \"parallax\", \"threads\": %d, \"B\": %ld, \"H\": %ld, \"W\": %ld, \"feat_h\": %ld, "
        "\"feat_w\": %ld, \"num_boxes\": %ld, \"labels_sum\": %ld, \"images_sum\": %.3f, \"trainable_params\": %ld, "
        "\"backbone_trainable_params\": %ld, \"decoder_outputs\": %ld, \"backbone_gflop\": %.4f, "
        "\"transformer_gflop\": %.4f, \"gflop\": %.4f, \"ref_gemm\": \"%s\", \"peak_gflops\": %.0f, "
        "\"first_loss\": %.4f, \"median_ms\": %.3f, \"min_ms\": %.3f, \"cpu_median_ms\": %.3f, ",
        threads, n, height, width, feat_h, feat_w, batch.num_boxes, batch.labels_sum, batch.images_sum,
        trainable + backbone_trainable, backbone_trainable, heads_layers, flops.backbone * 1e-9,
        flops.transformer * 1e-9, gflop, flops.ref_gemm.c_str(), pb::measured_fma_gflops(threads, 100.0),
        first_loss, med, pb::min_of(total), pb::median(total_cpu));
    const char* names[kPhases] = {"fwd", "matcher", "loss", "bwd", "opt"};
    for (int k = 0; k < kPhases; ++k)
      std::printf("\"%s_ms\": %.3f, \"%s_cpu_ms\": %.3f, ", names[k], pb::median(wall[k]), names[k],
                  pb::median(cpu[k]));
    std::printf("\"match_call_ms\": %.3f, \"backbone_ms\": %.3f, \"backbone_cpu_ms\": %.3f, \"matched_pairs\": %ld, "
                "\"gflops\": %.2f}\n",
                pb::median(match_call), pb::median(backbone_ms), pb::median(backbone_cpu_ms),
                static_cast<long>(matched), gflop / (med * 1e-3));
  } catch (const std::exception& e) {
    std::cerr << "bench_detr_step: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

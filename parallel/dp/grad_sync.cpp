// The GradSync strategies: replicated gradients (none at dp = 1, GradBucketer's all-reduce at dp > 1) with AdamW on
// every rank, and ZeRO-1 (ZeroAdamW's reduce-scatter, sliced update and all-gather), and the factory choosing one.
#include "parallel/dp/grad_sync.h"

#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/dp/zero_adamw.h"
#include "parallel/grad_clip.h"

namespace px::parallel {

namespace {

// printf into a std::string.
template <typename... Args>
std::string printf_string(const char* pattern, Args... args) {
  char line[256];
  std::snprintf(line, sizeof line, pattern, args...);
  return line;
}

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// What every strategy keeps of the model: its named parameters and how they are sharded over tp (for clipping).
struct ModelParams {
  std::vector<std::pair<std::string, Tensor>> named;
  std::map<std::string, ShardSpec> specs;
  ProcessGroup* tp;
};

// Every rank holds the full gradients (summed over dp by a GradBucketer when dp > 1) and runs AdamW on the whole model.
class ReplicatedGradSync final : public GradSync {
 public:
  ReplicatedGradSync(ModelParams model, ProcessGroup& dp, GradSyncOptions options)
      : model_(std::move(model)), dp_size_(dp.size()), optimizer_(std::move(options.groups), options.adamw) {
    if (dp.size() == 1) return;
    GradBucketerOptions bucket_options;
    bucket_options.bucket_bytes = options.bucket_bytes;
    bucket_options.op = ReduceOp::sum;  // the loss is already divided by the global normaliser
    bucket_options.overlap = options.overlap;
    bucket_options.wire_dtype = options.grad_dtype;
    std::vector<Tensor> params;
    for (const auto& [name, p] : model_.named) params.push_back(p);
    bucketer_ = std::make_unique<GradBucketer>(params, dp, bucket_options);
    bucket_bytes_ = options.bucket_bytes;
    overlap_ = options.overlap;
  }

  // Gradients accumulate locally; the all-reduce starts during the last micro-batch's backward.
  void begin_micro_batch(int index, int count) override {
    if (bucketer_) bucketer_->set_sync(index + 1 == count);
  }
  void after_backward() override {
    if (bucketer_) bucketer_->finish();
  }
  double clip(double max_norm, double grad_scale) override {
    return clip_grad_norm(model_.named, model_.specs, *model_.tp, max_norm, nullptr, grad_scale);
  }
  void step() override { optimizer_.step(); }
  void zero_grad() override { optimizer_.zero_grad(); }
  optim::Optimizer& optimizer() override { return optimizer_; }
  std::string description() const override {
    if (!bucketer_) return "gradients: dp 1, no synchronisation";
    return printf_string("gradients: all-reduce over dp %d in %d buckets of <= %.1f MiB%s", dp_size_,
                  bucketer_->num_buckets(), mib(bucket_bytes_), overlap_ ? ", overlapped with backward" : "");
  }

 private:
  ModelParams model_;
  int dp_size_;
  optim::AdamW optimizer_;
  std::unique_ptr<GradBucketer> bucketer_;  // dp > 1
  int64_t bucket_bytes_ = 0;
  bool overlap_ = false;
};

// ZeRO-1: gradients reduce-scattered into ZeroAdamW's slices, which it updates and all-gathers into the model.
class ZeroGradSync final : public GradSync {
 public:
  ZeroGradSync(ModelParams model, ProcessGroup& dp, GradSyncOptions options)
      : model_(std::move(model)), optimizer_(model_.named, std::move(options.groups), options.adamw, dp) {}

  // Gradients accumulate locally in the model's parameters until after_backward().
  void begin_micro_batch(int, int) override {}
  void after_backward() override { optimizer_.reduce_gradients(); }
  double clip(double max_norm, double grad_scale) override {
    return optimizer_.clip_grad_norm(model_.specs, *model_.tp, max_norm, grad_scale);
  }
  void step() override { optimizer_.step_and_gather(); }
  void zero_grad() override {
    optimizer_.zero_grad();  // the slices'
    NoGradGuard no_grad;
    for (const auto& [name, p] : model_.named) p.set_grad(Tensor());
  }
  optim::Optimizer& optimizer() override { return optimizer_; }
  std::string description() const override {
    return printf_string("optimizer state: %.1f MiB per rank (ZeRO-1 over dp %d; %.1f MiB unsharded)",
                  mib(optimizer_.state_bytes()), optimizer_.dp().size(), mib(optimizer_.unsharded_state_bytes()));
  }

 private:
  ModelParams model_;
  ZeroAdamW optimizer_;
};

}  // namespace

std::unique_ptr<GradSync> make_grad_sync(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                         const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp,
                                         ProcessGroup& dp, GradSyncOptions options) {
  CHECK(!options.groups.empty()) << "make_grad_sync over " << dp.describe() << ": no parameter group";
  ModelParams model{named_params, specs, &tp};
  if (options.shard_state && dp.size() > 1)
    return std::make_unique<ZeroGradSync>(std::move(model), dp, std::move(options));
  return std::make_unique<ReplicatedGradSync>(std::move(model), dp, std::move(options));
}

}  // namespace px::parallel

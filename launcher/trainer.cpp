// The training loop of `parallax train` for every model kind (a Task) on any dp x tp layout: set-up agreed by
// every rank, resume, the step (micro-batches, dp gradient sync, clipping over shards, AdamW), eval, checkpoints.
#include "launcher/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <vector>

#include <glog/logging.h>

#include "core/autograd/engine.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/loss_scaler.h"
#include "core/optim/lr_schedule.h"
#include "core/util/durable_file.h"
#include "core/util/error.h"
#include "core/util/logging.h"
#include "launcher/checkpoint.h"
#include "launcher/config.h"
#include "launcher/device_plan.h"
#include "launcher/metrics.h"
#include "launcher/run_dir.h"
#include "launcher/task.h"
#include "parallel/comm/device_routed_process_group.h"
#include "parallel/comm/world.h"
#include "parallel/dp/grad_sync.h"
#include "parallel/grid.h"
#include "parallel/tp/shard_spec.h"

namespace px {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int signal) { g_stop_signal.store(signal); }

// SIGINT/SIGTERM/SIGUSR1 (Slurm's warning before the time limit: `--signal=B:USR1@120`) ask the loop to stop
// after the current step (and save); restored on scope exit.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
    old_usr1_ = std::signal(SIGUSR1, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
    std::signal(SIGUSR1, old_usr1_);
  }
  int received() const { return g_stop_signal.load(); }

 private:
  void (*old_int_)(int) = SIG_DFL;
  void (*old_term_)(int) = SIG_DFL;
  void (*old_usr1_)(int) = SIG_DFL;
};

std::unique_ptr<optim::LrSchedule> make_schedule(const config::Config& config) {
  const auto& s = config.schedule();
  if (s.name() == "inverse_sqrt") return std::make_unique<optim::InverseSqrtSchedule>(s.warmup_steps());
  if (s.name() == "cosine") {
    return std::make_unique<optim::CosineSchedule>(s.warmup_steps(), config.train().max_steps(), s.min_lr_ratio());
  }
  if (s.name() == "step") return std::make_unique<optim::StepDecaySchedule>(s.step_size(), s.gamma());
  return std::make_unique<optim::ConstantSchedule>();
}

// The run's config: a new run takes the config file (required) + overrides; an existing run its own config
// (or the given file) + overrides, refused when the model's shape differs from its checkpoint's.
config::Config resolve_config(const TrainCommand& command, const RunDir& run) {
  const bool existing = fs::exists(run.config());
  if (!existing && command.config_path.empty()) {
    throw UsageError("train: " + run.root + " has no run yet: give a CONFIG to start one");
  }
  config::Config config = command.config_path.empty() ? load_config_file(run.config())
                                                       : load_config_file(command.config_path);
  apply_overrides(config, command.overrides);
  validate_config(config);
  if (const auto latest = latest_checkpoint(run.root)) {
    const ckpt::proto::Manifest manifest = read_manifest(*latest);
    const config::Config saved = parse_config_text(manifest.config(), *latest + "/manifest.pbtxt: config");
    const std::string diff = model_shape_difference(saved, config);
    if (!diff.empty()) {
      throw ConfigError(run.root + " holds a run of another model (" + diff +
                        "); use a new --run-dir or the run's own config");
    }
  }
  return config;
}

// Why the ranks stop: a bit each, agreed over every rank by one max all-reduce of the bits.
enum class StopRequest : int { out_of_time = 1 << 0, sigint = 1 << 1, sigterm = 1 << 2, sigusr1 = 1 << 3 };
constexpr int kStopRequests = 4;

struct StopRequests {
  int bits = 0;
  void add(StopRequest r) { bits |= static_cast<int>(r); }
  bool has(StopRequest r) const { return (bits & static_cast<int>(r)) != 0; }
  // The signal that stops the run (the first of SIGINT, SIGTERM, SIGUSR1 asked on any rank), or null.
  const char* signal() const {
    if (has(StopRequest::sigint)) return "SIGINT";
    if (has(StopRequest::sigterm)) return "SIGTERM";
    if (has(StopRequest::sigusr1)) return "SIGUSR1";
    return nullptr;
  }
};

// Mean of the steps since the last log line.
struct LogWindow {
  int steps = 0, skipped = 0;
  double loss_sum = 0, normaliser = 0, units = 0, seconds = 0, grad_norm_sum = 0;
  void clear() { *this = LogWindow{}; }
};

// One update's figures, the same on every rank.
struct StepResult {
  double loss_sum = 0;    // summed over dp
  double normaliser = 0;  // what the loss sum is divided by
  double grad_norm = 0;   // before clipping
  bool skipped = false;   // non-finite loss or gradients: no update
};

// The loop of `parallax train` over a Task: resume, micro-batches, the dp gradient sync (bucketed all-reduce or
// ZeRO-1), clipping over shards, AdamW, progress, evaluation, checkpoints and stop requests.
class Trainer {
 public:
  Trainer(const TrainCommand& command, config::Config config, Task& task, parallel::ParallelGrid& grid,
          const DevicePlan& plan)
      : run_{command.run_dir},
        config_(std::move(config)),
        task_(task),
        grid_(grid),
        leader_(grid.world().rank() == 0),
        schedule_(make_schedule(config_)),
        scaler_(plan.loss_scaling) {
    task_.build_model(grid_, plan);
    if (leader_) metrics_ = std::make_unique<MetricsWriter>(run_.metrics());
    layout_.tp = &grid_.tp();
    layout_.specs = parallel::collect_shard_specs(task_.model());
    layout_.writer = leader_;
    layout_.world_size = grid_.world().size();
    build_grad_sync();
    state_.cursor = data::DataCursor{config_.train().seed(), 0, 0, 0};
    if (const auto latest = latest_checkpoint(run_.root)) {
      resume_from(*latest);
    } else {
      for (const RngStream& stream : task_.rng_streams()) state_.rngs.emplace_back(stream.name, stream.generator);
    }
    if (scaler_.enabled()) state_.loss_scale = scaler_.state();
    last_checkpoint_step_ = state_.step;
  }

  int run() {
    const auto& train = config_.train();
    announce();
    if (state_.step >= train.max_steps()) {
      say("nothing to do: step %lld >= train.max_steps %lld (raise it with --set train.max_steps=N)\n",
          static_cast<long long>(state_.step), static_cast<long long>(train.max_steps()));
      return 0;
    }
    // The tp ranks of a replica read the same slice.
    const std::unique_ptr<BatchSource> batches =
        task_.train_batches(state_.cursor, grid_.dp_rank(), grid_.dp_size());
    StopSignals signals;
    const auto start = std::chrono::steady_clock::now();
    const double max_seconds = train.max_minutes() * 60.0;
    const int64_t first_step = state_.step;
    std::string stop_reason = "train.max_steps reached";
    bool stopped_by_signal = false;
    LogWindow window;
    task_.model().train();
    while (state_.step < train.max_steps()) {
      const auto step_start = std::chrono::steady_clock::now();
      std::vector<std::unique_ptr<TaskBatch>> micro = next_micro_batches(*batches);
      if (micro.empty()) {
        stop_reason = "train.max_epochs reached";
        break;
      }
      const StepResult step = train_step(micro);
      const double units = task_.units(micro);
      ++state_.step;
      state_.cursor = micro.back()->after;
      state_.tokens_seen += static_cast<int64_t>(units);  // every dp rank's slice
      const double step_seconds = seconds_since(step_start);
      state_.train_seconds += step_seconds;
      window.steps += 1;
      window.loss_sum += step.loss_sum;
      window.normaliser += step.normaliser;
      window.units += units;
      window.seconds += step_seconds;
      window.grad_norm_sum += step.grad_norm;
      window.skipped += step.skipped ? 1 : 0;

      const double elapsed = seconds_since(start);
      // Every rank stops at the same step: rank 0's clock decides the time limit, any rank's signal stops all.
      const StopRequests stop = agree_on_stop(leader_ && max_seconds > 0 && elapsed >= max_seconds, signals.received());
      const bool out_of_time = stop.has(StopRequest::out_of_time);
      if (state_.step % config_.log().every_steps() == 0 || state_.step == train.max_steps() || out_of_time) {
        log_progress(window, elapsed, state_.step - first_step, max_seconds);
        window.clear();
      }
      if (every(config_.eval().every_steps())) evaluate();
      if (every(config_.checkpoint().every_steps())) checkpoint();
      if (out_of_time) {
        stop_reason = "train.max_minutes reached";
        break;
      }
      if (stop.signal() != nullptr) {
        stopped_by_signal = true;
        stop_reason = std::string("stopped by ") + stop.signal();
        break;
      }
    }
    checkpoint();
    say("%s at step %lld; checkpoint saved in %s/checkpoints\n", stop_reason.c_str(),
        static_cast<long long>(state_.step), run_.root.c_str());
    // A stop request (preemption) leaves now; a run that reached its limit reports its final quality.
    if (!stopped_by_signal && last_eval_step_ != state_.step) evaluate();
    return 0;
  }

 private:
  // printf on rank 0 only (the console belongs to rank 0; every rank logs to its own file).
  template <typename... Args>
  void say(const char* format, Args... args) const {
    if (!leader_) return;
    if constexpr (sizeof...(Args) == 0) {
      std::fputs(format, stdout);
    } else {
      std::printf(format, args...);
    }
  }

  // AdamW over the task's parameter groups behind the dp gradient sync: none at dp = 1, ZeRO-1 with
  // optimizer.shard_state, else the bucketed all-reduce.
  void build_grad_sync() {
    const auto& o = config_.optimizer();
    parallel::GradSyncOptions options;
    options.shard_state = o.shard_state();
    options.bucket_bytes = static_cast<int64_t>(config_.parallel().bucket_mb() * 1024 * 1024);
    options.overlap = config_.parallel().overlap();
    if (config_.parallel().grad_dtype() == "bf16") options.grad_dtype = DType::bf16;
    options.adamw = optim::AdamWOptions{o.beta1(), o.beta2(), o.eps()};
    options.groups = task_.param_groups();
    grad_sync_ = parallel::make_grad_sync(task_.model().named_parameters(), layout_.specs, grid_.tp(), grid_.dp(),
                                          std::move(options));
    if (grid_.dp_size() > 1) say("%s\n", grad_sync_->description().c_str());
  }

  // Loads `checkpoint` into the model, optimizer and state. A stream with a seed of this rank's own keeps it
  // and takes the saved offset (the checkpoint holds rank 0's); a checkpoint without it leaves it fresh.
  void resume_from(const std::string& checkpoint) {
    const ckpt::proto::Manifest manifest = read_manifest(checkpoint);
    const auto saved = [&](const std::string& name) {
      return std::any_of(manifest.rng().begin(), manifest.rng().end(),
                         [&](const ckpt::proto::RngState& r) { return r.name() == name; });
    };
    const std::vector<RngStream> streams = task_.rng_streams();
    std::vector<uint64_t> own_seeds;
    for (const RngStream& stream : streams) {
      own_seeds.push_back(stream.generator->seed());
      if (!stream.rank_own_seed || saved(stream.name)) state_.rngs.emplace_back(stream.name, stream.generator);
    }
    load_checkpoint(checkpoint, task_.model(), &grad_sync_->optimizer(), &state_, layout_);
    // An f16 run resumed from an f32/bf16 checkpoint starts from the initial scale; the reverse drops the scale.
    if (scaler_.enabled() && state_.loss_scale) scaler_.set_state(*state_.loss_scale);
    state_.loss_scale.reset();
    if (scaler_.enabled()) state_.loss_scale = scaler_.state();
    state_.rngs.clear();
    for (size_t i = 0; i < streams.size(); ++i) {
      Generator& gen = *streams[i].generator;
      if (streams[i].rank_own_seed) gen.set_state(own_seeds[i], gen.offset());
      state_.rngs.emplace_back(streams[i].name, &gen);
    }
    LOG(INFO) << "resumed from " << checkpoint << " at step " << state_.step;
    say("resuming from %s (step %lld)\n", checkpoint.c_str(), static_cast<long long>(state_.step));
  }

  void announce() {
    const auto& train = config_.train();
    const nn::Module& model = task_.model();
    LOG(INFO) << "model: " << model.num_parameters() << " parameters; config:\n" << config_to_text(config_);
    say("model: %.2fM parameters%s, %s; %s; training to step %lld",
        static_cast<double>(model.num_parameters()) / 1e6, grid_.tp_size() > 1 ? " per tp rank" : "",
        task_.describe().c_str(), grid_.str().c_str(), static_cast<long long>(train.max_steps()));
    if (train.max_minutes() > 0) say(" or for %g minutes", train.max_minutes());
    say("\n");
  }

  // train.accumulate_steps global batches (micro-batches) for one update; none when the data ends first (an
  // incomplete last group is not trained on).
  std::vector<std::unique_ptr<TaskBatch>> next_micro_batches(BatchSource& batches) {
    const auto count = static_cast<size_t>(config_.train().accumulate_steps());
    std::vector<std::unique_ptr<TaskBatch>> micro;
    while (micro.size() < count) {
      std::unique_ptr<TaskBatch> batch = batches.next();
      if (!batch) return {};
      micro.push_back(std::move(batch));
    }
    return micro;
  }

  // Forward and backward of every micro-batch (the loss times the loss scale), the dp gradient sync, unscaling with
  // the clipping and, when the loss and the gradients are finite, the update. A non-finite step is skipped on every
  // rank (the loss and the norm are all-reduced values) and backs the f16 loss scale off; train.max_skipped_steps
  // of them in a row stop the run.
  StepResult train_step(const std::vector<std::unique_ptr<TaskBatch>>& micro) {
    optim::apply_schedule(grad_sync_->optimizer(), *schedule_, state_.step + 1);
    StepResult result;
    result.normaliser = task_.normaliser(micro, grid_.dp());
    const double scale = scaler_.scale();
    double local_loss = 0;
    for (size_t k = 0; k < micro.size(); ++k) {
      grad_sync_->begin_micro_batch(static_cast<int>(k), static_cast<int>(micro.size()));
      // A rank whose slice of a global batch is empty computes nothing but still joins every collective.
      if (micro[k]->empty()) continue;
      const Tensor loss_sum = task_.loss_sum(*micro[k]);
      backward(loss_sum * (scale / result.normaliser));
      local_loss += loss_sum.item();
    }
    grad_sync_->after_backward();  // before any other dp collective: the bucket all-reduces may still be in flight
    result.loss_sum = parallel::all_reduce_value(grid_.dp(), local_loss, parallel::ReduceOp::sum);
    const double max_norm = config_.optimizer().clip_grad_norm() > 0 ? config_.optimizer().clip_grad_norm()
                                                                      : std::numeric_limits<double>::infinity();
    result.grad_norm = grad_sync_->clip(max_norm, scale);
    const double loss_value = result.loss_sum / result.normaliser;
    result.skipped = !(std::isfinite(loss_value) && std::isfinite(result.grad_norm));
    if (!result.skipped) grad_sync_->step();
    grad_sync_->zero_grad();
    scaler_.update(result.skipped);
    if (scaler_.enabled()) state_.loss_scale = scaler_.state();
    if (!result.skipped) {
      skipped_in_a_row_ = 0;
      return result;
    }
    ++skipped_in_a_row_;
    char line[256];
    std::snprintf(line, sizeof line, "step %lld: non-finite %s (loss %g, grad norm %g); update skipped%s%s",
                  static_cast<long long>(state_.step + 1), std::isfinite(loss_value) ? "gradients" : "loss",
                  loss_value, result.grad_norm, scaler_.enabled() ? ", loss " : "",
                  scaler_.enabled() ? scaler_.str().c_str() : "");
    LOG(WARNING) << line;
    say("%s\n", line);
    const int limit = config_.train().max_skipped_steps();
    if (skipped_in_a_row_ >= limit) {
      throw Error("train.max_skipped_steps: " + std::to_string(skipped_in_a_row_) +
                  " steps in a row had a non-finite loss or gradients (the last at step " +
                  std::to_string(state_.step + 1) + "); the run has diverged: lower optimizer.lr, set "
                  "optimizer.clip_grad_norm, or resume from an earlier checkpoint");
    }
    return result;
  }

  // The stop requests of every rank: this one's (rank 0 alone judges the clock) or'ed with the others'.
  StopRequests agree_on_stop(bool out_of_time, int signal) {
    StopRequests local;
    if (out_of_time) local.add(StopRequest::out_of_time);
    if (signal == SIGINT) local.add(StopRequest::sigint);
    if (signal == SIGTERM) local.add(StopRequest::sigterm);
    if (signal == SIGUSR1) local.add(StopRequest::sigusr1);
    if (grid_.world().size() == 1) return local;
    std::vector<double> bits;
    for (int bit = 0; bit < kStopRequests; ++bit) bits.push_back((local.bits >> bit) & 1);
    const Tensor t = from_vector(bits, {kStopRequests}, DType::f64);
    grid_.world().all_reduce(t, parallel::ReduceOp::max)->wait();
    StopRequests agreed;
    for (int bit = 0; bit < kStopRequests; ++bit) agreed.bits |= (t.data<double>()[bit] > 0 ? 1 : 0) << bit;
    return agreed;
  }

  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }
  bool every(int64_t n) const { return n > 0 && state_.step % n == 0; }

  void log_progress(const LogWindow& w, double elapsed, int64_t steps_done, double max_seconds) {
    const ThroughputUnit unit = task_.throughput_unit();
    ProgressLine line;
    line.step = state_.step;
    line.max_steps = config_.train().max_steps();
    line.loss = w.loss_sum / w.normaliser;
    line.lr = grad_sync_->optimizer().lr();
    line.units_per_s = w.units / w.seconds;
    line.unit = unit.symbol;
    line.step_time_s = w.seconds / w.steps;
    const double per_step = elapsed / static_cast<double>(std::max<int64_t>(1, steps_done));
    line.eta_s = per_step * static_cast<double>(line.max_steps - line.step);
    if (max_seconds > 0) line.eta_s = std::min(line.eta_s, std::max(0.0, max_seconds - elapsed));
    const std::string text = line.str();
    say("%s\n", text.c_str());
    LOG(INFO) << text;
    std::vector<std::pair<std::string, double>> values = {{"loss", line.loss},
                                                          {"lr", line.lr},
                                                          {unit.metric, line.units_per_s},
                                                          {"step_time_s", line.step_time_s},
                                                          {"grad_norm", w.grad_norm_sum / w.steps}};
    if (scaler_.enabled()) values.emplace_back("loss_scale", scaler_.scale());
    if (w.skipped > 0) values.emplace_back("skipped_steps", w.skipped);
    if (metrics_) metrics_->write(state_.step, values);
  }

  void evaluate() {
    const auto start = std::chrono::steady_clock::now();
    const EvalReport report = task_.evaluate(grid_);
    const double seconds = seconds_since(start);
    last_eval_step_ = state_.step;
    LOG(INFO) << "eval at step " << state_.step << ": " << report.summary;
    if (!leader_) return;
    std::printf("eval  %lld | %s | %.1f s\n", static_cast<long long>(state_.step), report.summary.c_str(), seconds);
    for (const std::string& line : report.examples) std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    std::vector<std::pair<std::string, double>> values;
    for (const auto& [name, value] : report.metrics) values.emplace_back("valid_" + name, value);
    metrics_->write(state_.step, values);
  }

  void checkpoint() {
    if (last_checkpoint_step_ == state_.step) return;
    const std::string dir = save_checkpoint(run_.root, task_.model(), grad_sync_->optimizer(), state_, config_to_text(config_),
                                            config_.checkpoint().keep_last(), layout_);
    grid_.world().barrier()->wait();  // no rank runs ahead of a checkpoint that is not complete
    last_checkpoint_step_ = state_.step;
    LOG(INFO) << "checkpoint " << dir;
  }

  RunDir run_;
  config::Config config_;
  Task& task_;
  parallel::ParallelGrid& grid_;
  bool leader_;  // world rank 0: console, metrics, checkpoint files
  std::unique_ptr<parallel::GradSync> grad_sync_;  // owns the optimizer
  std::unique_ptr<optim::LrSchedule> schedule_;
  std::unique_ptr<MetricsWriter> metrics_;  // rank 0 only
  ShardLayout layout_;
  TrainState state_;
  optim::LossScaler scaler_;  // f16's dynamic loss scale; a constant 1 otherwise
  int skipped_in_a_row_ = 0;
  int64_t last_checkpoint_step_ = -1, last_eval_step_ = -1;
};

// The set-up every rank does before training: the config and the task over its dataset, checked against the
// layout and the run dir before the run dir is touched.
struct TrainSetup {
  config::Config config;
  std::unique_ptr<Task> task;
  DevicePlan plan;
};

TrainSetup set_up(const TrainCommand& command, const RunDir& run, const parallel::ProcessPlacement& placement) {
  const int world_size = placement.size;
  TrainSetup setup;
  setup.config = resolve_config(command, run);
  check_world_layout(setup.config, world_size);
  setup.plan = plan_device(setup.config.train().device(), setup.config.train().precision(),
                           setup.config.parallel().gpu_collectives(), placement);
  setup.task = task_kind(setup.config).open(setup.config);
  setup.task->check_set_up(run, world_size);
  return setup;
}

// Every rank learns whether any set-up failed, so that none waits for another in a collective. When one did,
// each distinct message is printed once: rank 0 rethrows its error (or says another rank failed), another rank
// rethrows its own only when it differs from rank 0's; the others return false to exit 2 quietly. The same
// all-reduce checks that every rank computes on the same kind of device (each collective goes to one transport,
// MPI or NCCL, by its tensors' device): a mix is a ConfigError from rank 0.
bool agree_on_set_up(parallel::ProcessGroup& world, const std::exception_ptr& error, const Device& device) {
  std::string message;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = e.what();
    }
  }
  const double on_gpu = !error && !device.is_cpu() ? 1.0 : 0.0;
  // (3): error, on a GPU, minus on a GPU; the max of each over ranks
  const Tensor flags = from_vector(std::vector<double>{error ? 1.0 : 0.0, on_gpu, -on_gpu}, {3}, DType::f64);
  world.all_reduce(flags, parallel::ReduceOp::max)->wait();
  if (flags.data<double>()[0] == 0) {
    if (flags.data<double>()[1] == -flags.data<double>()[2]) return true;  // max(gpu) == min(gpu)
    if (world.rank() != 0) return false;
    throw ConfigError("train.device: some ranks compute on a GPU and others on the CPU (train.device auto on "
                      "nodes with and without GPUs?); set train.device to cpu or cuda");
  }
  const Tensor rank0_hash = full({1}, 0.0, DType::i64);
  if (world.rank() == 0) rank0_hash.data<int64_t>()[0] = static_cast<int64_t>(std::hash<std::string>{}(message));
  world.broadcast(rank0_hash, 0)->wait();
  const bool same_as_rank0 = static_cast<int64_t>(std::hash<std::string>{}(message)) == rank0_hash.data<int64_t>()[0];
  if (error && (world.rank() == 0 || !same_as_rank0)) std::rethrow_exception(error);
  if (world.rank() == 0) throw Error("stopping: another rank failed to start (see its message)");
  return false;
}

int train_on(const TrainCommand& command, const RunDir& run, TrainSetup setup, parallel::World& world) {
  const auto timeout = std::chrono::milliseconds(
      static_cast<int64_t>(setup.config.parallel().timeout_minutes() * 60 * 1000));
  world.group().set_timeout(timeout);
  if (!setup.plan.device.is_cpu()) set_current_gpu(setup.plan.device.index);  // NCCL's communicators are made on it
  // On GPUs over NCCL the world routes GPU tensors to NCCL and host tensors (control: stop agreement, loss and
  // norm scalars, barriers, checkpoints) to MPI; its tp and dp splits are routed the same way.
  std::unique_ptr<parallel::ProcessGroup> routed_world;
  if (world.size() > 1 && !setup.plan.device.is_cpu() && setup.plan.nccl) {
    parallel::GroupOptions options;
    options.timeout = timeout;
    routed_world = parallel::make_nccl_routed_world(world.group(), setup.plan.device, options);
  }
  parallel::ParallelGrid grid(routed_world ? *routed_world : world.group(), setup.config.parallel().tp());
  grid.tp().set_timeout(timeout);
  grid.dp().set_timeout(timeout);
  const int threads = setup.config.train().threads();
  set_num_threads(threads > 0 ? threads : default_num_threads(world.placement().local_size));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines reach a redirected log as they happen
  fs::create_directories(run.root);
  log_to_files(run.logs(), world.rank());
  LOG(INFO) << "rank " << world.rank() << " of " << world.size() << " (local rank "
            << world.placement().local_rank << "); " << grid.str() << "; " << setup.plan.summary;
  const std::vector<std::string> gpu_lines = gpu_lines_per_node(world.group(), world.placement(), setup.plan);
  if (world.rank() == 0) {
    for (const std::string& gpu : gpu_lines) std::printf("%s\n", gpu.c_str());
    std::printf("%s\n", setup.plan.summary.c_str());
    if (!setup.plan.sharing.empty()) std::printf("%s\n", setup.plan.sharing.c_str());
    setup.task->record_run(run);
  }
  Trainer trainer(command, setup.config, *setup.task, grid, setup.plan);
  if (world.rank() == 0) write_file_durably<Error>(run.config(), config_to_text(setup.config));
  return trainer.run();
}

}  // namespace

int run_train(const TrainCommand& command) {
  if (command.run_dir.empty()) throw UsageError("train: --run-dir is required");
  const RunDir run{command.run_dir};
  parallel::World world;
  if (world.size() == 1) return train_on(command, run, set_up(command, run, world.placement()), world);
  TrainSetup setup;
  std::exception_ptr error;
  try {
    setup = set_up(command, run, world.placement());
  } catch (const std::exception&) {  // px::Error (the user's input) or the file system
    error = std::current_exception();
  }
  // Printed here, before World's destructor finalises MPI: a rank that exits first makes mpirun kill the others.
  try {
    if (!agree_on_set_up(world.group(), error, setup.plan.device)) return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parallax: error: %s\n", e.what());
    return 2;
  }
  // Later, one rank's error (a lost peer, a bad shard) must not leave the others waiting: the job is aborted.
  std::string what;
  try {
    return train_on(command, run, std::move(setup), world);
  } catch (const Error& e) {
    what = e.what();
  } catch (const std::exception& e) {
    what = e.what();
  }
  std::fprintf(stderr, "parallax: error: rank %d: %s\n", world.rank(), what.c_str());
  std::fflush(stderr);
  parallel::abort_job(2);
}

}  // namespace px

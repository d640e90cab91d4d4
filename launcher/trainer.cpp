// The training loop of `parallax train` on any dp x tp layout: set-up agreed by every rank, resume, the step
// (micro-batches, bucketed dp all-reduce or ZeRO-1, clipping over shards, AdamW), progress, eval, checkpoints.
#include "launcher/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include <glog/logging.h>

#include "core/autograd/engine.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/lr_schedule.h"
#include "core/util/error.h"
#include "core/util/logging.h"
#include "data/translation_loader.h"
#include "launcher/checkpoint.h"
#include "launcher/config.h"
#include "launcher/evaluator.h"
#include "launcher/metrics.h"
#include "launcher/translator_setup.h"
#include "parallel/comm/world.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/dp/zero_adamw.h"
#include "parallel/grad_clip.h"
#include "parallel/grid.h"
#include "parallel/tp/shard_spec.h"

namespace px {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};

constexpr char kShardedDropoutRng[] = "dropout_sharded";

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

// Writes `text` to `path` through a temporary file and a rename.
void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) throw Error(tmp + ": cannot write");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error(path + ": cannot replace: " + ec.message());
}

std::unique_ptr<optim::LrSchedule> make_schedule(const config::Config& config) {
  const auto& s = config.schedule();
  if (s.name() == "inverse_sqrt") return std::make_unique<optim::InverseSqrtSchedule>(s.warmup_steps());
  if (s.name() == "cosine") {
    return std::make_unique<optim::CosineSchedule>(s.warmup_steps(), config.train().max_steps(), s.min_lr_ratio());
  }
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

// Mean of the steps since the last log line.
struct LogWindow {
  int steps = 0;
  double loss_sum = 0, tgt_tokens = 0, seconds = 0, grad_norm_sum = 0;
  void clear() { *this = LogWindow{}; }
};

class Trainer {
 public:
  Trainer(const TrainCommand& command, config::Config config, TranslationData data, parallel::ParallelGrid& grid)
      : run_{command.run_dir},
        config_(std::move(config)),
        data_(std::move(data)),
        grid_(grid),
        leader_(grid.world().rank() == 0),
        bundle_(build_translator(config_, data_, &grid)),
        model_(*bundle_.model),
        schedule_(make_schedule(config_)) {
    if (leader_) metrics_ = std::make_unique<MetricsWriter>(run_.metrics());
    const auto& o = config_.optimizer();
    const optim::AdamWOptions adamw_options{o.beta1(), o.beta2(), o.eps()};
    if (o.shard_state() && grid_.dp_size() > 1) {
      auto zero = std::make_unique<parallel::ZeroAdamW>(model_.named_parameters(), o.lr(), o.weight_decay(),
                                                        adamw_options, grid_.dp());
      zero_ = zero.get();
      optimizer_ = std::move(zero);
      say("optimizer state: %.1f MiB per rank (ZeRO-1 over dp %d; %.1f MiB unsharded)\n",
          static_cast<double>(zero_->state_bytes()) / (1 << 20), grid_.dp_size(),
          static_cast<double>(zero_->unsharded_state_bytes()) / (1 << 20));
    } else {
      optimizer_ = std::make_unique<optim::AdamW>(model_.parameters(), o.lr(), o.weight_decay(), adamw_options);
    }
    layout_.tp = &grid_.tp();
    layout_.specs = parallel::collect_shard_specs(model_);
    layout_.writer = leader_;
    layout_.world_size = grid_.world().size();
    if (grid_.dp_size() > 1 && zero_ == nullptr) {
      parallel::GradBucketerOptions bucket_options;
      bucket_options.bucket_bytes = static_cast<int64_t>(config_.parallel().bucket_mb() * 1024 * 1024);
      bucket_options.op = parallel::ReduceOp::sum;  // each rank's loss is already divided by the global token count
      bucket_options.overlap = config_.parallel().overlap();
      bucketer_ = std::make_unique<parallel::GradBucketer>(model_.parameters(), grid_.dp(), bucket_options);
    }
    state_.cursor = data::DataCursor{config_.train().seed(), 0, 0, 0};
    state_.rngs = {{"dropout", bundle_.dropout_gen.get()}};
    // The sharded-activation stream has a seed of each tp rank's own but the same offset on all of them (every
    // rank drops equally many elements): the checkpoint keeps rank 0's, and a resume keeps its own seed with the
    // saved offset. A checkpoint of a tp = 1 run has none: the stream then starts fresh.
    const auto latest = latest_checkpoint(run_.root);
    Generator* sharded = bundle_.sharded_dropout_gen.get();
    bool restore_sharded = false;
    if (sharded != nullptr && latest) {
      const ckpt::proto::Manifest manifest = read_manifest(*latest);
      restore_sharded = std::any_of(manifest.rng().begin(), manifest.rng().end(),
                                    [](const ckpt::proto::RngState& r) { return r.name() == kShardedDropoutRng; });
    }
    if (restore_sharded) state_.rngs.emplace_back(kShardedDropoutRng, sharded);
    if (latest) {
      const uint64_t own_seed = sharded != nullptr ? sharded->seed() : 0;
      load_checkpoint(*latest, model_, optimizer_.get(), &state_, layout_);
      if (sharded != nullptr) sharded->set_state(own_seed, sharded->offset());
      LOG(INFO) << "resumed from " << *latest << " at step " << state_.step;
      say("resuming from %s (step %lld)\n", latest->c_str(), static_cast<long long>(state_.step));
    }
    if (sharded != nullptr && !restore_sharded) state_.rngs.emplace_back(kShardedDropoutRng, sharded);
    last_checkpoint_step_ = state_.step;
  }

  int run() {
    const auto& train = config_.train();
    LOG(INFO) << "model: " << model_.num_parameters() << " parameters; config:\n" << config_to_text(config_);
    say("model: %.2fM parameters%s, vocab %lld/%lld; %s; training to step %lld",
        static_cast<double>(model_.num_parameters()) / 1e6, grid_.tp_size() > 1 ? " per tp rank" : "",
        static_cast<long long>(data_.src_vocab), static_cast<long long>(data_.tgt_vocab), grid_.str().c_str(),
        static_cast<long long>(train.max_steps()));
    if (train.max_minutes() > 0) say(" or for %g minutes", train.max_minutes());
    say("\n");
    if (state_.step >= train.max_steps()) {
      say("nothing to do: step %lld >= train.max_steps %lld (raise it with --set train.max_steps=N)\n",
          static_cast<long long>(state_.step), static_cast<long long>(train.max_steps()));
      return 0;
    }
    data::TranslationLoaderOptions loader_options;
    loader_options.shards = data_.shards(config_.data().train_split());
    loader_options.max_tokens = train.batch_tokens();
    loader_options.max_length = config_.data().max_length();
    loader_options.max_epochs = train.max_epochs();
    loader_options.prefetch = config_.data().prefetch();
    loader_options.pad_id = data_.pad_id;
    loader_options.bos_id = data_.bos_id;
    loader_options.eos_id = data_.eos_id;
    loader_options.rank = grid_.dp_rank();  // the tp ranks of a replica read the same slice
    loader_options.world = grid_.dp_size();
    data::TranslationLoader loader(loader_options, state_.cursor);

    StopSignals signals;
    const auto start = std::chrono::steady_clock::now();
    const double max_seconds = train.max_minutes() * 60.0;
    const double max_norm = config_.optimizer().clip_grad_norm() > 0 ? config_.optimizer().clip_grad_norm()
                                                                      : std::numeric_limits<double>::infinity();
    const std::vector<std::pair<std::string, Tensor>> named_params = model_.named_parameters();
    const int64_t first_step = state_.step;
    std::string stop_reason = "train.max_steps reached";
    bool stopped_by_signal = false;
    LogWindow window;
    model_.train();
    while (state_.step < train.max_steps()) {
      const auto step_start = std::chrono::steady_clock::now();
      // One update from train.accumulate_steps global batches (micro-batches); an incomplete last group at the
      // end of the data is not trained on.
      std::vector<data::TranslationBatch> micro;
      while (static_cast<int>(micro.size()) < train.accumulate_steps()) {
        std::optional<data::TranslationBatch> batch = loader.next();
        if (!batch) break;
        micro.push_back(std::move(*batch));
      }
      if (static_cast<int>(micro.size()) < train.accumulate_steps()) {
        stop_reason = "train.max_epochs reached";
        break;
      }
      optim::apply_schedule(*optimizer_, *schedule_, state_.step + 1);
      double tokens = 0;
      for (const data::TranslationBatch& b : micro) tokens += static_cast<double>(b.global_tgt_tokens);
      double local_loss = 0;
      for (size_t k = 0; k < micro.size(); ++k) {
        const data::TranslationBatch& b = micro[k];
        // Gradients accumulate locally; the dp all-reduce starts during the last micro-batch's backward.
        if (bucketer_) bucketer_->set_sync(k + 1 == micro.size());
        // A rank whose slice of a global batch is empty computes nothing but still joins every collective
        // (its buckets contribute what it has accumulated, or zeros).
        if (b.src.size(0) == 0) continue;
        const Tensor loss_sum = model_.loss(b.src, b.tgt_in, b.tgt_out, train.label_smoothing());
        backward(loss_sum * (1.0 / tokens));
        local_loss += loss_sum.item();
      }
      if (bucketer_) bucketer_->finish();
      if (zero_ != nullptr) zero_->reduce_gradients();
      const double loss_total = parallel::all_reduce_value(grid_.dp(), local_loss, parallel::ReduceOp::sum);
      const double loss_value = loss_total / tokens;
      const double grad_norm = zero_ != nullptr
                                   ? zero_->clip_grad_norm(layout_.specs, grid_.tp(), max_norm)
                                   : parallel::clip_grad_norm(named_params, layout_.specs, grid_.tp(), max_norm);
      if (std::isfinite(loss_value) && std::isfinite(grad_norm)) {
        if (zero_ != nullptr) {
          zero_->step_and_gather();
        } else {
          optimizer_->step();
        }
      } else {
        LOG(WARNING) << "step " << state_.step + 1 << ": non-finite loss " << loss_value << " or grad norm "
                     << grad_norm << "; update skipped";
      }
      optimizer_->zero_grad();
      if (zero_ != nullptr) model_.zero_grad();  // the optimizer's own params are the dp slices
      ++state_.step;
      state_.cursor = micro.back().after;
      state_.tokens_seen += static_cast<int64_t>(tokens);  // every dp rank's slice
      const double step_seconds = seconds_since(step_start);
      state_.train_seconds += step_seconds;
      window.steps += 1;
      window.loss_sum += loss_total;
      window.tgt_tokens += tokens;
      window.seconds += step_seconds;
      window.grad_norm_sum += grad_norm;

      const double elapsed = seconds_since(start);
      // Every rank stops at the same step: rank 0's clock decides the time limit, any rank's signal stops all.
      const int local_signal = signals.received();
      const int stop_flags = agree_or((leader_ && max_seconds > 0 && elapsed >= max_seconds ? 1 : 0) |
                                      (local_signal == SIGINT ? 2 : 0) | (local_signal == SIGTERM ? 4 : 0) |
                                      (local_signal == SIGUSR1 ? 8 : 0));
      const bool out_of_time = (stop_flags & 1) != 0;
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
      if ((stop_flags & 14) != 0) {
        stopped_by_signal = true;
        stop_reason = std::string("stopped by ") +
                      ((stop_flags & 2) != 0 ? "SIGINT" : (stop_flags & 4) != 0 ? "SIGTERM" : "SIGUSR1");
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

  // The bitwise or of `flags` (4 bits) over every rank: one max all-reduce of the bits.
  int agree_or(int flags) {
    if (grid_.world().size() == 1) return flags;
    std::vector<double> bits;
    for (int bit = 0; bit < 4; ++bit) bits.push_back((flags >> bit) & 1);
    const Tensor t = from_vector(bits, {4}, DType::f64);
    grid_.world().all_reduce(t, parallel::ReduceOp::max)->wait();
    int agreed = 0;
    for (int bit = 0; bit < 4; ++bit) agreed |= (t.data<double>()[bit] > 0 ? 1 : 0) << bit;
    return agreed;
  }

  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }
  bool every(int64_t n) const { return n > 0 && state_.step % n == 0; }

  void log_progress(const LogWindow& w, double elapsed, int64_t steps_done, double max_seconds) {
    ProgressLine line;
    line.step = state_.step;
    line.max_steps = config_.train().max_steps();
    line.loss = w.loss_sum / w.tgt_tokens;
    line.lr = optimizer_->lr();
    line.tokens_per_s = w.tgt_tokens / w.seconds;
    line.step_time_s = w.seconds / w.steps;
    const double per_step = elapsed / static_cast<double>(std::max<int64_t>(1, steps_done));
    line.eta_s = per_step * static_cast<double>(line.max_steps - line.step);
    if (max_seconds > 0) line.eta_s = std::min(line.eta_s, std::max(0.0, max_seconds - elapsed));
    const std::string text = line.str();
    say("%s\n", text.c_str());
    LOG(INFO) << text;
    if (metrics_) metrics_->write(state_.step, {{"loss", line.loss},
                                 {"lr", line.lr},
                                 {"tokens_per_s", line.tokens_per_s},
                                 {"step_time_s", line.step_time_s},
                                 {"grad_norm", w.grad_norm_sum / w.steps}});
  }

  void evaluate() {
    EvalOptions options;
    options.split = config_.data().valid_split();
    options.label_smoothing = config_.train().label_smoothing();
    options.batch_tokens = config_.eval().batch_tokens();
    options.max_sentences = config_.eval().max_sentences();
    options.decode = decode_options(config_, data_, 0);
    // Each dp replica evaluates every dp-th pair (its tp ranks decode together); the sums are all-reduced over dp
    // and rank 0 reports.
    options.shard = grid_.dp_rank();
    options.num_shards = grid_.dp_size();
    options.sum_over_shards = [this](std::vector<double>& values) {
      const Tensor t = from_vector(values, {static_cast<int64_t>(values.size())}, DType::f64);
      grid_.dp().all_reduce(t, parallel::ReduceOp::sum)->wait();
      std::copy(t.data<double>(), t.data<double>() + values.size(), values.begin());
    };
    const EvalResult r = evaluate_split(model_, data_, options);
    last_eval_step_ = state_.step;
    LOG(INFO) << "eval at step " << state_.step << ": valid loss " << r.loss << ", " << r.bleu.str();
    if (!leader_) return;
    std::printf("eval  %lld | valid loss %.3f | ppl %.2f | BLEU %.2f on %lld sentences (beam %d) | %.1f s\n",
                static_cast<long long>(state_.step), r.loss, std::exp(r.nll), r.bleu.score,
                static_cast<long long>(r.sentences), options.decode.beam, r.seconds);
    for (size_t i = 0; i < std::min<size_t>(2, r.hypotheses.size()); ++i) {
      std::printf("  src: %s\n  ref: %s\n  hyp: %s\n", r.sources[i].c_str(), r.references[i].c_str(),
                  r.hypotheses[i].c_str());
    }
    std::fflush(stdout);
    metrics_->write(state_.step, {{"valid_loss", r.loss}, {"valid_ppl", std::exp(r.nll)}, {"valid_bleu", r.bleu.score}});
  }

  void checkpoint() {
    if (last_checkpoint_step_ == state_.step) return;
    const std::string dir = save_checkpoint(run_.root, model_, *optimizer_, state_, config_to_text(config_),
                                            config_.checkpoint().keep_last(), layout_);
    grid_.world().barrier()->wait();  // no rank runs ahead of a checkpoint that is not complete
    last_checkpoint_step_ = state_.step;
    LOG(INFO) << "checkpoint " << dir;
  }

  RunDir run_;
  config::Config config_;
  TranslationData data_;
  parallel::ParallelGrid& grid_;
  bool leader_;  // world rank 0: console, metrics, checkpoint files
  TranslatorBundle bundle_;
  translator::Translator& model_;
  std::unique_ptr<optim::AdamW> optimizer_;
  std::unique_ptr<optim::LrSchedule> schedule_;
  std::unique_ptr<MetricsWriter> metrics_;  // rank 0 only
  ShardLayout layout_;
  std::unique_ptr<parallel::GradBucketer> bucketer_;  // dp > 1 without ZeRO
  parallel::ZeroAdamW* zero_ = nullptr;  // optimizer_ when optimizer.shard_state and dp > 1
  TrainState state_;
  int64_t last_checkpoint_step_ = -1, last_eval_step_ = -1;
};

// The set-up every rank does before training: the config, the dataset, its splits, the layout.
struct TrainSetup {
  config::Config config;
  TranslationData data;
};

TrainSetup set_up(const TrainCommand& command, const RunDir& run, int world_size) {
  TrainSetup setup;
  setup.config = resolve_config(command, run);
  // Everything the run reads is checked before the run dir is touched: the config, the dataset, its splits.
  setup.data = open_translation_data(setup.config);
  setup.data.shards(setup.config.data().train_split());
  setup.data.shards(setup.config.data().valid_split());
  check_parallel_layout(setup.config, world_size, setup.data.src_vocab, setup.data.tgt_vocab);
  check_run_tokenizer(run, setup.data, /*record=*/false);
  return setup;
}

// Every rank learns whether any set-up failed, so that none waits for another in a collective. When one did,
// each distinct message is printed once: rank 0 rethrows its error (or says another rank failed), another rank
// rethrows its own only when it differs from rank 0's; the others return false to exit 2 quietly.
bool agree_on_set_up(parallel::ProcessGroup& world, const std::exception_ptr& error) {
  std::string message;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = e.what();
    }
  }
  if (parallel::all_reduce_value(world, error ? 1.0 : 0.0, parallel::ReduceOp::max) == 0) return true;
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
  parallel::ParallelGrid grid(world.group(), setup.config.parallel().tp());
  grid.tp().set_timeout(timeout);
  grid.dp().set_timeout(timeout);
  set_num_threads(setup.config.train().threads() > 0 ? setup.config.train().threads() : default_num_threads());
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines reach a redirected log as they happen
  fs::create_directories(run.root);
  log_to_files(run.logs(), world.rank());
  LOG(INFO) << "rank " << world.rank() << " of " << world.size() << " (local rank "
            << world.placement().local_rank << "); " << grid.str();
  if (world.rank() == 0) check_run_tokenizer(run, setup.data, /*record=*/true);
  Trainer trainer(command, setup.config, std::move(setup.data), grid);
  if (world.rank() == 0) write_file_atomically(run.config(), config_to_text(setup.config));
  return trainer.run();
}

}  // namespace

int run_train(const TrainCommand& command) {
  if (command.run_dir.empty()) throw UsageError("train: --run-dir is required");
  const RunDir run{command.run_dir};
  parallel::World world;
  if (world.size() == 1) return train_on(command, run, set_up(command, run, 1), world);
  TrainSetup setup;
  std::exception_ptr error;
  try {
    setup = set_up(command, run, world.size());
  } catch (const std::exception&) {  // px::Error (the user's input) or the file system
    error = std::current_exception();
  }
  // Printed here, before World's destructor finalises MPI: a rank that exits first makes mpirun kill the others.
  try {
    if (!agree_on_set_up(world.group(), error)) return 2;
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

// The training loop of `parallax train`: run-dir set-up and resume, the step (forward, label-smoothed loss,
// backward, clipping, AdamW with the lr schedule), progress lines, metrics, periodic eval and checkpoints.
#include "launcher/trainer.h"

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
#include "core/optim/clip_grad_norm.h"
#include "core/optim/lr_schedule.h"
#include "core/util/error.h"
#include "core/util/logging.h"
#include "data/translation_loader.h"
#include "launcher/checkpoint.h"
#include "launcher/config.h"
#include "launcher/evaluator.h"
#include "launcher/metrics.h"
#include "launcher/translator_setup.h"

namespace px {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int signal) { g_stop_signal.store(signal); }

// SIGINT/SIGTERM ask the loop to stop after the current step (and save); restored on scope exit.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }
  int received() const { return g_stop_signal.load(); }

 private:
  void (*old_int_)(int) = SIG_DFL;
  void (*old_term_)(int) = SIG_DFL;
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
  Trainer(const TrainCommand& command, config::Config config, TranslationData data)
      : run_{command.run_dir},
        config_(std::move(config)),
        data_(std::move(data)),
        bundle_(build_translator(config_, data_)),
        model_(*bundle_.model),
        schedule_(make_schedule(config_)),
        metrics_(run_.metrics()) {
    const auto& o = config_.optimizer();
    optimizer_ = std::make_unique<optim::AdamW>(model_.parameters(), o.lr(), o.weight_decay(),
                                                optim::AdamWOptions{o.beta1(), o.beta2(), o.eps()});
    state_.cursor = data::DataCursor{config_.train().seed(), 0, 0, 0};
    state_.rngs = {{"dropout", bundle_.dropout_gen.get()}};
    if (const auto latest = latest_checkpoint(run_.root)) {
      load_checkpoint(*latest, model_, optimizer_.get(), &state_);
      LOG(INFO) << "resumed from " << *latest << " at step " << state_.step;
      std::printf("resuming from %s (step %lld)\n", latest->c_str(), static_cast<long long>(state_.step));
    }
    last_checkpoint_step_ = state_.step;
  }

  int run() {
    const auto& train = config_.train();
    LOG(INFO) << "model: " << model_.num_parameters() << " parameters; config:\n" << config_to_text(config_);
    std::printf("model: %.2fM parameters, vocab %lld/%lld; training to step %lld",
                static_cast<double>(model_.num_parameters()) / 1e6, static_cast<long long>(data_.src_vocab),
                static_cast<long long>(data_.tgt_vocab), static_cast<long long>(train.max_steps()));
    if (train.max_minutes() > 0) std::printf(" or for %g minutes", train.max_minutes());
    std::printf("\n");
    if (state_.step >= train.max_steps()) {
      std::printf("nothing to do: step %lld >= train.max_steps %lld (raise it with --set train.max_steps=N)\n",
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
    data::TranslationLoader loader(loader_options, state_.cursor);

    StopSignals signals;
    const auto start = std::chrono::steady_clock::now();
    const double max_seconds = train.max_minutes() * 60.0;
    const double max_norm = config_.optimizer().clip_grad_norm() > 0 ? config_.optimizer().clip_grad_norm()
                                                                      : std::numeric_limits<double>::infinity();
    const std::vector<Tensor> params = model_.parameters();
    const int64_t first_step = state_.step;
    std::string stop_reason = "train.max_steps reached";
    LogWindow window;
    model_.train();
    while (state_.step < train.max_steps()) {
      const auto step_start = std::chrono::steady_clock::now();
      std::optional<data::TranslationBatch> batch = loader.next();
      if (!batch) {
        stop_reason = "train.max_epochs reached";
        break;
      }
      if (batch->src.size(0) == 0) continue;
      optim::apply_schedule(*optimizer_, *schedule_, state_.step + 1);
      const Tensor logits = model_.forward(batch->src, batch->tgt_in);  // (B, T, V)
      const Tensor loss_sum = translator::translation_loss(logits, batch->tgt_out, data_.pad_id,
                                                           train.label_smoothing());
      const double tokens = static_cast<double>(batch->global_tgt_tokens);
      backward(loss_sum * (1.0 / tokens));
      const double loss_total = loss_sum.item();
      const double loss_value = loss_total / tokens;
      const double grad_norm = optim::clip_grad_norm(params, max_norm);
      if (std::isfinite(loss_value) && std::isfinite(grad_norm)) {
        optimizer_->step();
      } else {
        LOG(WARNING) << "step " << state_.step + 1 << ": non-finite loss " << loss_value << " or grad norm "
                     << grad_norm << "; update skipped";
      }
      optimizer_->zero_grad();
      ++state_.step;
      state_.cursor = batch->after;
      state_.tokens_seen += batch->tgt_tokens;
      const double step_seconds = seconds_since(step_start);
      state_.train_seconds += step_seconds;
      window.steps += 1;
      window.loss_sum += loss_total;
      window.tgt_tokens += tokens;
      window.seconds += step_seconds;
      window.grad_norm_sum += grad_norm;

      const double elapsed = seconds_since(start);
      const bool out_of_time = max_seconds > 0 && elapsed >= max_seconds;
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
      if (const int signal = signals.received()) {
        stop_reason = std::string("stopped by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
    }
    checkpoint();
    std::printf("%s at step %lld; checkpoint saved in %s/checkpoints\n", stop_reason.c_str(),
                static_cast<long long>(state_.step), run_.root.c_str());
    // A stop request (preemption) leaves now; a run that reached its limit reports its final quality.
    if (signals.received() == 0 && last_eval_step_ != state_.step) evaluate();
    return 0;
  }

 private:
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
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
    LOG(INFO) << text;
    metrics_.write(state_.step, {{"loss", line.loss},
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
    const EvalResult r = evaluate_split(model_, data_, options);
    last_eval_step_ = state_.step;
    std::printf("eval  %lld | valid loss %.3f | ppl %.2f | BLEU %.2f on %lld sentences (beam %d) | %.1f s\n",
                static_cast<long long>(state_.step), r.loss, std::exp(r.nll), r.bleu.score,
                static_cast<long long>(r.sentences), options.decode.beam, r.seconds);
    for (size_t i = 0; i < std::min<size_t>(2, r.hypotheses.size()); ++i) {
      std::printf("  src: %s\n  ref: %s\n  hyp: %s\n", r.sources[i].c_str(), r.references[i].c_str(),
                  r.hypotheses[i].c_str());
    }
    std::fflush(stdout);
    LOG(INFO) << "eval at step " << state_.step << ": valid loss " << r.loss << ", " << r.bleu.str();
    metrics_.write(state_.step, {{"valid_loss", r.loss}, {"valid_ppl", std::exp(r.nll)}, {"valid_bleu", r.bleu.score}});
  }

  void checkpoint() {
    if (last_checkpoint_step_ == state_.step) return;
    const std::string dir = save_checkpoint(run_.root, model_, *optimizer_, state_, config_to_text(config_),
                                            config_.checkpoint().keep_last());
    last_checkpoint_step_ = state_.step;
    LOG(INFO) << "checkpoint " << dir;
  }

  RunDir run_;
  config::Config config_;
  TranslationData data_;
  TranslatorBundle bundle_;
  translator::Translator& model_;
  std::unique_ptr<optim::AdamW> optimizer_;
  std::unique_ptr<optim::LrSchedule> schedule_;
  MetricsWriter metrics_;
  TrainState state_;
  int64_t last_checkpoint_step_ = -1, last_eval_step_ = -1;
};

}  // namespace

int run_train(const TrainCommand& command) {
  if (command.run_dir.empty()) throw UsageError("train: --run-dir is required");
  const RunDir run{command.run_dir};
  config::Config config = resolve_config(command, run);
  // Everything the run reads is checked before the run dir is touched: the config, the dataset, its splits.
  TranslationData data = open_translation_data(config);
  data.shards(config.data().train_split());
  data.shards(config.data().valid_split());
  check_run_tokenizer(run, data, /*record=*/false);
  set_num_threads(config.train().threads() > 0 ? config.train().threads() : default_num_threads());
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines reach a redirected log as they happen
  fs::create_directories(run.root);
  log_to_files(run.logs(), 0);
  check_run_tokenizer(run, data, /*record=*/true);
  Trainer trainer(command, config, std::move(data));
  write_file_atomically(run.config(), config_to_text(config));
  return trainer.run();
}

}  // namespace px

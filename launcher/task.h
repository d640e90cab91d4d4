// Task: what `parallax train` needs from a model kind (translator, DETR): its data and model, parameter groups,
// RNG streams, batches and loss normaliser, evaluation and throughput unit; TaskKind: its config checks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "configs/parallax.pb.h"
#include "core/nn/module.h"
#include "core/optim/optimizer.h"
#include "core/tensor/tensor.h"
#include "core/util/generator.h"
#include "data/sampler.h"
#include "launcher/device_plan.h"
#include "launcher/run_dir.h"
#include "models/common/transformer_layers.h"
#include "parallel/comm/process_group.h"
#include "parallel/grid.h"

namespace px {

// This rank's part of one global batch, and where the data stream stands after it.
class TaskBatch {
 public:
  virtual ~TaskBatch() = default;
  // No example on this rank (a short last batch): the rank computes nothing but joins every collective.
  virtual bool empty() const = 0;
  // The host tensors the step reads, which DeviceBatches (launcher/device_batches.h) replaces in place with copies
  // on the model's GPU ahead of the step. None by default (the batch stays on the host).
  virtual std::vector<Tensor*> device_tensors() { return {}; }
  data::DataCursor after;
};

// The training batches of this dp rank, in order; the tp ranks of a replica read the same ones.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // The next batch, or null at the end of the data (train.max_epochs).
  virtual std::unique_ptr<TaskBatch> next() = 0;
};

// A generator the model draws from that a checkpoint saves by name. A stream with a seed of this rank's own
// (dropout of tp-sharded activations) keeps its seed on resume and takes the saved offset (the same on every
// rank); a checkpoint without it (written on another layout) leaves it fresh.
struct RngStream {
  std::string name;
  Generator* generator = nullptr;
  bool rank_own_seed = false;
};

// The generators a model draws from, keyed by (train.seed, the model kind's domain): its weights, its replicated
// dropout, and at tp > 1 this tp rank's own stream for the sharded activations' dropout; with the tp its layers use.
struct ModelGenerators {
  std::unique_ptr<Generator> init, dropout, sharded_dropout;  // sharded_dropout: null at tp 1
  models::TensorParallel tp;  // grid's tp group (none without a grid) and sharded_dropout
  // "dropout" and, at tp > 1, "dropout_sharded" (this rank's seed) for the checkpoint.
  std::vector<RngStream> streams() const;
};
ModelGenerators model_generators(uint64_t seed, uint64_t domain, parallel::ParallelGrid* grid);

// What an evaluation reports: metrics (written to metrics.jsonl as valid_<name>), one console summary
// ("valid loss 2.013 | ppl 5.83 | BLEU 21.40 on 500 sentences (beam 4)") and example lines under it.
struct EvalReport {
  std::vector<std::pair<std::string, double>> metrics;
  std::string summary;
  std::vector<std::string> examples;  // rank 0's
};

// The unit the progress line counts throughput in: "tok" and metrics key "tokens_per_s" for the translator.
struct ThroughputUnit {
  std::string symbol;
  std::string metric;
};

// One model kind's side of a training run. Built by TaskKind::open on every rank from a validated config
// (reading its dataset), checked against the layout and run dir before anything is written, then asked to
// build its model on the grid.
class Task {
 public:
  virtual ~Task() = default;

  // The checks that need the data, the world size or the run dir (vocabulary % tp, the run's tokenizer):
  // px::Error naming the field. Nothing is written.
  virtual void check_set_up(const RunDir& run, int world_size) const = 0;
  // Records in the run dir what a later resume must match (rank 0, once the run dir exists).
  virtual void record_run(const RunDir& run) const = 0;
  // Builds the model, weights drawn from config's seed (on the CPU in f32, so every device and precision starts
  // from the same values), sharded over grid.tp(), then moved to plan.device in plan.dtype; batches go there too.
  virtual void build_model(parallel::ParallelGrid& grid, const DevicePlan& plan) = 0;
  virtual nn::Module& model() = 0;
  // "vocab 8000/8000" for the console's start line.
  virtual std::string describe() const = 0;
  // The optimizer's parameter groups (lr and weight decay from optimizer.*), covering every parameter once.
  virtual std::vector<optim::ParamGroup> param_groups() const = 0;
  virtual std::vector<RngStream> rng_streams() const = 0;

  // The training batches of dp rank `dp_rank` of `dp_size` from `cursor` on.
  virtual std::unique_ptr<BatchSource> train_batches(const data::DataCursor& cursor, int dp_rank, int dp_size) = 0;
  // What one update's losses are divided by: the same on every rank (target tokens of every micro-batch over
  // every dp rank, for the translator). May be collective over `dp`.
  virtual double normaliser(const std::vector<std::unique_ptr<TaskBatch>>& micro_batches,
                            parallel::ProcessGroup& dp) const = 0;
  // This rank's summed loss of a batch (a 0-d tensor whose backward gives this rank's gradients), the same
  // value on every tp rank.
  virtual Tensor loss_sum(const TaskBatch& batch) = 0;
  // The throughput of an update in its unit, over every dp rank (target tokens for the translator).
  virtual double units(const std::vector<std::unique_ptr<TaskBatch>>& micro_batches) const = 0;
  virtual ThroughputUnit throughput_unit() const = 0;

  // Evaluates the model on the config's validation split, each dp rank on its part of it; the metrics are the
  // whole split's. Collective over the grid.
  virtual EvalReport evaluate(parallel::ParallelGrid& grid) = 0;
};

// A model kind: the name of its ModelConfig `kind` member, its config checks and its Task.
struct TaskKind {
  const char* name;
  // The model's fields and what the layout needs of them (parallel.tp dividing the heads): ConfigError.
  void (*validate)(const config::Config& config);
  // As model_shape_difference, for two configs of this kind.
  std::string (*shape_difference)(const config::Config& checkpoint, const config::Config& current);
  // Opens the config's dataset (px::DataError naming it) and returns the Task, its model not yet built.
  std::unique_ptr<Task> (*open)(const config::Config& config);
};

// The kind of config.model() (a model with none set is the translator).
const TaskKind& task_kind(const config::Config& config);

}  // namespace px

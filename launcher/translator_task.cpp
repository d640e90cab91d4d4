// The translator's side of a run: the dataset and tokenizers a config names, the Translator built from them,
// model.translator's checks and TranslatorTask (batches, loss, evaluation) for the trainer.
#include "launcher/translator_task.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/nn/feed_forward.h"
#include "core/ops/index_check.h"
#include "core/ops/ops.h"
#include "core/util/durable_file.h"
#include "core/util/error.h"
#include "data/dataset_index.h"
#include "data/sampler.h"
#include "data/translation_loader.h"
#include "launcher/config.h"
#include "launcher/device_batches.h"
#include "launcher/translator_eval.h"

namespace px {

namespace fs = std::filesystem;

std::vector<std::string> TranslationData::shards(const std::string& split) const {
  return data::shard_paths(dir, data::find_split(index, split, dir));
}

TranslationData open_translation_data(const config::Config& config) {
  TranslationData data;
  data.dir = config.data().dir();
  if (!fs::is_directory(data.dir)) {
    throw DataError(data.dir + ": data.dir is not a directory (build shards with `parallax data build-translation` "
                    "or `make data`)");
  }
  data.index = data::read_index(data.dir);
  if (data.index.schema() != "parallax.translation") {
    throw DataError(data.dir + ": a " + data.index.schema() + " dataset, the translator needs parallax.translation");
  }
  const auto& tok = data.index.tokenizer();
  data.src_tokenizer = std::make_unique<data::Tokenizer>(data.dir + "/" + tok.src_model());
  data.tgt_tokenizer = std::make_unique<data::Tokenizer>(data.dir + "/" + tok.tgt_model());
  data.src_vocab = data.src_tokenizer->vocab_size();
  data.tgt_vocab = data.tgt_tokenizer->vocab_size();
  data.pad_id = tok.pad_id();
  data.bos_id = tok.bos_id();
  data.eos_id = tok.eos_id();
  if (config.model().translator().share_embeddings() && !tok.joint()) {
    throw ConfigError("model.translator.share_embeddings: " + data.dir +
                      " has separate source and target tokenizers; set model.translator.share_embeddings: false");
  }
  return data;
}

void check_run_tokenizer(const RunDir& run, const TranslationData& data, bool record) {
  const std::string& hash = data.index.tokenizer().hash();
  std::ifstream in(run.tokenizer_hash());
  if (in) {
    std::string trained;
    std::getline(in, trained);
    if (trained != hash) {
      throw ConfigError("data.dir: " + data.dir + " has tokenizer " + hash + ", but the model in " + run.root +
                        " was trained with tokenizer " + trained + "; point data.dir at the run's dataset");
    }
    return;
  }
  if (!record) return;
  write_file_durably<Error>(run.tokenizer_hash(), hash + "\n");
}

TranslatorBundle build_translator(const config::Config& config, const TranslationData& data,
                                  parallel::ParallelGrid* grid, const DevicePlan& plan) {
  TranslatorBundle bundle;
  bundle.generators = model_generators(config.train().seed(), /*domain=*/0x1417, grid);
  const translator::TranslatorOptions options =
      translator_options(config, data.src_vocab, data.tgt_vocab, data.pad_id);
  const ModelGenerators& g = bundle.generators;
  bundle.model = std::make_unique<translator::Translator>(options, *g.init, *g.dropout, g.tp);
  if (!plan.device.is_cpu() || plan.dtype != options.dtype) bundle.model->to(plan.device, plan.dtype);
  return bundle;
}

translator::DecodeOptions decode_options(const config::Config& config, const TranslationData& data, int beam) {
  translator::DecodeOptions options;
  options.beam = beam > 0 ? beam : config.eval().beam();
  options.length_penalty = config.eval().length_penalty();
  options.max_len_a = config.eval().max_len_a();
  options.max_len_b = config.eval().max_len_b();
  options.bos_id = data.bos_id;
  options.eos_id = data.eos_id;
  options.pad_id = data.pad_id;
  return options;
}

namespace {

constexpr char kFields[] = "model.translator.";

std::string field(const char* name) { return std::string(kFields) + name; }

nn::Activation activation_of(const config::TranslatorConfig& m) {
  try {
    return nn::parse_activation(m.activation());
  } catch (const ConfigError& e) {
    throw ConfigError(field("activation") + ": " + e.what());
  }
}

}  // namespace

translator::TranslatorOptions translator_options(const config::Config& config, int64_t src_vocab, int64_t tgt_vocab,
                                                 int64_t pad_id) {
  const config::TranslatorConfig& m = config.model().translator();
  translator::TranslatorOptions options;
  options.src_vocab = src_vocab;
  options.tgt_vocab = tgt_vocab;
  options.d_model = m.d_model();
  options.num_heads = m.num_heads();
  options.encoder_layers = m.encoder_layers();
  options.decoder_layers = m.decoder_layers();
  options.d_ff = m.d_ff();
  options.dropout = m.dropout();
  options.attention_dropout = m.attention_dropout();
  options.activation = activation_of(m);
  options.pre_norm = m.pre_norm();
  options.share_embeddings = m.share_embeddings();
  options.tie_output = m.tie_output();
  options.max_positions = m.max_positions();
  options.pad_id = pad_id;
  return options;
}

namespace {

// tp must divide what it splits: heads (attention), d_ff (the feed-forward block); the vocabularies are
// checked when the data is known (check_set_up).
void validate_translator(const config::Config& config) {
  const config::TranslatorConfig& m = config.model().translator();
  require_at_least(field("d_model"), m.d_model(), 1);
  require_at_least(field("num_heads"), m.num_heads(), 1);
  if (m.d_model() % m.num_heads() != 0)
    throw ConfigError(field("num_heads") + ": " + std::to_string(m.num_heads()) + " does not divide " +
                      field("d_model") + " " + std::to_string(m.d_model()));
  require_at_least(field("encoder_layers"), m.encoder_layers(), 1);
  require_at_least(field("decoder_layers"), m.decoder_layers(), 1);
  require_at_least(field("d_ff"), m.d_ff(), 1);
  require_unit_interval(field("dropout"), m.dropout());
  require_unit_interval(field("attention_dropout"), m.attention_dropout());
  activation_of(m);
  // The loader keeps sequences of at most data.max_length tokens counting eos (source, target output) or
  // bos (target input), so that many positions must have a sinusoid row.
  if (m.max_positions() < config.data().max_length())
    throw ConfigError(field("max_positions") + ": must be >= data.max_length (" +
                      std::to_string(config.data().max_length()) + "), got " + std::to_string(m.max_positions()));
  const int tp = config.parallel().tp();
  if (tp < 1) return;  // validate_config names parallel.tp
  for (const auto& [name, size] : {std::pair<const char*, int>{"num_heads", m.num_heads()}, {"d_ff", m.d_ff()}}) {
    if (size % tp != 0)
      throw ConfigError("parallel.tp: " + std::to_string(tp) + " does not divide " + field(name) + " " +
                        std::to_string(size));
  }
}

std::string translator_shape_difference(const config::Config& checkpoint, const config::Config& current) {
  // max_positions sizes a non-persistent buffer; activation and dropouts have no parameters.
  return shape_difference_of_fields(checkpoint.model().translator(), current.model().translator(),
                                    {"d_model", "num_heads", "encoder_layers", "decoder_layers", "d_ff", "pre_norm",
                                     "share_embeddings", "tie_output"},
                                    kFields);
}

class TranslatorBatch : public TaskBatch {
 public:
  explicit TranslatorBatch(data::TranslationBatch batch) : batch_(std::move(batch)) { after = batch_.after; }
  bool empty() const override { return batch_.src.size(0) == 0; }
  std::vector<Tensor*> device_tensors() override { return {&batch_.src, &batch_.tgt_in, &batch_.tgt_out}; }
  const data::TranslationBatch& batch() const { return batch_; }

 private:
  data::TranslationBatch batch_;
};

// The vocabularies a batch's ids are checked against on the host (for a model on a GPU, whose ops then skip their
// own checks: HostCheckedIndicesGuard).
struct IdBounds {
  int64_t src_vocab = 0, tgt_vocab = 0;
};

class TranslatorBatches : public BatchSource {
 public:
  TranslatorBatches(const data::TranslationLoaderOptions& options, const data::DataCursor& cursor,
                    std::optional<IdBounds> check_ids)
      : loader_(options, cursor), check_ids_(check_ids) {}
  std::unique_ptr<TaskBatch> next() override {
    std::optional<data::TranslationBatch> batch = loader_.next();
    if (!batch) return nullptr;
    if (check_ids_) {
      check_host_indices(batch->src, check_ids_->src_vocab, "translation batch: source");
      check_host_indices(batch->tgt_in, check_ids_->tgt_vocab, "translation batch: target input");
      check_host_indices(batch->tgt_out, check_ids_->tgt_vocab, "translation batch: target");
    }
    return std::make_unique<TranslatorBatch>(std::move(*batch));
  }

 private:
  data::TranslationLoader loader_;
  std::optional<IdBounds> check_ids_;
};

const data::TranslationBatch& translation_batch(const TaskBatch& batch) {
  const auto* b = dynamic_cast<const TranslatorBatch*>(&batch);
  CHECK(b != nullptr) << "TranslatorTask: a batch of another task";
  return b->batch();
}

class TranslatorTask : public Task {
 public:
  TranslatorTask(config::Config config, TranslationData data) : config_(std::move(config)), data_(std::move(data)) {}

  void check_set_up(const RunDir& run, int world_size) const override {
    // No vocabulary padding: the SentencePiece vocab_size must be a multiple of tp (8000 is, up to tp = 64).
    const int tp = config_.parallel().tp();
    for (const auto& [what, vocab] : {std::pair<const char*, int64_t>{"source", data_.src_vocab}, {"target", data_.tgt_vocab}}) {
      if (vocab % tp != 0)
        throw ConfigError("parallel.tp: " + std::to_string(tp) + " does not divide the " + what +
                          " vocabulary size " + std::to_string(vocab) +
                          " of data.dir (build the data with a vocab_size divisible by tp)");
    }
    (void)world_size;  // check_world_layout
    check_run_tokenizer(run, data_, /*record=*/false);
  }
  void record_run(const RunDir& run) const override { check_run_tokenizer(run, data_, /*record=*/true); }

  void build_model(parallel::ParallelGrid& grid, const DevicePlan& plan) override {
    bundle_ = build_translator(config_, data_, &grid, plan);
    device_ = plan.device;
  }
  nn::Module& model() override { return translator(); }
  std::string describe() const override {
    return "vocab " + std::to_string(data_.src_vocab) + "/" + std::to_string(data_.tgt_vocab);
  }
  std::vector<optim::ParamGroup> param_groups() const override {
    const auto& o = config_.optimizer();
    return {optim::ParamGroup{bundle_.model->parameters(), o.lr(), o.weight_decay(), "", -1.0}};
  }
  std::vector<RngStream> rng_streams() const override {
    return bundle_.generators.streams();
  }

  std::unique_ptr<BatchSource> train_batches(const data::DataCursor& cursor, int dp_rank, int dp_size) override {
    const auto& train = config_.train();
    data::TranslationLoaderOptions options;
    options.shards = data_.shards(config_.data().train_split());
    options.max_tokens = train.batch_tokens();
    options.max_length = config_.data().max_length();
    options.max_epochs = train.max_epochs();
    options.prefetch = config_.data().prefetch();
    options.pad_id = data_.pad_id;
    options.bos_id = data_.bos_id;
    options.eos_id = data_.eos_id;
    options.rank = dp_rank;
    options.world = dp_size;
    // For a GPU the ids are checked on the host as each batch is built, and DeviceBatches copies the next batches
    // to the GPU (through pinned memory, on the copy stream) while the steps run.
    std::optional<IdBounds> check_ids;
    if (!device_.is_cpu()) check_ids = IdBounds{data_.src_vocab, data_.tgt_vocab};
    return std::make_unique<DeviceBatches>(std::make_unique<TranslatorBatches>(options, cursor, check_ids), device_);
  }
  // Target tokens of every micro-batch over every dp rank (the loader knows the global count).
  double normaliser(const std::vector<std::unique_ptr<TaskBatch>>& micro_batches,
                    parallel::ProcessGroup& /*dp*/) const override {
    return units(micro_batches);
  }
  double units(const std::vector<std::unique_ptr<TaskBatch>>& micro_batches) const override {
    double tokens = 0;
    for (const auto& b : micro_batches) tokens += static_cast<double>(translation_batch(*b).global_tgt_tokens);
    return tokens;
  }
  Tensor loss_sum(const TaskBatch& batch) override {
    const data::TranslationBatch& b = translation_batch(batch);
    for (const Tensor* t : {&b.src, &b.tgt_in, &b.tgt_out})
      CHECK(t->device() == device_) << "TranslatorTask::loss_sum: a batch tensor " << t->str() << " is not on the "
                                    << "model's device " << device_.str() << " (batches come from train_batches)";
    // On a GPU the ids were range-checked on the host when the batch was built (TranslatorBatches), so that the
    // embeddings and the loss do not each read their ids back (a host sync per op every step).
    std::optional<HostCheckedIndicesGuard> host_checked;
    if (!device_.is_cpu()) host_checked.emplace();
    return translator().loss(b.src, b.tgt_in, b.tgt_out, config_.train().label_smoothing());
  }
  ThroughputUnit throughput_unit() const override { return {"tok", "tokens_per_s"}; }

  EvalReport evaluate(parallel::ParallelGrid& grid) override {
    EvalOptions options;
    options.split = config_.data().valid_split();
    options.label_smoothing = config_.train().label_smoothing();
    options.batch_tokens = config_.eval().batch_tokens();
    options.max_sentences = config_.eval().max_sentences();
    options.decode = decode_options(config_, data_, 0);
    // Each dp replica evaluates every dp-th pair (its tp ranks decode together); the sums are all-reduced over dp.
    options.shard = grid.dp_rank();
    options.num_shards = grid.dp_size();
    options.sum_over_shards = [&grid](std::vector<double>& values) {
      const Tensor t = from_vector(values, {static_cast<int64_t>(values.size())}, DType::f64);
      grid.dp().all_reduce(t, parallel::ReduceOp::sum)->wait();
      std::copy(t.data<double>(), t.data<double>() + values.size(), values.begin());
    };
    const EvalResult r = evaluate_split(translator(), data_, options);
    EvalReport report;
    report.metrics = {{"loss", r.loss}, {"ppl", std::exp(r.nll)}, {"bleu", r.bleu.score}};
    char summary[160];
    std::snprintf(summary, sizeof summary, "valid loss %.3f | ppl %.2f | BLEU %.2f on %lld sentences (beam %d)",
                  r.loss, std::exp(r.nll), r.bleu.score, static_cast<long long>(r.sentences), options.decode.beam);
    report.summary = summary;
    for (size_t i = 0; i < std::min<size_t>(2, r.hypotheses.size()); ++i) {
      report.examples.push_back("  src: " + r.sources[i]);
      report.examples.push_back("  ref: " + r.references[i]);
      report.examples.push_back("  hyp: " + r.hypotheses[i]);
    }
    return report;
  }

 private:
  translator::Translator& translator() const {
    CHECK(bundle_.model != nullptr) << "TranslatorTask: build_model() first";
    return *bundle_.model;
  }

  config::Config config_;
  TranslationData data_;
  TranslatorBundle bundle_;
  Device device_;  // the model's and its batches'
};

}  // namespace

const TaskKind kTranslatorKind{"translator", validate_translator, translator_shape_difference, open_translator_task};

std::unique_ptr<Task> open_translator_task(const config::Config& config) {
  TranslationData data = open_translation_data(config);
  data.shards(config.data().train_split());
  data.shards(config.data().valid_split());
  return std::make_unique<TranslatorTask>(config, std::move(data));
}

}  // namespace px

// What train, eval and translate share: the run directory's layout, its config, the dataset index and
// tokenizers a config names, and a Translator built from them (loaded from the latest checkpoint).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "configs/parallax.pb.h"
#include "core/util/generator.h"
#include "data/dataset.pb.h"
#include "data/tokenizer.h"
#include "models/translator/decoding.h"
#include "models/translator/transformer.h"
#include "parallel/grid.h"

namespace px {

// <run_dir>/config.pbtxt (written at the first start), tokenizer.hash (the vocabulary the model was trained
// with), logs/, metrics.jsonl, checkpoints/.
struct RunDir {
  std::string root;
  std::string config() const { return root + "/config.pbtxt"; }
  std::string tokenizer_hash() const { return root + "/tokenizer.hash"; }
  std::string logs() const { return root + "/logs"; }
  std::string metrics() const { return root + "/metrics.jsonl"; }
};

// The config of an existing run: <run_dir>/config.pbtxt, with `overrides` applied and validated. A run dir
// without it is a ConfigError ("not a run directory").
config::Config load_run_config(const RunDir& run, const std::vector<std::string>& overrides);

// The dataset and vocabulary side of a translation run.
struct TranslationData {
  std::string dir;
  data::proto::DatasetIndex index;
  std::unique_ptr<data::Tokenizer> src_tokenizer, tgt_tokenizer;  // the same model file when joint
  int64_t src_vocab = 0, tgt_vocab = 0;
  int32_t pad_id = 0, bos_id = 0, eos_id = 0;

  // Full paths of a split's shards; DataError naming the split when absent.
  std::vector<std::string> shards(const std::string& split) const;
};

// Reads <config.data.dir>/dataset.pbtxt and its tokenizer models. A missing directory, index or model is a
// DataError naming it; a translation index is required.
TranslationData open_translation_data(const config::Config& config);

// A run's model only makes sense with the tokenizer it was trained with: when <run_dir>/tokenizer.hash exists
// it must equal the data's tokenizer hash (ConfigError naming data.dir otherwise); when it does not and
// `record` is set, it is written.
void check_run_tokenizer(const RunDir& run, const TranslationData& data, bool record);

// A Translator built from config + data, weights from `seed`-derived generators (training) or, after
// construction, a checkpoint. Holds the generators the model draws from. With a grid whose tp > 1 the model is
// tensor parallel over grid->tp(), its sharded activations dropped with a stream of this tp rank's own.
struct TranslatorBundle {
  std::unique_ptr<Generator> init_gen, dropout_gen, sharded_dropout_gen;
  std::unique_ptr<translator::Translator> model;
};
TranslatorBundle build_translator(const config::Config& config, const TranslationData& data,
                                  parallel::ParallelGrid* grid = nullptr);

// Decoding options from config.eval, with `beam` overriding eval.beam when > 0.
translator::DecodeOptions decode_options(const config::Config& config, const TranslationData& data, int beam);

}  // namespace px

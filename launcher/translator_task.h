// The translator's side of train, eval and translate: the dataset index and tokenizers a config names, the
// Translator built from them, its config checks, and TranslatorTask (the trainer's Task for it).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "configs/parallax.pb.h"
#include "core/util/generator.h"
#include "data/dataset.pb.h"
#include "data/tokenizer.h"
#include "launcher/device_plan.h"
#include "launcher/run_dir.h"
#include "launcher/task.h"
#include "models/translator/decoding.h"
#include "models/translator/transformer.h"
#include "parallel/grid.h"

namespace px {

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
  ModelGenerators generators;
  std::unique_ptr<translator::Translator> model;
};
// The model is built on the CPU and then moved to plan.device and plan.dtype (when either differs).
TranslatorBundle build_translator(const config::Config& config, const TranslationData& data,
                                  parallel::ParallelGrid* grid = nullptr, const DevicePlan& plan = {});

// The Translator options model.translator describes, for vocabularies of the given sizes.
translator::TranslatorOptions translator_options(const config::Config& config, int64_t src_vocab,
                                                 int64_t tgt_vocab, int64_t pad_id);

// Decoding options from config.eval, with `beam` overriding eval.beam when > 0.
translator::DecodeOptions decode_options(const config::Config& config, const TranslationData& data, int beam);

// The "translator" TaskKind: model.translator's checks (d_model % num_heads, dropouts in [0, 1), a known
// activation, max_positions >= data.max_length, parallel.tp dividing num_heads and d_ff), its shape fields
// (d_model, num_heads, encoder_layers, decoder_layers, d_ff, pre_norm, share_embeddings, tie_output; not
// dropouts, activation or max_positions, which sizes a buffer that is rebuilt) and open_translator_task.
extern const TaskKind kTranslatorKind;

// The training Task of a translation config: opens the dataset and checks that both splits exist.
std::unique_ptr<Task> open_translator_task(const config::Config& config);

}  // namespace px

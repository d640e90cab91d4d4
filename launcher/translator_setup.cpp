// The run directory's config, the dataset and tokenizers a config names, and a Translator built from them.
#include "launcher/translator_setup.h"

#include <filesystem>
#include <fstream>

#include "core/util/durable_file.h"
#include "core/util/error.h"
#include "data/dataset_index.h"
#include "data/sampler.h"
#include "launcher/config.h"

namespace px {

namespace fs = std::filesystem;

config::Config load_run_config(const RunDir& run, const std::vector<std::string>& overrides) {
  if (!fs::exists(run.config())) {
    throw ConfigError(run.root + ": not a run directory (no config.pbtxt; start one with `parallax train CONFIG --run-dir " +
                      run.root + "`)");
  }
  config::Config config = load_config_file(run.config());
  apply_overrides(config, overrides);
  validate_config(config);
  return config;
}

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
  if (config.model().share_embeddings() && !tok.joint()) {
    throw ConfigError("model.share_embeddings: " + data.dir +
                      " has separate source and target tokenizers; set model.share_embeddings: false");
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
                                  parallel::ParallelGrid* grid) {
  TranslatorBundle bundle;
  const uint64_t seed = config.train().seed();
  bundle.init_gen = std::make_unique<Generator>(data::philox_key(seed, 0, /*domain=*/0x1417));
  bundle.dropout_gen = std::make_unique<Generator>(data::philox_key(seed, 1, /*domain=*/0x1417));
  translator::TensorParallel tp;
  if (grid != nullptr && grid->tp_size() > 1) {
    bundle.sharded_dropout_gen = std::make_unique<Generator>(
        data::philox_key(seed, 2 + static_cast<uint64_t>(grid->tp_rank()), /*domain=*/0x1417));
    tp.group = &grid->tp();
    tp.sharded_dropout_gen = bundle.sharded_dropout_gen.get();
  }
  const translator::TranslatorOptions options =
      translator_options(config, data.src_vocab, data.tgt_vocab, data.pad_id);
  bundle.model = std::make_unique<translator::Translator>(options, *bundle.init_gen, *bundle.dropout_gen, tp);
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

}  // namespace px

// The model kinds a config can name (ModelConfig's `kind` oneof member -> its TaskKind) and the generators every
// model kind draws from.
#include "launcher/task.h"

#include <glog/logging.h>

#include "data/sampler.h"
#include "launcher/detr_task.h"
#include "launcher/translator_task.h"

namespace px {

ModelGenerators model_generators(uint64_t seed, uint64_t domain, parallel::ParallelGrid* grid) {
  ModelGenerators g;
  g.init = std::make_unique<Generator>(data::philox_key(seed, 0, domain));
  g.dropout = std::make_unique<Generator>(data::philox_key(seed, 1, domain));
  if (grid != nullptr) g.tp.group = &grid->tp();
  if (grid != nullptr && grid->tp_size() > 1) {
    g.sharded_dropout =
        std::make_unique<Generator>(data::philox_key(seed, 2 + static_cast<uint64_t>(grid->tp_rank()), domain));
    g.tp.sharded_dropout_gen = g.sharded_dropout.get();
  }
  return g;
}

std::vector<RngStream> ModelGenerators::streams() const {
  std::vector<RngStream> out{{"dropout", dropout.get(), false}};
  if (sharded_dropout) out.push_back({"dropout_sharded", sharded_dropout.get(), true});
  return out;
}

const TaskKind& task_kind(const config::Config& config) {
  switch (config.model().kind_case()) {
    case config::ModelConfig::kTranslator:
    case config::ModelConfig::KIND_NOT_SET:
      return kTranslatorKind;
    case config::ModelConfig::kDetr:
      return kDetrKind;
  }
  LOG(FATAL) << "task_kind: model kind " << config.model().kind_case() << " has no TaskKind";
}

}  // namespace px

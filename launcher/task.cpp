// The model kinds a config can name: ModelConfig's `kind` oneof member -> its TaskKind.
#include "launcher/task.h"

#include <glog/logging.h>

#include "launcher/detr_task.h"
#include "launcher/translator_task.h"

namespace px {

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

// DETR's side of train, eval and detect: the detection dataset a config names, the Detr built from it,
// model.detr's checks, and DetrTask (the trainer's Task for it).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "configs/parallax.pb.h"
#include "core/util/generator.h"
#include "data/dataset.pb.h"
#include "data/detection_loader.h"
#include "launcher/device_plan.h"
#include "launcher/task.h"
#include "models/detr/criterion.h"
#include "models/detr/detr.h"
#include "parallel/grid.h"

namespace px {

// The dataset side of a detection run.
struct DetectionData {
  std::string dir;
  data::proto::DatasetIndex index;
  std::vector<std::string> category_names;  // (num_classes) label -> name

  // Full paths of a split's shards; DataError naming the split when absent.
  std::vector<std::string> shards(const std::string& split) const;
};

// Reads <config.data.dir>/dataset.pbtxt; a missing directory or index, or a dataset of another schema, is a
// DataError naming it.
DetectionData open_detection_data(const config::Config& config);

// A Detr built from config + data with weights from `seed`-derived generators (training) or, after
// construction, a checkpoint; tensor parallel over grid->tp() when tp > 1. Moved to plan.device / plan.dtype.
struct DetrBundle {
  ModelGenerators generators;
  std::unique_ptr<detr::Detr> model;
};
DetrBundle build_detr(const config::Config& config, const DetectionData& data, parallel::ParallelGrid* grid = nullptr,
                      const DevicePlan& plan = {});

// The model, criterion and augmentation options model.detr, data.augment and the dataset describe.
detr::DetrOptions detr_options(const config::Config& config, int64_t num_classes);
detr::CriterionOptions criterion_options(const config::Config& config, int64_t num_classes);
data::DetectionAugment augment_options(const config::Config& config, bool train);

// The "detr" TaskKind: model.detr's checks (a known backbone, width > 0, 1..4 stages, d_model even and divisible
// by num_heads, dropout in [0, 1), parallel.tp dividing num_heads and d_ff) and data.augment's (sizes >= 1,
// max_size >= 0, flip_prob in [0, 1]), its shape fields and open_detr_task.
extern const TaskKind kDetrKind;

// The training Task of a DETR config: opens the dataset and checks that both splits exist.
std::unique_ptr<Task> open_detr_task(const config::Config& config);

}  // namespace px

// DETR's side of the commands on a trained run: `parallax eval` of a DETR run (COCO metrics on a split) and
// `parallax detect` (objects found in image files, written as JSON and annotated PNGs).
#pragma once

#include <string>
#include <vector>

#include "launcher/run_commands.h"
#include "launcher/trained_run.h"

namespace CLI {
class App;
}

namespace px {

// Registers detect; its callback stores the exit code.
void add_detr_commands(CLI::App& app, int& exit_code);

// Prints pycocotools' 12-line table and one summary line of a DETR run's latest checkpoint (opened by
// open_trained_run) on a split, and appends the 12 stats to metrics.jsonl as <split>_map, <split>_ap50, ...
// Returns the exit code.
int run_detr_eval(const TrainedRun& run, const EvalCommand& command);

struct DetectCommand {
  std::string run_dir;
  std::vector<std::string> images;  // JPEG or PNG files
  double threshold = 0.7;           // detections with a lower score are dropped
  std::string out_dir;              // "": <run_dir>/detect
  std::string device = "auto";      // auto | cpu | cuda (precision: the config's train.precision)
  std::vector<std::string> overrides;
};
// Runs the model on each image through DETR's eval transform (one image per forward, so the result does not depend
// on the other images), keeps the detections scoring >= threshold and writes <out>/<stem>.json and <out>/<stem>.png
// (a second image of the same stem gets <stem>_2, ...), with one line per image on stdout. An image that cannot be
// read or written is one "parallax: error:" line on stderr naming it, and the others go on. Returns 0, or 2 when
// an image was rejected. A run of another model kind, or an --out that is not a directory, is a UsageError.
int run_detect(const DetectCommand& command);

}  // namespace px

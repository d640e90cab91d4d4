// The subcommands every model kind shares: `parallax train`, and `parallax eval`, which opens a run's latest
// checkpoint and hands it to its model kind's evaluation (translator: loss and BLEU; DETR: COCO mAP).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace px {

// Registers train and eval; their callbacks store the exit code.
void add_run_commands(CLI::App& app, int& exit_code);

// `parallax eval`'s options. Those of one model kind given for a run of another are a UsageError.
struct EvalCommand {
  std::string run_dir;
  std::string split = "test";
  std::string device = "auto";  // auto | cpu | cuda (precision: the config's train.precision)
  std::vector<std::string> overrides;
  // The translator's.
  int beam = 0;                 // 0: the config's eval.beam
  int64_t max_sentences = 0;    // 0: the whole split
  int show = 3;                 // example translations printed
  std::string output;           // file for the hypotheses, one per line in split order ("" : none)
  // DETR's.
  int64_t max_images = -1;      // -1: the config's eval.max_images; 0: the whole split
};

}  // namespace px

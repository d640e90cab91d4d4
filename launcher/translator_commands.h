// The translator's side of the commands on a trained run: `parallax eval` of a translator run, and `parallax
// translate`, registered on the CLI.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "launcher/run_commands.h"
#include "launcher/trained_run.h"

namespace CLI {
class App;
}

namespace px {

// Registers translate; its callback stores the exit code.
void add_translator_commands(CLI::App& app, int& exit_code);

// Prints loss, perplexity and BLEU of a translator run's latest checkpoint (opened by open_trained_run) on a split
// and appends them to metrics.jsonl as <split>_loss, <split>_ppl, <split>_bleu. Returns the exit code.
int run_translator_eval(const TrainedRun& run, const EvalCommand& command);

struct TranslateCommand {
  std::string run_dir;
  int beam = 0;                 // 0: the config's eval.beam
  int64_t batch_lines = 0;      // lines decoded together; 0: 1 on a terminal, else 64
  std::string device = "auto";  // auto | cpu | cuda (precision: the config's train.precision)
  std::vector<std::string> overrides;
};
// Reads sentences (one per line) from `in`, writes one translation per line to `out` in the same order.
// An empty line gives an empty line; a line longer than the model's positions is cut to fit, with a warning
// on stderr naming the line. Returns the exit code.
int run_translate(const TranslateCommand& command, std::istream& in, std::ostream& out);

}  // namespace px

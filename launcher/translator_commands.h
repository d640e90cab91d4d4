// The translator's subcommands: `parallax train`, `parallax eval` and `parallax translate`, registered on
// the CLI; eval and translate load a run directory's latest checkpoint.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace px {

// Registers train, eval and translate; their callbacks store the exit code.
void add_translator_commands(CLI::App& app, int& exit_code);

struct EvalCommand {
  std::string run_dir;
  std::string split = "test";
  int beam = 0;                 // 0: the config's eval.beam
  int64_t max_sentences = 0;    // 0: the whole split
  int show = 3;                 // example translations printed
  std::string output;           // file for the hypotheses, one per line in split order ("" : none)
  std::string device = "auto";  // auto | cpu | cuda (precision: the config's train.precision)
  std::vector<std::string> overrides;
};
// Prints loss, perplexity and BLEU of the latest checkpoint on a split and appends them to metrics.jsonl
// as <split>_loss, <split>_ppl, <split>_bleu. Returns the exit code.
int run_eval(const EvalCommand& command);

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

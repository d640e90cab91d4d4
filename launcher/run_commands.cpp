// `parallax train | eval`: their command-line definitions; eval checks that the options given belong to the run's
// model kind and dispatches to it.
#include "launcher/run_commands.h"

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/util/error.h"
#include "launcher/cli_checks.h"
#include "launcher/detr_commands.h"
#include "launcher/detr_task.h"
#include "launcher/task.h"
#include "launcher/trained_run.h"
#include "launcher/trainer.h"
#include "launcher/translator_commands.h"

namespace px {

namespace {

// The first of `options` given on the command line, as a UsageError saying which model kind it belongs to.
void refuse_given(const std::vector<const CLI::Option*>& options, const std::string& owner, const TrainedRun& run) {
  for (const CLI::Option* option : options) {
    if (option->count() > 0) {
      throw UsageError(option->get_name() + ": " + owner + " option; " + run.run.root + " is a " +
                       task_kind(run.config).name + " run");
    }
  }
}

}  // namespace

void add_run_commands(CLI::App& app, int& exit_code) {
  auto train = std::make_shared<TrainCommand>();
  CLI::App* t = app.add_subcommand("train", "Train a model from a config; resumes an existing run dir");
  t->add_option("config", train->config_path, "Config (.pbtxt); optional when resuming a run dir");
  t->add_option("--run-dir", train->run_dir, "Run directory (logs, metrics, checkpoints)")->required();
  t->add_option("--set", train->overrides, "Override a config field, e.g. --set train.max_steps=2000")
      ->allow_extra_args(false);
  t->callback([train, &exit_code] { exit_code = run_train(*train); });

  auto eval = std::make_shared<EvalCommand>();
  CLI::App* e = app.add_subcommand(
      "eval", "Metrics of a run's latest checkpoint on a split: loss and BLEU (translator), COCO mAP (DETR)");
  add_trained_run_options(*e, eval->run_dir, eval->device, eval->overrides);
  e->add_option("--split", eval->split, "Split of the run's dataset")->capture_default_str();
  const std::vector<const CLI::Option*> translator_options{
      e->add_option("--beam", eval->beam, "Translator: beam size (1: greedy); default: the config's eval.beam")
          ->check(between(1, 1024)),
      e->add_option("--max-sentences", eval->max_sentences, "Translator: translate only the first N pairs (0: all)")
          ->check(at_least(0)),
      e->add_option("--show", eval->show, "Translator: example translations to print")->check(at_least(0)),
      e->add_option("--output", eval->output, "Translator: write the translations here, one per line")};
  const std::vector<const CLI::Option*> detr_options{
      e->add_option("--max-images", eval->max_images,
                    "DETR: evaluate the first N images (0: all); default: the config's eval.max_images")
          ->check(at_least(0))};
  e->callback([eval, translator_options, detr_options, &exit_code] {
    const TrainedRun run = open_trained_run(eval->run_dir, eval->device, eval->overrides);
    if (&task_kind(run.config) == &kDetrKind) {
      refuse_given(translator_options, "a translator", run);
      exit_code = run_detr_eval(run, *eval);
    } else {
      refuse_given(detr_options, "a DETR", run);
      exit_code = run_translator_eval(run, *eval);
    }
  });
}

}  // namespace px

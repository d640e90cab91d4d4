// `parallax train | eval | translate`: command-line definitions, and eval and translate on the latest
// checkpoint of a run directory.
#include "launcher/translator_commands.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/util/error.h"
#include "data/tokenizer.h"
#include "launcher/checkpoint.h"
#include "launcher/cli_checks.h"
#include "launcher/config.h"
#include "launcher/device_plan.h"
#include "launcher/metrics.h"
#include "launcher/trainer.h"
#include "launcher/translator_eval.h"
#include "launcher/translator_task.h"

namespace px {

namespace {

// A run's config, data and model with the latest checkpoint's weights, in eval mode on the chosen device.
struct LoadedRun {
  config::Config config;
  TranslationData data;
  TranslatorBundle bundle;
  int64_t step = 0;
  DevicePlan plan;
};

LoadedRun load_run(const std::string& run_dir, const std::string& device, const std::vector<std::string>& overrides) {
  const RunDir run{run_dir};
  LoadedRun loaded;
  loaded.config = load_run_config(run, overrides);
  const auto latest = latest_checkpoint(run.root);
  if (!latest) throw CheckpointError(run.root + ": no checkpoint yet (train first)");
  const config::Config trained = parse_config_text(read_manifest(*latest).config(), *latest + "/manifest.pbtxt");
  const std::string diff = model_shape_difference(trained, loaded.config);
  if (!diff.empty()) throw ConfigError(run.root + ": the overrides change the model (" + diff + ")");
  const int threads = loaded.config.train().threads();
  set_num_threads(threads > 0 ? threads : default_num_threads());
  loaded.data = open_translation_data(loaded.config);
  check_run_tokenizer(run, loaded.data, /*record=*/false);
  // One process: the first visible GPU.
  loaded.plan = plan_device(device, loaded.config.train().precision(), loaded.config.parallel().gpu_collectives(),
                            parallel::ProcessPlacement{}, "--device");
  if (!loaded.plan.device.is_cpu()) set_current_gpu(loaded.plan.device.index);
  loaded.bundle = build_translator(loaded.config, loaded.data, nullptr, loaded.plan);
  loaded.step = load_checkpoint(*latest, *loaded.bundle.model, nullptr, nullptr).step();
  loaded.bundle.model->eval();
  return loaded;
}

void add_common_options(CLI::App& cmd, std::string& run_dir, int& beam, std::string& device,
                        std::vector<std::string>& overrides) {
  cmd.add_option("--run-dir", run_dir, "Run directory written by `parallax train`")->required();
  cmd.add_option("--beam", beam, "Beam size (1: greedy); default: the config's eval.beam")
      ->check(between(1, 1024));
  cmd.add_option("--device", device,
                 "auto (a GPU when one is usable), cpu or cuda; the precision is the config's train.precision")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--set", overrides, "Override a config field, e.g. --set eval.length_penalty=0.6")
      ->allow_extra_args(false);
}

}  // namespace

int run_eval(const EvalCommand& command) {
  LoadedRun run = load_run(command.run_dir, command.device, command.overrides);
  std::printf("%s\n", run.plan.summary.c_str());
  EvalOptions options;
  options.split = command.split;
  options.label_smoothing = run.config.train().label_smoothing();
  options.batch_tokens = run.config.eval().batch_tokens();
  options.max_sentences = command.max_sentences;
  options.decode = decode_options(run.config, run.data, command.beam);
  const EvalResult r = evaluate_split(*run.bundle.model, run.data, options);
  std::printf("%s @ step %lld: loss %.4f | ppl %.2f | %lld sentences, beam %d | %.1f s\n", command.split.c_str(),
              static_cast<long long>(run.step), r.loss, std::exp(r.nll), static_cast<long long>(r.sentences),
              options.decode.beam, r.seconds);
  std::printf("%s\n", r.bleu.str().c_str());
  for (int i = 0; i < command.show && i < static_cast<int>(r.hypotheses.size()); ++i) {
    std::printf("  src: %s\n  ref: %s\n  hyp: %s\n", r.sources[i].c_str(), r.references[i].c_str(),
                r.hypotheses[i].c_str());
  }
  if (!command.output.empty()) {
    std::ofstream out(command.output, std::ios::trunc);
    for (const auto& h : r.hypotheses) out << h << '\n';
    if (!out.flush()) throw Error(command.output + ": cannot write the hypotheses");
  }
  MetricsWriter metrics(RunDir{command.run_dir}.metrics());
  metrics.write(run.step, {{command.split + "_loss", r.loss},
                           {command.split + "_ppl", std::exp(r.nll)},
                           {command.split + "_bleu", r.bleu.score},
                           {"beam", options.decode.beam}});
  return 0;
}

int run_translate(const TranslateCommand& command, std::istream& in, std::ostream& out) {
  LoadedRun run = load_run(command.run_dir, command.device, command.overrides);
  std::fprintf(stderr, "%s\n", run.plan.summary.c_str());  // stdout holds the translations
  const translator::DecodeOptions options = decode_options(run.config, run.data, command.beam);
  const int64_t max_src = run.bundle.model->options().max_positions - 1;  // eos needs the last position
  const int64_t batch_lines = command.batch_lines > 0 ? command.batch_lines : (isatty(STDIN_FILENO) ? 1 : 64);
  int64_t line_number = 0;
  std::vector<std::vector<int32_t>> sources;
  std::vector<bool> empty;
  const auto flush = [&] {
    const auto hyps = translate_batched(*run.bundle.model, sources, options, run.config.eval().batch_tokens());
    for (size_t i = 0; i < hyps.size(); ++i) {
      out << (empty[i] ? std::string() : run.data.tgt_tokenizer->decode(hyps[i].tokens)) << '\n';
    }
    out.flush();
    sources.clear();
    empty.clear();
  };
  std::string line;
  while (std::getline(in, line)) {
    ++line_number;
    std::vector<int32_t> ids = run.data.src_tokenizer->encode(data::normalize_text(line));
    if (static_cast<int64_t>(ids.size()) > max_src) {
      std::fprintf(stderr, "parallax translate: line %lld has %zu tokens, more than the model's %lld: cut\n",
                   static_cast<long long>(line_number), ids.size(), static_cast<long long>(max_src));
      ids.resize(static_cast<size_t>(max_src));
    }
    empty.push_back(ids.empty());
    ids.push_back(run.data.eos_id);
    sources.push_back(std::move(ids));
    if (static_cast<int64_t>(sources.size()) >= batch_lines) flush();
  }
  if (!sources.empty()) flush();
  return 0;
}

void add_translator_commands(CLI::App& app, int& exit_code) {
  auto train = std::make_shared<TrainCommand>();
  CLI::App* t = app.add_subcommand("train", "Train a model from a config; resumes an existing run dir");
  t->add_option("config", train->config_path, "Config (.pbtxt); optional when resuming a run dir");
  t->add_option("--run-dir", train->run_dir, "Run directory (logs, metrics, checkpoints)")->required();
  t->add_option("--set", train->overrides, "Override a config field, e.g. --set train.max_steps=2000")
      ->allow_extra_args(false);
  t->callback([train, &exit_code] { exit_code = run_train(*train); });

  auto eval = std::make_shared<EvalCommand>();
  CLI::App* e = app.add_subcommand("eval", "Loss and BLEU of a run's latest checkpoint on a split");
  add_common_options(*e, eval->run_dir, eval->beam, eval->device, eval->overrides);
  e->add_option("--split", eval->split, "Split of the run's dataset")->capture_default_str();
  e->add_option("--max-sentences", eval->max_sentences, "Translate only the first N pairs (0: all)")
      ->check(at_least(0));
  e->add_option("--show", eval->show, "Example translations to print")->check(at_least(0));
  e->add_option("--output", eval->output, "Write the translations here, one per line");
  e->callback([eval, &exit_code] { exit_code = run_eval(*eval); });

  auto translate = std::make_shared<TranslateCommand>();
  CLI::App* tr = app.add_subcommand("translate", "Translate stdin to stdout, one sentence per line");
  add_common_options(*tr, translate->run_dir, translate->beam, translate->device, translate->overrides);
  tr->add_option("--batch-lines", translate->batch_lines, "Lines decoded together (default 1 on a terminal, else 64)")
      ->check(at_least(1));
  tr->callback([translate, &exit_code] { exit_code = run_translate(*translate, std::cin, std::cout); });
}

}  // namespace px

// `parallax translate` and the translator's `parallax eval` on the latest checkpoint of a run directory.
#include "launcher/translator_commands.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "core/util/error.h"
#include "data/tokenizer.h"
#include "launcher/cli_checks.h"
#include "launcher/metrics.h"
#include "launcher/translator_eval.h"
#include "launcher/translator_task.h"

namespace px {

namespace {

// A translator run's data and model with the latest checkpoint's weights, in eval mode on the run's device.
struct LoadedTranslator {
  TranslationData data;
  TranslatorBundle bundle;
  int64_t step = 0;
};

LoadedTranslator load_translator(const TrainedRun& run) {
  LoadedTranslator loaded;
  loaded.data = open_translation_data(run.config);
  check_run_tokenizer(run.run, loaded.data, /*record=*/false);
  loaded.bundle = build_translator(run.config, loaded.data, nullptr, run.plan);
  loaded.step = load_trained_weights(run, *loaded.bundle.model);
  return loaded;
}

}  // namespace

int run_translator_eval(const TrainedRun& run, const EvalCommand& command) {
  const LoadedTranslator loaded = load_translator(run);
  std::printf("%s\n", run.plan.summary.c_str());
  EvalOptions options;
  options.split = command.split;
  options.label_smoothing = run.config.train().label_smoothing();
  options.batch_tokens = run.config.eval().batch_tokens();
  options.max_sentences = command.max_sentences;
  options.decode = decode_options(run.config, loaded.data, command.beam);
  const EvalResult r = evaluate_split(*loaded.bundle.model, loaded.data, options);
  std::printf("%s @ step %lld: loss %.4f | ppl %.2f | %lld sentences, beam %d | %.1f s\n", command.split.c_str(),
              static_cast<long long>(loaded.step), r.loss, std::exp(r.nll), static_cast<long long>(r.sentences),
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
  MetricsWriter metrics(run.run.metrics());
  metrics.write(loaded.step, {{command.split + "_loss", r.loss},
                           {command.split + "_ppl", std::exp(r.nll)},
                           {command.split + "_bleu", r.bleu.score},
                           {"beam", options.decode.beam}});
  return 0;
}

int run_translate(const TranslateCommand& command, std::istream& in, std::ostream& out) {
  const TrainedRun run = open_trained_run(command.run_dir, command.device, command.overrides);
  LoadedTranslator loaded = load_translator(run);
  std::fprintf(stderr, "%s\n", run.plan.summary.c_str());  // stdout holds the translations
  const translator::DecodeOptions options = decode_options(run.config, loaded.data, command.beam);
  const int64_t max_src = loaded.bundle.model->options().max_positions - 1;  // eos needs the last position
  const int64_t batch_lines = command.batch_lines > 0 ? command.batch_lines : (isatty(STDIN_FILENO) ? 1 : 64);
  int64_t line_number = 0;
  std::vector<std::vector<int32_t>> sources;
  std::vector<bool> empty;
  const auto flush = [&] {
    const auto hyps = translate_batched(*loaded.bundle.model, sources, options, run.config.eval().batch_tokens());
    for (size_t i = 0; i < hyps.size(); ++i) {
      out << (empty[i] ? std::string() : loaded.data.tgt_tokenizer->decode(hyps[i].tokens)) << '\n';
    }
    out.flush();
    sources.clear();
    empty.clear();
  };
  std::string line;
  while (std::getline(in, line)) {
    ++line_number;
    std::vector<int32_t> ids = loaded.data.src_tokenizer->encode(data::normalize_text(line));
    if (static_cast<int64_t>(ids.size()) > max_src) {
      std::fprintf(stderr, "parallax translate: line %lld has %zu tokens, more than the model's %lld: cut\n",
                   static_cast<long long>(line_number), ids.size(), static_cast<long long>(max_src));
      ids.resize(static_cast<size_t>(max_src));
    }
    empty.push_back(ids.empty());
    ids.push_back(loaded.data.eos_id);
    sources.push_back(std::move(ids));
    if (static_cast<int64_t>(sources.size()) >= batch_lines) flush();
  }
  if (!sources.empty()) flush();
  return 0;
}

void add_translator_commands(CLI::App& app, int& exit_code) {
  auto translate = std::make_shared<TranslateCommand>();
  CLI::App* tr = app.add_subcommand("translate", "Translate stdin to stdout, one sentence per line");
  add_trained_run_options(*tr, translate->run_dir, translate->device, translate->overrides);
  tr->add_option("--beam", translate->beam, "Beam size (1: greedy); default: the config's eval.beam")
      ->check(between(1, 1024));
  tr->add_option("--batch-lines", translate->batch_lines, "Lines decoded together (default 1 on a terminal, else 64)")
      ->check(at_least(1));
  tr->callback([translate, &exit_code] { exit_code = run_translate(*translate, std::cin, std::cout); });
}

}  // namespace px

// Evaluation of a Translator on a dataset split: teacher-forced loss over every pair and corpus BLEU of
// beam or greedy translations (detokenised with the target tokenizer), plus batched translation of text.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "launcher/translator_task.h"
#include "models/translator/bleu.h"

namespace px {

struct EvalResult {
  double loss = 0;          // label-smoothed cross-entropy per target token (the training objective)
  double nll = 0;           // negative log-likelihood per target token (perplexity = exp(nll))
  int64_t tgt_tokens = 0;   // target tokens scored (with eos)
  int64_t sentences = 0;    // sentences translated for BLEU
  translator::BleuScore bleu;
  std::vector<std::string> sources, hypotheses, references;  // (sentences,) detokenised, split order
  double seconds = 0;
};

struct EvalOptions {
  std::string split = "valid";
  double label_smoothing = 0.1;
  int64_t batch_tokens = 4096;      // padded source + target tokens per loss batch; source tokens per decoding batch
  int64_t max_sentences = 0;        // BLEU on the first N pairs of the split; 0: all; < 0: no BLEU
  translator::DecodeOptions decode;
  // Data-parallel evaluation: this rank reads and scores only every num_shards-th pair from `shard` (for the
  // loss and the BLEU sentences), and sum_over_shards adds a vector of statistics over all shards in place (an
  // all-reduce over the dp group; required when num_shards > 1). The result's totals and scores are then the
  // whole split's; its sources/hypotheses/references are this shard's.
  int shard = 0, num_shards = 1;
  std::function<void(std::vector<double>&)> sum_over_shards;
};

// Runs in eval mode under NoGradGuard and restores the model's train/eval mode afterwards. A tensor-parallel
// model scores through the vocab-parallel loss (the full logits are never gathered); its tp ranks call it
// together with the same shard.
EvalResult evaluate_split(translator::Translator& model, const TranslationData& data, const EvalOptions& options);

// Translates token sequences (each ending in eos, none longer than max_positions) in batches of about
// batch_tokens source tokens, longest first; returns the hypotheses in input order. Model in eval mode.
std::vector<translator::Hypothesis> translate_batched(const translator::Translator& model,
                                                      const std::vector<std::vector<int32_t>>& sources,
                                                      const translator::DecodeOptions& options, int64_t batch_tokens);

}  // namespace px

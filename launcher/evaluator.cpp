// Split evaluation (teacher-forced loss, corpus BLEU of decoded translations) and batched translation.
#include "launcher/evaluator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include <glog/logging.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "data/sharded_dataset.h"
#include "data/translation_loader.h"

namespace px {

namespace {

// Restores a module's train/eval mode on scope exit.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(nn::Module& module) : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalModeGuard() { module_.train(was_training_); }

 private:
  nn::Module& module_;
  bool was_training_;
};

// Consecutive groups of `order` whose padded size (rows * longest, by `cost`) stays within budget.
template <typename Cost>
std::vector<std::vector<size_t>> budget_batches(const std::vector<size_t>& order, int64_t budget, Cost&& cost) {
  std::vector<std::vector<size_t>> batches;
  std::vector<size_t> current;
  int64_t longest = 0;
  for (size_t i : order) {
    const int64_t longest_with = std::max(longest, cost(i));
    if (!current.empty() && longest_with * static_cast<int64_t>(current.size() + 1) > budget) {
      batches.push_back(std::move(current));
      current.clear();
      longest = 0;
    }
    current.push_back(i);
    longest = std::max(longest, cost(i));
  }
  if (!current.empty()) batches.push_back(std::move(current));
  return batches;
}

// Drops tokens beyond `max_len - 1` and ends the sequence with eos.
std::vector<int32_t> with_eos(std::vector<int32_t> tokens, int64_t max_len, int32_t eos) {
  if (static_cast<int64_t>(tokens.size()) > max_len - 1) tokens.resize(static_cast<size_t>(max_len - 1));
  tokens.push_back(eos);
  return tokens;
}

}  // namespace

std::vector<translator::Hypothesis> translate_batched(const translator::Translator& model,
                                                      const std::vector<std::vector<int32_t>>& sources,
                                                      const translator::DecodeOptions& options, int64_t batch_tokens) {
  std::vector<size_t> order(sources.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sources[a].size() > sources[b].size(); });
  // Beam search holds beam hypotheses per sentence: the budget counts them.
  const int64_t budget = std::max<int64_t>(1, batch_tokens / std::max(1, options.beam));
  std::vector<translator::Hypothesis> out(sources.size());
  for (const auto& batch :
       budget_batches(order, budget, [&](size_t i) { return static_cast<int64_t>(sources[i].size()); })) {
    std::vector<std::vector<int32_t>> rows;
    for (size_t i : batch) rows.push_back(sources[i]);
    std::vector<translator::Hypothesis> hyps = translator::decode(model, data::pad_rows(rows, options.pad_id), options);
    for (size_t j = 0; j < batch.size(); ++j) out[batch[j]] = std::move(hyps[j]);
  }
  return out;
}

EvalResult evaluate_split(translator::Translator& model, const TranslationData& data, const EvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  EvalModeGuard eval_mode(model);
  NoGradGuard no_grad;
  const int64_t max_len = model.options().max_positions;
  data::TranslationDataset dataset(data.shards(options.split));
  std::vector<std::vector<int32_t>> src(static_cast<size_t>(dataset.size())), tgt(src.size());
  for (int64_t id = 0; id < dataset.size(); ++id) dataset.read(id, src[id], tgt[id]);

  CHECK(options.num_shards >= 1 && options.shard >= 0 && options.shard < options.num_shards &&
        (options.num_shards == 1 || options.sum_over_shards))
      << "evaluate_split: shard " << options.shard << " of " << options.num_shards << " (with a sum_over_shards)";
  const auto mine = [&](size_t i) { return static_cast<int>(i % static_cast<size_t>(options.num_shards)) == options.shard; };
  EvalResult result;
  // Teacher-forced loss over this shard's pairs, in batches of similar lengths.
  std::vector<size_t> order;
  for (size_t i = 0; i < src.size(); ++i)
    if (mine(i)) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::max(src[a].size(), tgt[a].size()) < std::max(src[b].size(), tgt[b].size());
  });
  double loss_sum = 0, nll_sum = 0;
  const auto cost = [&](size_t i) { return static_cast<int64_t>(src[i].size() + tgt[i].size() + 2); };
  for (const auto& batch : budget_batches(order, options.batch_tokens, cost)) {
    std::vector<std::vector<int32_t>> s, t_in, t_out;
    for (size_t i : batch) {
      s.push_back(with_eos(src[i], max_len, data.eos_id));
      std::vector<int32_t> target = tgt[i];
      if (static_cast<int64_t>(target.size()) > max_len - 1) target.resize(static_cast<size_t>(max_len - 1));
      std::vector<int32_t> in{data.bos_id};
      in.insert(in.end(), target.begin(), target.end());
      t_in.push_back(std::move(in));
      target.push_back(data.eos_id);
      result.tgt_tokens += static_cast<int64_t>(target.size());
      t_out.push_back(std::move(target));
    }
    const Tensor logits = model.forward(data::pad_rows(s, data.pad_id), data::pad_rows(t_in, data.pad_id));
    const Tensor target = data::pad_rows(t_out, data.pad_id);
    loss_sum += translator::translation_loss(logits, target, data.pad_id, options.label_smoothing).item();
    nll_sum += translator::translation_loss(logits, target, data.pad_id, 0.0).item();
  }
  translator::BleuStats bleu_stats;
  if (options.max_sentences >= 0) {
    const size_t n = options.max_sentences == 0 ? src.size()
                                                 : std::min(src.size(), static_cast<size_t>(options.max_sentences));
    std::vector<std::vector<int32_t>> sources;
    for (size_t i = 0; i < n; ++i) {
      if (!mine(i)) continue;
      sources.push_back(with_eos(src[i], max_len, data.eos_id));
      result.sources.push_back(data.src_tokenizer->decode(src[i]));
      result.references.push_back(data.tgt_tokenizer->decode(tgt[i]));
    }
    for (const auto& h : translate_batched(model, sources, options.decode, options.batch_tokens)) {
      result.hypotheses.push_back(data.tgt_tokenizer->decode(h.tokens));
      bleu_stats += translator::sentence_stats(result.hypotheses.back(), result.references[result.hypotheses.size() - 1]);
    }
    result.sentences = static_cast<int64_t>(n);
  }
  if (options.num_shards > 1) {
    // loss, nll, tokens, then the BLEU statistics: one sum over the shards (all exact in f64 but the losses).
    std::vector<double> totals{loss_sum, nll_sum, static_cast<double>(result.tgt_tokens)};
    for (int k = 0; k < 4; ++k) totals.push_back(static_cast<double>(bleu_stats.matches[k]));
    for (int k = 0; k < 4; ++k) totals.push_back(static_cast<double>(bleu_stats.totals[k]));
    totals.push_back(static_cast<double>(bleu_stats.sys_len));
    totals.push_back(static_cast<double>(bleu_stats.ref_len));
    options.sum_over_shards(totals);
    loss_sum = totals[0];
    nll_sum = totals[1];
    result.tgt_tokens = static_cast<int64_t>(totals[2]);
    for (int k = 0; k < 4; ++k) bleu_stats.matches[k] = static_cast<int64_t>(totals[3 + k]);
    for (int k = 0; k < 4; ++k) bleu_stats.totals[k] = static_cast<int64_t>(totals[7 + k]);
    bleu_stats.sys_len = static_cast<int64_t>(totals[11]);
    bleu_stats.ref_len = static_cast<int64_t>(totals[12]);
  }
  if (result.tgt_tokens > 0) {
    result.loss = loss_sum / static_cast<double>(result.tgt_tokens);
    result.nll = nll_sum / static_cast<double>(result.tgt_tokens);
  }
  if (options.max_sentences >= 0) result.bleu = translator::bleu_from_stats(bleu_stats);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace px

// Split evaluation (teacher-forced loss, corpus BLEU of decoded translations) and batched translation.
#include "launcher/translator_eval.h"

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
    std::vector<translator::Hypothesis> hyps =
        translator::decode(model, data::pad_rows(rows, options.pad_id), options);
    for (size_t j = 0; j < batch.size(); ++j) out[batch[j]] = std::move(hyps[j]);
  }
  return out;
}

namespace {

// This shard's pairs of a split: every num_shards-th from `shard`, only these read from the shards.
struct ShardPairs {
  std::vector<int64_t> ids;                     // (n,) increasing
  std::vector<std::vector<int32_t>> src, tgt;   // (n,) token ids, no eos
};

ShardPairs read_shard_pairs(const TranslationData& data, const EvalOptions& options) {
  data::TranslationDataset dataset(data.shards(options.split));
  ShardPairs pairs;
  for (int64_t id = options.shard; id < dataset.size(); id += options.num_shards) {
    pairs.ids.push_back(id);
    pairs.src.emplace_back();
    pairs.tgt.emplace_back();
    dataset.read(id, pairs.src.back(), pairs.tgt.back());
  }
  return pairs;
}

// What the shards' results add up to: exact in f64 but the two loss sums.
struct EvalSums {
  double loss = 0, nll = 0, tgt_tokens = 0;
  translator::BleuStats bleu;

  std::vector<double> pack() const {
    std::vector<double> v{loss, nll, tgt_tokens};
    for (int k = 0; k < 4; ++k) v.push_back(static_cast<double>(bleu.matches[k]));
    for (int k = 0; k < 4; ++k) v.push_back(static_cast<double>(bleu.totals[k]));
    v.push_back(static_cast<double>(bleu.sys_len));
    v.push_back(static_cast<double>(bleu.ref_len));
    return v;
  }
  void unpack(const std::vector<double>& v) {
    size_t i = 0;
    loss = v[i++];
    nll = v[i++];
    tgt_tokens = v[i++];
    for (int k = 0; k < 4; ++k) bleu.matches[k] = static_cast<int64_t>(v[i++]);
    for (int k = 0; k < 4; ++k) bleu.totals[k] = static_cast<int64_t>(v[i++]);
    bleu.sys_len = static_cast<int64_t>(v[i++]);
    bleu.ref_len = static_cast<int64_t>(v[i++]);
  }
};

// Teacher-forced label-smoothed loss and NLL sums over the pairs, in batches of similar lengths.
void score_loss(const translator::Translator& model, const TranslationData& data, const ShardPairs& pairs,
                const EvalOptions& options, EvalSums& sums) {
  const int64_t max_len = model.options().max_positions;
  std::vector<size_t> order(pairs.ids.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::max(pairs.src[a].size(), pairs.tgt[a].size()) < std::max(pairs.src[b].size(), pairs.tgt[b].size());
  });
  const auto cost = [&](size_t i) { return static_cast<int64_t>(pairs.src[i].size() + pairs.tgt[i].size() + 2); };
  for (const auto& batch : budget_batches(order, options.batch_tokens, cost)) {
    std::vector<std::vector<int32_t>> s, t_in, t_out;
    for (size_t i : batch) {
      s.push_back(with_eos(pairs.src[i], max_len, data.eos_id));
      std::vector<int32_t> target = pairs.tgt[i];
      if (static_cast<int64_t>(target.size()) > max_len - 1) target.resize(static_cast<size_t>(max_len - 1));
      std::vector<int32_t> in{data.bos_id};
      in.insert(in.end(), target.begin(), target.end());
      t_in.push_back(std::move(in));
      target.push_back(data.eos_id);
      sums.tgt_tokens += static_cast<double>(target.size());
      t_out.push_back(std::move(target));
    }
    const auto on_model = [&](const std::vector<std::vector<int32_t>>& rows) {
      return to_device(data::pad_rows(rows, data.pad_id), model.device());
    };
    const std::vector<Tensor> losses =
        model.losses(on_model(s), on_model(t_in), on_model(t_out), {options.label_smoothing, 0.0});
    sums.loss += losses[0].item();
    sums.nll += losses[1].item();
  }
}

// Translates the pairs among the split's first max_sentences (0: all) and scores them against the references.
void score_bleu(const translator::Translator& model, const TranslationData& data, const ShardPairs& pairs,
                const EvalOptions& options, EvalResult& result, EvalSums& sums) {
  const int64_t max_len = model.options().max_positions;
  std::vector<std::vector<int32_t>> sources;
  for (size_t i = 0; i < pairs.ids.size(); ++i) {
    if (options.max_sentences > 0 && pairs.ids[i] >= options.max_sentences) break;
    sources.push_back(with_eos(pairs.src[i], max_len, data.eos_id));
    result.sources.push_back(data.src_tokenizer->decode(pairs.src[i]));
    result.references.push_back(data.tgt_tokenizer->decode(pairs.tgt[i]));
  }
  for (const auto& h : translate_batched(model, sources, options.decode, options.batch_tokens)) {
    result.hypotheses.push_back(data.tgt_tokenizer->decode(h.tokens));
    sums.bleu += translator::sentence_stats(result.hypotheses.back(), result.references[result.hypotheses.size() - 1]);
  }
}

}  // namespace

EvalResult evaluate_split(translator::Translator& model, const TranslationData& data, const EvalOptions& options) {
  CHECK(options.num_shards >= 1 && options.shard >= 0 && options.shard < options.num_shards &&
        (options.num_shards == 1 || options.sum_over_shards))
      << "evaluate_split: shard " << options.shard << " of " << options.num_shards << " (with a sum_over_shards)";
  const auto start = std::chrono::steady_clock::now();
  nn::EvalModeGuard eval_mode(model);
  NoGradGuard no_grad;
  const ShardPairs pairs = read_shard_pairs(data, options);
  EvalResult result;
  EvalSums sums;
  score_loss(model, data, pairs, options, sums);
  if (options.max_sentences >= 0) score_bleu(model, data, pairs, options, result, sums);
  // The sentences translated: this shard's count summed like the statistics.
  double sentences = static_cast<double>(result.hypotheses.size());
  if (options.num_shards > 1) {
    std::vector<double> totals = sums.pack();
    totals.push_back(sentences);
    options.sum_over_shards(totals);
    sentences = totals.back();
    totals.pop_back();
    sums.unpack(totals);
  }
  result.tgt_tokens = static_cast<int64_t>(sums.tgt_tokens);
  if (result.tgt_tokens > 0) {
    result.loss = sums.loss / sums.tgt_tokens;
    result.nll = sums.nll / sums.tgt_tokens;
  }
  if (options.max_sentences >= 0) {
    result.sentences = static_cast<int64_t>(sentences);
    result.bleu = translator::bleu_from_stats(sums.bleu);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace px

// Greedy and beam-search decoding of a Translator: one encoder pass per batch, then one cached decoder step per
// generated token over the rows still decoding; each row's best next tokens are chosen on the model's device (top-k)
// and only those reach the host.
#include "models/translator/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include "core/ops/ops.h"
#include "core/util/error.h"

namespace px::translator {

namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError("DecodeOptions." + message);
}

void check_options(const Translator& model, const DecodeOptions& options) {
  const int64_t vocab = model.options().tgt_vocab;
  require(options.beam >= 1, "beam: must be at least 1, got " + std::to_string(options.beam));
  require(options.max_len_a >= 0.0, "max_len_a: must be non-negative, got " + std::to_string(options.max_len_a));
  require(options.max_len_b >= 1, "max_len_b: must be at least 1, got " + std::to_string(options.max_len_b));
  if (model.options().max_positions < 2) {
    throw ConfigError("TranslatorOptions.max_positions: " + std::to_string(model.options().max_positions) +
                      " leaves no position to generate from");
  }
  for (const auto& [name, id] : {std::pair<const char*, int64_t>{"bos_id", options.bos_id},
                                 {"eos_id", options.eos_id}, {"pad_id", options.pad_id}}) {
    require(id >= 0 && id < vocab,
            std::string(name) + ": " + std::to_string(id) + " is outside the target vocabulary of " +
                std::to_string(vocab));
  }
  require(options.pad_id == model.options().pad_id, "pad_id: " + std::to_string(options.pad_id) +
                                                        " differs from the model's pad_id " +
                                                        std::to_string(model.options().pad_id));
  require(options.eos_id != options.pad_id && options.eos_id != options.bos_id,
          "eos_id: " + std::to_string(options.eos_id) + " must differ from bos_id and pad_id");
}

// Checks the call and returns each row's generation limit. src i64 (B, S).
std::vector<int64_t> decode_limits(const Translator& model, const Tensor& src, const DecodeOptions& options) {
  CHECK(!model.is_training()) << "decoding: call model.eval() first (dropout is active in training mode)";
  CHECK(src.defined() && src.dim() == 2 && src.dtype() == DType::i64)
      << "decoding: src must be i64 (B, S), got " << (src.defined() ? src.str() : "undefined");
  check_options(model, options);
  const int64_t batch = src.size(0), width = src.size(1);
  const std::vector<double> ids = to_vector(src);
  std::vector<int64_t> limits(batch);
  for (int64_t row = 0; row < batch; ++row) {
    const auto first = ids.begin() + row * width;
    const auto src_len = width - std::count(first, first + width, static_cast<double>(options.pad_id));
    if (src_len == 0) {
      throw DataError("decoding: source row " + std::to_string(row) + " is all padding (rows end in eos)");
    }
    limits[row] = max_decode_length(model, src_len, options);
  }
  return limits;
}

// The `width` best next tokens of every batch row, best first (ties: lower id), as read from the device.
struct NextTokens {
  int64_t width = 0;
  std::vector<double> log_probs;  // (B', width), -inf for pad and bos
  std::vector<int64_t> tokens;    // (B', width)
};

// One cached decoder step: `last_tokens` (B') are the newest token of every batch row -> each row's `width` best
// next tokens. The log-probabilities (B', V) stay on the model's device, pad and bos at -inf so they are never
// generated; their top-k comes to the host in one copy. The first step fills the cross-attention caches, after which
// enc.memory is dropped (they hold it now).
NextTokens next_tokens(const Translator& model, const std::vector<int64_t>& last_tokens, Encoded& enc,
                       DecoderCache& cache, int64_t width, const DecodeOptions& options) {
  const int64_t rows = static_cast<int64_t>(last_tokens.size());
  const Tensor tokens = to_device(from_vector(last_tokens, {rows, 1}), enc.pad_mask.device());  // (B', 1)
  const int64_t length_before = cache.length;
  const Tensor logits = model.decode(tokens, enc, &cache);  // (B', 1, V)
  CHECK_EQ(cache.length, length_before + 1) << "decoding: a step must extend the cache by one position";
  enc.memory = Tensor();
  const int64_t vocab = logits.size(2);
  // f32 log-probabilities for a bf16/f16 model: beam scores add them up over the whole sentence.
  const Tensor log_probs = log_softmax(to_dtype(reshape(logits, {rows, vocab}), master_dtype(logits.dtype())));
  fill_(narrow(log_probs, 1, options.pad_id, 1), kMinusInf);
  fill_(narrow(log_probs, 1, options.bos_id, 1), kMinusInf);
  const TopK best = topk(log_probs, width);  // (B', width)
  const std::vector<double> host =
      to_vector(cat({to_dtype(best.values, DType::f64), to_dtype(best.indices, DType::f64)}, 1));  // (B', 2 width)
  NextTokens next;
  next.width = width;
  next.log_probs.reserve(rows * width);
  next.tokens.reserve(rows * width);
  for (int64_t row = 0; row < rows; ++row) {
    const double* r = host.data() + row * 2 * width;
    next.log_probs.insert(next.log_probs.end(), r, r + width);
    for (int64_t j = 0; j < width; ++j) next.tokens.push_back(static_cast<int64_t>(r[width + j]));
  }
  return next;
}

// Keeps batch rows `rows` (indices into the current batch, in their new order) of the cache and padding mask.
void select_rows(const std::vector<int64_t>& rows, Encoded& enc, DecoderCache& cache) {
  std::vector<int64_t> identity(rows.size());
  std::iota(identity.begin(), identity.end(), int64_t{0});
  if (rows == identity && static_cast<int64_t>(rows.size()) == enc.pad_mask.size(0)) return;
  const Tensor index =
      to_device(from_vector(rows, {static_cast<int64_t>(rows.size())}), enc.pad_mask.device());  // (B'')
  cache.select_rows(index);
  enc.pad_mask = index_select(enc.pad_mask, 0, index);
}

// A live beam-search hypothesis.
struct Beam {
  std::vector<int32_t> tokens;  // generated so far, without bos
  double log_prob = 0.0;        // sum of the tokens' log-probabilities
};

// An extension of a beam by one token.
struct Candidate {
  double log_prob;  // the beam's plus the token's
  int64_t beam;     // index into the sentence's beams
  int64_t token;
};

// Higher log-probability first; ties by beam, then token, so the order is deterministic.
bool ranks_before(const Candidate& a, const Candidate& b) {
  if (a.log_prob != b.log_prob) return a.log_prob > b.log_prob;
  if (a.beam != b.beam) return a.beam < b.beam;
  return a.token < b.token;
}

// One sentence's search: its live beams (consecutive rows of the batch) and finished hypotheses.
struct SentenceSearch {
  int64_t row = 0;    // in src
  int64_t limit = 0;  // generation limit
  std::vector<Beam> beams;
  std::vector<Hypothesis> finished;
};

Hypothesis finish(std::vector<int32_t> tokens, double log_prob, int64_t length, double length_penalty) {
  return Hypothesis{std::move(tokens), log_prob / std::pow(static_cast<double>(length), length_penalty)};
}

// Step `step` of one sentence given the best next tokens of its beams (rows first_row... of `best`, at least 2k per
// beam or the whole vocabulary; fairseq's rules): the 2k best candidates over (beam, token) are ranked; those
// ending in eos within the first k places are finished (length step + 1 counting the eos); the first k others
// continue. The sentence is done when it has k finished hypotheses, or at its limit, where the continuing ones are
// finished as they stand. Returns the parents (indices into the old beams) of the new beams; empty when done.
std::vector<int64_t> advance(SentenceSearch& sentence, const NextTokens& best, int64_t first_row, int64_t step,
                             const DecodeOptions& options) {
  const size_t k = static_cast<size_t>(options.beam);
  std::vector<Candidate> candidates;
  for (size_t b = 0; b < sentence.beams.size(); ++b) {
    const int64_t row = first_row + static_cast<int64_t>(b);
    for (int64_t j = 0; j < best.width; ++j) {
      const double token_log_prob = best.log_probs[row * best.width + j];
      if (token_log_prob == kMinusInf) continue;
      candidates.push_back(
          {sentence.beams[b].log_prob + token_log_prob, static_cast<int64_t>(b), best.tokens[row * best.width + j]});
    }
  }
  const size_t ranked = std::min(candidates.size(), 2 * k);
  std::partial_sort(candidates.begin(), candidates.begin() + ranked, candidates.end(), ranks_before);
  candidates.resize(ranked);

  const int64_t length = step + 1;
  for (size_t i = 0; i < std::min(ranked, k) && sentence.finished.size() < k; ++i) {
    const Candidate& c = candidates[i];
    if (c.token == options.eos_id) {
      sentence.finished.push_back(
          finish(sentence.beams[c.beam].tokens, c.log_prob, length, options.length_penalty));
    }
  }
  if (sentence.finished.size() == k) return {};

  std::vector<Beam> next;
  std::vector<int64_t> parents;
  for (const Candidate& c : candidates) {
    if (c.token == options.eos_id || next.size() == k) continue;
    Beam beam{sentence.beams[c.beam].tokens, c.log_prob};
    beam.tokens.push_back(static_cast<int32_t>(c.token));
    next.push_back(std::move(beam));
    parents.push_back(c.beam);
  }
  if (length == sentence.limit || next.empty()) {
    for (Beam& beam : next) {
      if (sentence.finished.size() == k) break;
      sentence.finished.push_back(finish(std::move(beam.tokens), beam.log_prob, length, options.length_penalty));
    }
    return {};
  }
  sentence.beams = std::move(next);
  return parents;
}

// The highest-scoring finished hypothesis (the first one on ties).
Hypothesis best_of(std::vector<Hypothesis>& finished) {
  CHECK(!finished.empty()) << "beam search: a sentence ended without a finished hypothesis";
  size_t best = 0;
  for (size_t i = 1; i < finished.size(); ++i) {
    if (finished[i].score > finished[best].score) best = i;
  }
  return std::move(finished[best]);
}

}  // namespace

int64_t max_decode_length(const Translator& model, int64_t src_len, const DecodeOptions& options) {
  check_options(model, options);
  const auto by_source = static_cast<int64_t>(
      std::floor(options.max_len_a * static_cast<double>(src_len) + static_cast<double>(options.max_len_b)));
  return std::min(by_source, model.options().max_positions - 1);
}

std::vector<Hypothesis> greedy_decode(const Translator& model, const Tensor& src, const DecodeOptions& options) {
  const std::vector<int64_t> limits = decode_limits(model, src, options);
  NoGradGuard no_grad;
  std::vector<Hypothesis> result(src.size(0));
  if (result.empty()) return result;

  Encoded enc = model.encode(to_device(src, model.device()));
  DecoderCache cache = model.new_cache(*std::max_element(limits.begin(), limits.end()));
  std::vector<int64_t> live(result.size());  // the src row of every batch row
  std::iota(live.begin(), live.end(), int64_t{0});
  std::vector<int64_t> last_tokens(result.size(), options.bos_id);
  for (int64_t step = 0; !live.empty(); ++step) {
    const NextTokens best = next_tokens(model, last_tokens, enc, cache, 1, options);  // (B', 1)
    std::vector<int64_t> kept, next_live, next_tokens;
    for (size_t i = 0; i < live.size(); ++i) {
      const int64_t token = best.tokens[i];
      Hypothesis& hypothesis = result[live[i]];
      hypothesis.score += best.log_probs[i];
      if (token == options.eos_id) continue;
      hypothesis.tokens.push_back(static_cast<int32_t>(token));
      if (step + 1 == limits[live[i]]) continue;
      kept.push_back(static_cast<int64_t>(i));
      next_live.push_back(live[i]);
      next_tokens.push_back(token);
    }
    if (!kept.empty()) select_rows(kept, enc, cache);
    live = std::move(next_live);
    last_tokens = std::move(next_tokens);
  }
  return result;
}

// The batch holds the live beams of every unfinished sentence, sentence after sentence. It starts with one
// beam per sentence (bos), which is fairseq's first step with the other k - 1 beams at -inf, without
// computing them; select_rows then copies each parent's cache rows to its children.
std::vector<Hypothesis> beam_search(const Translator& model, const Tensor& src, const DecodeOptions& options) {
  const std::vector<int64_t> limits = decode_limits(model, src, options);
  NoGradGuard no_grad;
  const int64_t vocab = model.options().tgt_vocab;
  std::vector<Hypothesis> result(src.size(0));
  if (result.empty()) return result;

  Encoded enc = model.encode(to_device(src, model.device()));
  DecoderCache cache = model.new_cache(*std::max_element(limits.begin(), limits.end()));
  // 2k candidates per beam hold the 2k best of any sentence (a beam's score adds the same to all its tokens).
  const int64_t width = std::min<int64_t>(2 * options.beam, vocab);
  std::vector<SentenceSearch> live(result.size());
  for (size_t row = 0; row < live.size(); ++row) {
    live[row].row = static_cast<int64_t>(row);
    live[row].limit = limits[row];
    live[row].beams.emplace_back();
  }
  for (int64_t step = 0; !live.empty(); ++step) {
    std::vector<int64_t> last_tokens;
    for (const SentenceSearch& sentence : live) {
      for (const Beam& beam : sentence.beams) {
        last_tokens.push_back(beam.tokens.empty() ? options.bos_id : beam.tokens.back());
      }
    }
    const NextTokens next = next_tokens(model, last_tokens, enc, cache, width, options);  // (B', width)
    std::vector<int64_t> parent_rows;  // the batch row of each new beam's parent
    std::vector<SentenceSearch> still_live;
    int64_t first_row = 0;  // the sentence's first batch row
    for (SentenceSearch& sentence : live) {
      const int64_t beams = static_cast<int64_t>(sentence.beams.size());
      const std::vector<int64_t> parents = advance(sentence, next, first_row, step, options);
      if (parents.empty()) {
        result[sentence.row] = best_of(sentence.finished);
      } else {
        for (int64_t parent : parents) parent_rows.push_back(first_row + parent);
        still_live.push_back(std::move(sentence));
      }
      first_row += beams;
    }
    if (!parent_rows.empty()) select_rows(parent_rows, enc, cache);
    live = std::move(still_live);
  }
  return result;
}

std::vector<Hypothesis> decode(const Translator& model, const Tensor& src, const DecodeOptions& options) {
  return options.beam > 1 ? beam_search(model, src, options) : greedy_decode(model, src, options);
}

}  // namespace px::translator

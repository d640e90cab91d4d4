// Greedy and beam-search decoding against plain references that recompute the whole prefix without a cache, one
// sentence at a time; exhaustive search on a tiny vocabulary; length limits; no recomputation; a trained model.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/util/error.h"
#include "models/translator/decoding.h"

namespace px::translator {
namespace {

constexpr int64_t kPad = 0, kBos = 2, kEos = 3, kFirstWord = 4;  // id 1 (unk) is an ordinary token here
// f64 decoding against f64 references: the cache and padding change only the summation order of a few dozen
// terms of size ~1, so scores agree to ~1e-14; 1e-9 leaves room while catching any real difference.
constexpr double kScoreTol = 1e-9;
constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

using Row = std::vector<int64_t>;  // one source sentence: ids ending in eos, no padding
using Tokens = std::vector<int32_t>;

// A Translator in eval mode with its generators (the dropout one must outlive it).
struct TestModel {
  Generator init_gen, dropout_gen;
  std::unique_ptr<Translator> model;

  TestModel(const TranslatorOptions& options, uint64_t seed)
      : init_gen(seed), dropout_gen(seed + 1), model(std::make_unique<Translator>(options, init_gen, dropout_gen)) {
    model->eval();
  }
  const Translator& operator*() const { return *model; }
  // The parameter `name` (shares storage with the model).
  Tensor parameter(const std::string& name) const { return model->state_dict().at(name); }
};

TranslatorOptions small_options(int64_t vocab) {
  TranslatorOptions o;
  o.src_vocab = o.tgt_vocab = vocab;
  o.d_model = 16;
  o.num_heads = 2;
  o.encoder_layers = o.decoder_layers = 2;
  o.d_ff = 32;
  o.max_positions = 64;
  o.dtype = DType::f64;
  return o;
}

// A random f64 model with its output table scaled up so next-token distributions are peaked (the default init
// gives nearly flat ones), and eos's row more, so that eos is either very likely or very unlikely and
// sentences end at varied lengths instead of at their limits.
std::unique_ptr<TestModel> random_model(const TranslatorOptions& options, uint64_t seed) {
  auto m = std::make_unique<TestModel>(options, seed);
  const std::string table = !options.tie_output        ? "output_proj.weight"
                            : options.share_embeddings ? "embed.weight"
                                                       : "tgt_embed.weight";
  NoGradGuard no_grad;
  const Tensor weight = m->parameter(table);  // (V, d)
  mul_(weight, 4.0);
  mul_(narrow(weight, 0, kEos, 1), 3.0);
  return m;
}

// Pins the output logit of each token in `logits` (token -> value) whatever the input, in a pre-norm model with
// an untied output: the final LayerNorm's coordinate 0 becomes the constant 1 and the tokens' rows of
// output_proj read only that coordinate.
void pin_logits(const TestModel& m, const std::map<int64_t, double>& logits) {
  CHECK(m.model->options().pre_norm && !m.model->options().tie_output);
  NoGradGuard no_grad;
  fill_(narrow(m.parameter("decoder.norm.weight"), 0, 0, 1), 0.0);
  fill_(narrow(m.parameter("decoder.norm.bias"), 0, 0, 1), 1.0);
  const Tensor proj = m.parameter("output_proj.weight");  // (V, d)
  for (const auto& [token, value] : logits) {
    const Tensor row = narrow(proj, 0, token, 1);  // (1, d)
    fill_(row, 0.0);
    fill_(narrow(row, 1, 0, 1), value);
  }
}

// rows right-padded -> i64 (B, S)
Tensor make_batch(const std::vector<Row>& rows) {
  size_t width = 0;
  for (const Row& r : rows) width = std::max(width, r.size());
  std::vector<int64_t> ids(rows.size() * width, kPad);
  for (size_t i = 0; i < rows.size(); ++i) std::copy(rows[i].begin(), rows[i].end(), ids.begin() + i * width);
  return from_vector(ids, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)});
}

// `count` sources of 0..max_words random words plus eos; the first one is empty (eos only).
std::vector<Row> random_rows(int64_t count, int64_t vocab, int64_t max_words, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Row> rows;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t words = i == 0 ? 0 : std::uniform_int_distribution<int64_t>(1, max_words)(rng);
    Row row;
    for (int64_t w = 0; w < words; ++w) row.push_back(std::uniform_int_distribution<int64_t>(kFirstWord, vocab - 1)(rng));
    row.push_back(kEos);
    rows.push_back(row);
  }
  return rows;
}

DecodeOptions options_with(int beam, double length_penalty, double max_len_a, int64_t max_len_b) {
  DecodeOptions o;
  o.beam = beam;
  o.length_penalty = length_penalty;
  o.max_len_a = max_len_a;
  o.max_len_b = max_len_b;
  o.bos_id = kBos;
  o.eos_id = kEos;
  o.pad_id = kPad;
  return o;
}

// The limit restated from decoding.h: min(floor(a * src_len + b), max_positions - 1).
int64_t reference_limit(const Translator& model, const Row& src, const DecodeOptions& o) {
  return std::min(static_cast<int64_t>(std::floor(o.max_len_a * static_cast<double>(src.size()) + o.max_len_b)),
                  model.options().max_positions - 1);
}

// log p(next token | src, bos + prefix) (V) by a full forward pass over the prefix, pad and bos at -inf.
std::vector<double> full_pass_log_probs(const Translator& model, const Row& src, const Tokens& prefix) {
  NoGradGuard no_grad;
  std::vector<int64_t> tgt_in{kBos};
  tgt_in.insert(tgt_in.end(), prefix.begin(), prefix.end());
  const int64_t length = static_cast<int64_t>(tgt_in.size());
  const Tensor logits = model.forward(make_batch({src}), from_vector(tgt_in, {1, length}));  // (1, T, V)
  std::vector<double> log_probs = to_vector(log_softmax(narrow(logits, 1, length - 1, 1)));
  log_probs[kPad] = log_probs[kBos] = kMinusInf;
  return log_probs;
}

// Greedy decoding of one source, recomputing the whole prefix each step.
Hypothesis reference_greedy(const Translator& model, const Row& src, const DecodeOptions& o) {
  const int64_t limit = reference_limit(model, src, o);
  Hypothesis h;
  for (int64_t step = 0; step < limit; ++step) {
    const std::vector<double> lp = full_pass_log_probs(model, src, h.tokens);
    const auto token = static_cast<int32_t>(std::max_element(lp.begin(), lp.end()) - lp.begin());
    h.score += lp[token];
    if (token == kEos) break;
    h.tokens.push_back(token);
  }
  return h;
}

// Beam search on one source with fairseq's rules as decoding.h states them, recomputing every prefix.
Hypothesis reference_beam(const Translator& model, const Row& src, const DecodeOptions& o) {
  struct Live {
    Tokens tokens;
    double log_prob;
  };
  struct Candidate {
    double log_prob;
    size_t beam;
    int32_t token;
  };
  const size_t k = o.beam;
  const int64_t limit = reference_limit(model, src, o);
  const auto penalised = [&](double log_prob, size_t length) {
    return log_prob / std::pow(static_cast<double>(length), o.length_penalty);
  };
  std::vector<Live> live{{Tokens{}, 0.0}};
  std::vector<Hypothesis> finished;
  for (int64_t step = 0;; ++step) {
    std::vector<Candidate> candidates;  // in (beam, token) order, which stable_sort keeps among equal scores
    for (size_t b = 0; b < live.size(); ++b) {
      const std::vector<double> lp = full_pass_log_probs(model, src, live[b].tokens);
      for (size_t t = 0; t < lp.size(); ++t) {
        if (lp[t] != kMinusInf) candidates.push_back({live[b].log_prob + lp[t], b, static_cast<int32_t>(t)});
      }
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& x, const Candidate& y) { return x.log_prob > y.log_prob; });
    if (candidates.size() > 2 * k) candidates.resize(2 * k);
    for (size_t i = 0; i < candidates.size() && i < k; ++i) {
      const Candidate& c = candidates[i];
      if (c.token == kEos && finished.size() < k) {
        finished.push_back({live[c.beam].tokens, penalised(c.log_prob, live[c.beam].tokens.size() + 1)});
      }
    }
    if (finished.size() == k) break;
    std::vector<Live> next;
    for (const Candidate& c : candidates) {
      if (c.token == kEos || next.size() == k) continue;
      Tokens tokens = live[c.beam].tokens;
      tokens.push_back(c.token);
      next.push_back({tokens, c.log_prob});
    }
    if (step + 1 == limit || next.empty()) {
      for (const Live& l : next) {
        if (finished.size() < k) finished.push_back({l.tokens, penalised(l.log_prob, l.tokens.size())});
      }
      break;
    }
    live = next;
  }
  Hypothesis best = finished.at(0);
  for (const Hypothesis& h : finished) {
    if (h.score > best.score) best = h;
  }
  return best;
}

void expect_same(const Hypothesis& actual, const Hypothesis& expected, const std::string& what) {
  EXPECT_EQ(actual.tokens, expected.tokens) << what;
  EXPECT_NEAR(actual.score, expected.score, kScoreTol) << what;
}

void expect_no_special_tokens(const std::vector<Hypothesis>& hypotheses) {
  for (const Hypothesis& h : hypotheses) {
    for (int32_t t : h.tokens) {
      EXPECT_TRUE(t != kPad && t != kBos && t != kEos) << "special token " << t << " in the output";
    }
  }
}

// Two architectures: post-norm with separate tables, and pre-norm with shared, tied embeddings.
std::vector<std::unique_ptr<TestModel>> random_models() {
  std::vector<std::unique_ptr<TestModel>> models;
  models.push_back(random_model(small_options(16), 11));
  TranslatorOptions shared = small_options(16);
  shared.pre_norm = shared.share_embeddings = shared.tie_output = true;
  models.push_back(random_model(shared, 12));
  return models;
}

TEST(GreedyDecode, MatchesFullRecomputation) {
  for (const auto& m : random_models()) {
    const std::vector<Row> rows = random_rows(8, 16, 7, 1);
    for (const DecodeOptions& o : {options_with(1, 1.0, 1.0, 3), options_with(1, 1.0, 2.0, 10)}) {
      const std::vector<Hypothesis> out = greedy_decode(**m, make_batch(rows), o);
      ASSERT_EQ(out.size(), rows.size());
      expect_no_special_tokens(out);
      for (size_t i = 0; i < rows.size(); ++i) {
        expect_same(out[i], reference_greedy(**m, rows[i], o), "row " + std::to_string(i));
      }
    }
  }
}

TEST(BeamSearch, BeamOfOneIsGreedy) {
  const auto m = random_model(small_options(16), 21);
  const std::vector<Row> rows = random_rows(8, 16, 7, 2);
  const Tensor src = make_batch(rows);
  const std::vector<Hypothesis> greedy = greedy_decode(**m, src, options_with(1, 1.0, 1.0, 5));
  const std::vector<Hypothesis> via_decode = decode(**m, src, options_with(1, 1.0, 1.0, 5));
  const std::vector<Hypothesis> unpenalised = beam_search(**m, src, options_with(1, 0.0, 1.0, 5));
  const std::vector<Hypothesis> penalised = beam_search(**m, src, options_with(1, 1.0, 1.0, 5));
  ASSERT_EQ(greedy.size(), 8u);
  int64_t stopped_by_eos = 0;
  for (size_t i = 0; i < greedy.size(); ++i) {
    expect_same(via_decode[i], greedy[i], "decode, row " + std::to_string(i));
    expect_same(unpenalised[i], greedy[i], "beam 1, alpha 0, row " + std::to_string(i));
    // A greedy sum over n tokens plus eos, or over the limit's tokens without one, divided by the length.
    const int64_t limit = reference_limit(**m, rows[i], options_with(1, 1.0, 1.0, 5));
    const bool ended_by_eos = static_cast<int64_t>(greedy[i].tokens.size()) < limit;
    stopped_by_eos += ended_by_eos;
    const double length = static_cast<double>(greedy[i].tokens.size() + (ended_by_eos ? 1 : 0));
    EXPECT_EQ(penalised[i].tokens, greedy[i].tokens) << "row " << i;
    EXPECT_NEAR(penalised[i].score, greedy[i].score / length, kScoreTol) << "row " << i;
  }
  EXPECT_GT(stopped_by_eos, 0) << "no row ended by eos: the check of the length normalisation is vacuous";
}

TEST(BeamSearch, MatchesUnbatchedRecomputation) {
  for (const auto& m : random_models()) {
    const std::vector<Row> rows = random_rows(6, 16, 6, 3);
    for (int beam : {2, 4}) {
      for (double alpha : {0.0, 1.0, 0.6}) {
        const DecodeOptions o = options_with(beam, alpha, 1.0, 3);
        const std::vector<Hypothesis> out = beam_search(**m, make_batch(rows), o);
        ASSERT_EQ(out.size(), rows.size());
        expect_no_special_tokens(out);
        for (size_t i = 0; i < rows.size(); ++i) {
          expect_same(out[i], reference_beam(**m, rows[i], o),
                      "beam " + std::to_string(beam) + ", alpha " + std::to_string(alpha) + ", row " +
                          std::to_string(i));
        }
      }
    }
  }
}

// Each row of a padded batch decodes as it does alone, for both searches and rows that finish at different steps.
TEST(Decode, BatchEqualsOneSentenceAtATime) {
  const auto m = random_model(small_options(16), 31);
  const std::vector<Row> rows = random_rows(10, 16, 9, 4);
  for (const DecodeOptions& o : {options_with(1, 1.0, 1.0, 4), options_with(3, 1.0, 1.0, 4),
                                 options_with(5, 0.6, 0.5, 6)}) {
    const std::vector<Hypothesis> batched = decode(**m, make_batch(rows), o);
    ASSERT_EQ(batched.size(), rows.size());
    std::vector<size_t> lengths;
    for (size_t i = 0; i < rows.size(); ++i) {
      expect_same(batched[i], decode(**m, make_batch({rows[i]}), o).at(0),
                  "beam " + std::to_string(o.beam) + ", row " + std::to_string(i));
      lengths.push_back(batched[i].tokens.size());
    }
    EXPECT_NE(*std::min_element(lengths.begin(), lengths.end()), *std::max_element(lengths.begin(), lengths.end()))
        << "every row has the same length: rows never left the batch at different steps";
  }
}

// With 3 words and eos over at most 4 steps there are 1 + 3 + 9 + 27 + 81 = 121 outputs; a beam of 128 never
// prunes (at most 108 candidates a step) and never stops early, so it must find the best one.
TEST(BeamSearch, LargeBeamFindsTheExhaustiveOptimum) {
  const auto m = random_model(small_options(6), 41);
  const int32_t words[] = {1, 4, 5};
  constexpr int64_t kLimit = 4;
  for (const Row& src : std::vector<Row>{{kEos}, {4, 5, kEos}, {5, 1, 1, 4, kEos}}) {
    std::map<Tokens, std::vector<double>> next;  // prefix -> next-token log-probs
    std::vector<Tokens> prefixes{{}};
    for (size_t i = 0; i < prefixes.size(); ++i) {
      next[prefixes[i]] = full_pass_log_probs(**m, src, prefixes[i]);
      if (static_cast<int64_t>(prefixes[i].size()) + 1 == kLimit) continue;
      for (int32_t w : words) {
        Tokens longer = prefixes[i];
        longer.push_back(w);
        prefixes.push_back(longer);
      }
    }
    for (double alpha : {0.0, 0.6, 1.0}) {
      Hypothesis best{{}, kMinusInf};
      const auto consider = [&](const Tokens& tokens, double log_prob, size_t length) {
        const double score = log_prob / std::pow(static_cast<double>(length), alpha);
        if (score > best.score) best = Hypothesis{tokens, score};
      };
      int64_t outputs = 0;
      for (const auto& [prefix, lp] : next) {
        double log_prob = 0.0;  // of the prefix
        for (size_t j = 0; j < prefix.size(); ++j) {
          log_prob += next.at(Tokens(prefix.begin(), prefix.begin() + j))[prefix[j]];
        }
        consider(prefix, log_prob + lp[kEos], prefix.size() + 1);
        ++outputs;
        if (static_cast<int64_t>(prefix.size()) + 1 < kLimit) continue;
        for (int32_t w : words) {
          Tokens full = prefix;
          full.push_back(w);
          consider(full, log_prob + lp[w], full.size());
          ++outputs;
        }
      }
      ASSERT_EQ(outputs, 121);
      const std::vector<Hypothesis> out = beam_search(**m, make_batch({src}), options_with(128, alpha, 0.0, kLimit));
      expect_same(out.at(0), best, "alpha " + std::to_string(alpha));
    }
  }
}

TEST(Decode, LengthLimits) {
  TranslatorOptions options = small_options(16);
  options.pre_norm = true;
  const auto m = random_model(options, 51);
  EXPECT_EQ(max_decode_length(**m, 5, options_with(1, 1.0, 1.2, 10)), 16);
  EXPECT_EQ(max_decode_length(**m, 3, options_with(1, 1.0, 0.5, 1)), 2);  // floor(2.5)
  EXPECT_EQ(max_decode_length(**m, 10, options_with(1, 1.0, 2.0, 100)), 63);  // max_positions - 1
  pin_logits(*m, {{kEos, -100.0}});  // eos never wins: every row runs to its limit
  const std::vector<Row> rows = random_rows(6, 16, 8, 5);
  for (int beam : {1, 4}) {
    for (const DecodeOptions& o : {options_with(beam, 1.0, 1.0, 2), options_with(beam, 1.0, 0.5, 1),
                                   options_with(beam, 1.0, 3.0, 50)}) {
      const std::vector<Hypothesis> out = decode(**m, make_batch(rows), o);
      expect_no_special_tokens(out);
      for (size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(static_cast<int64_t>(out[i].tokens.size()), reference_limit(**m, rows[i], o))
            << "beam " << beam << ", a " << o.max_len_a << ", b " << o.max_len_b << ", row " << i;
      }
    }
  }
}

// Pad and bos are never generated, even when the model prefers them to everything else.
TEST(Decode, NeverGeneratesPadOrBos) {
  TranslatorOptions options = small_options(16);
  options.pre_norm = true;
  const auto m = random_model(options, 61);
  pin_logits(*m, {{kPad, 100.0}, {kBos, 90.0}});
  const Tensor src = make_batch(random_rows(5, 16, 6, 6));
  for (int beam : {1, 3}) {
    const std::vector<Hypothesis> out = decode(**m, src, options_with(beam, 1.0, 1.0, 4));
    ASSERT_EQ(out.size(), 5u);
    expect_no_special_tokens(out);
    for (const Hypothesis& h : out) EXPECT_LT(h.score, -80.0) << "pad's and bos's mass was renormalised away";
  }
}

TEST(Decode, RejectsBadInput) {
  const auto m = random_model(small_options(16), 71);
  const Tensor src = make_batch(random_rows(3, 16, 4, 7));
  DecodeOptions o = options_with(0, 1.0, 1.0, 4);
  EXPECT_THROW(decode(**m, src, o), ConfigError);
  o = options_with(2, 1.0, 1.0, 0);
  EXPECT_THROW(decode(**m, src, o), ConfigError);
  o = options_with(2, 1.0, -1.0, 4);
  EXPECT_THROW(decode(**m, src, o), ConfigError);
  o = options_with(2, 1.0, 1.0, 4);
  o.eos_id = 16;
  EXPECT_THROW(decode(**m, src, o), ConfigError);
  o = options_with(2, 1.0, 1.0, 4);
  o.pad_id = 1;
  EXPECT_THROW(decode(**m, src, o), ConfigError);
  EXPECT_THROW(decode(**m, make_batch({{5, kEos}, {kPad, kPad}}), options_with(2, 1.0, 1.0, 4)), DataError);
  EXPECT_TRUE(decode(**m, make_batch({}), options_with(2, 1.0, 1.0, 4)).empty());
  m->model->train();
  EXPECT_DEATH(decode(**m, src, options_with(2, 1.0, 1.0, 4)), "model.eval\\(\\)");
}

// Counts the bytes of every host tensor allocated while it is installed.
class CountingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    allocated_ += bytes;
    return cpu_allocator().allocate(bytes);
  }
  void deallocate(void* ptr, size_t bytes) override { cpu_allocator().deallocate(ptr, bytes); }
  size_t allocated() const { return allocated_; }

 private:
  std::atomic<size_t> allocated_{0};
};

// Bytes of host tensors allocated by decoding src.
size_t decoding_bytes(const Translator& model, const Tensor& src, const DecodeOptions& o) {
  static CountingAllocator counter;  // outlives the tensors it allocated
  const size_t before = counter.allocated();
  register_allocator(DeviceType::cpu, &counter);
  decode(model, src, o);
  register_allocator(DeviceType::cpu, &cpu_allocator());
  return counter.allocated() - before;
}

// A cache with a capacity (buffers written in place) decodes exactly what a growing one (concatenation) decodes,
// through reorderings and dropped rows, and holds views of its buffers.
TEST(Decode, PreallocatedCacheMatchesGrowingCache) {
  const auto m = random_model(small_options(16), 61);
  const Tensor src = make_batch(random_rows(3, 16, 6, 9));
  NoGradGuard no_grad;
  Encoded grow_enc = (**m).encode(src), fixed_enc = grow_enc;
  DecoderCache grow = (**m).new_cache(), fixed = (**m).new_cache(10);
  std::vector<int64_t> tokens = {kBos, kBos, kBos};
  for (int64_t step = 0; step < 10; ++step) {
    const Tensor in = from_vector(tokens, {static_cast<int64_t>(tokens.size()), 1});
    const std::vector<double> a = to_vector((**m).decode(in, grow_enc, &grow));
    const std::vector<double> b = to_vector((**m).decode(in, fixed_enc, &fixed));
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-12) << "step " << step << ", logit " << i;
    const nn::KVCache& kv = fixed.layers[0].self_attn;
    ASSERT_EQ(kv.k.size(2), step + 1);
    ASSERT_EQ(kv.k_buffer.size(2), 10);
    ASSERT_EQ(kv.k.raw_data(), kv.k_buffer.raw_data()) << "k must be a view of the buffer";
    for (int64_t& t : tokens) t = kFirstWord + (t + step) % 7;
    // Reorder at step 3 (beam search) and drop a row at step 6 (a finished sentence).
    std::vector<int64_t> rows;
    if (step == 3) rows = {2, 0, 0};
    if (step == 6) rows = {1, 2};
    if (rows.empty()) continue;
    const Tensor index = from_vector(rows, {static_cast<int64_t>(rows.size())});
    for (auto* pair : {&grow_enc, &fixed_enc}) pair->pad_mask = index_select(pair->pad_mask, 0, index);
    grow.select_rows(index);
    fixed.select_rows(index);
    std::vector<int64_t> kept;
    for (int64_t r : rows) kept.push_back(tokens[r]);
    tokens = kept;
  }
  EXPECT_DEATH((**m).decode(from_vector(std::vector<int64_t>{4, 4}, {2, 1}), fixed_enc, &fixed),
               "the cache holds 10 positions");
}

// Cached decoding costs the same per step whatever the prefix (the (B', 1, V) logits dominate, V = 2048 and
// d = 8), so 48 steps allocate about 3x what 16 do; recomputing the prefix makes step t cost t times that,
// ~9x. The KV cache's own O(t) growth is a few percent at this d.
TEST(Decode, StepsDoNotRecomputeThePrefix) {
  TranslatorOptions options = small_options(2048);
  options.d_model = 8;
  options.encoder_layers = options.decoder_layers = 1;
  options.pre_norm = true;
  options.max_positions = 128;
  const auto m = random_model(options, 81);
  pin_logits(*m, {{kEos, -100.0}});
  const Tensor src = make_batch({{7, 9, kEos}});
  for (int beam : {1, 2}) {
    const size_t short_run = decoding_bytes(**m, src, options_with(beam, 1.0, 0.0, 16));
    const size_t long_run = decoding_bytes(**m, src, options_with(beam, 1.0, 0.0, 48));
    EXPECT_LT(static_cast<double>(long_run), 4.5 * static_cast<double>(short_run))
        << "beam " << beam << ": " << short_run << " bytes for 16 steps, " << long_run << " for 48";
  }
}

// A small model trained here to reverse sequences of 1-6 words (8 in the vocabulary) decodes held-out ones exactly.
// 300 steps of 64 sentences, lr 5e-3 decaying linearly to 0 (~3 s), decode all 40 with every OpenBLAS kernel
// tried (OPENBLAS_CORETYPE Haswell, SkylakeX, SapphireRapids, Zen, Prescott); 200 steps at a constant lr left
// a few outputs with a repeated word under some of them.
TEST(Decode, TrainedReverserDecodesCorrectly) {
  constexpr int64_t kVocab = 12, kBatch = 64, kSteps = 300;
  TranslatorOptions options;
  options.src_vocab = options.tgt_vocab = kVocab;
  options.d_model = 32;
  options.num_heads = 4;
  options.encoder_layers = options.decoder_layers = 2;
  options.d_ff = 64;
  options.dropout = 0.0;
  options.max_positions = 32;
  TestModel m(options, 91);
  m.model->train();
  std::mt19937_64 rng(92);
  const auto sample = [&](int64_t count) {
    std::vector<Row> rows = random_rows(count + 1, kVocab, 6, rng());
    rows.erase(rows.begin());  // the empty one
    return rows;
  };
  const auto reversed = [](const Row& src) { return Row(src.rbegin() + 1, src.rend()); };  // without eos
  optim::AdamW optimizer(m.model->parameters(), 5e-3, 0.0);
  for (int64_t step = 0; step < kSteps; ++step) {
    std::vector<Row> src = sample(kBatch), tgt_in, tgt_out;
    for (const Row& s : src) {
      Row target = reversed(s);
      Row in{kBos};
      in.insert(in.end(), target.begin(), target.end());
      target.push_back(kEos);
      tgt_in.push_back(in);
      tgt_out.push_back(target);
    }
    const Tensor loss = translation_loss(m.model->forward(make_batch(src), make_batch(tgt_in)),
                                         make_batch(tgt_out), kPad, 0.0, Reduction::mean);
    optimizer.set_lr(5e-3 * (1.0 - static_cast<double>(step) / kSteps));  // linear decay to 0
    optimizer.zero_grad();
    backward(loss);
    optimizer.step();
  }
  m.model->eval();
  const std::vector<Row> test_rows = sample(40);
  for (int beam : {1, 4}) {
    const std::vector<Hypothesis> out = decode(*m, make_batch(test_rows), options_with(beam, 1.0, 1.0, 5));
    for (size_t i = 0; i < test_rows.size(); ++i) {
      const Row expected = reversed(test_rows[i]);
      EXPECT_EQ(Row(out[i].tokens.begin(), out[i].tokens.end()), expected) << "beam " << beam << ", row " << i;
    }
  }
}

}  // namespace
}  // namespace px::translator

// Corpus BLEU exactly as sacreBLEU 2.x computes it by default: 13a tokenisation, n-grams up to 4,
// exponential smoothing, brevity penalty; one reference per hypothesis, on detokenised text.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace px::translator {

// sacreBLEU's "13a" tokenizer (mteval-v13a): unescapes &quot; &amp; &lt; &gt;, splits off ASCII
// punctuation and symbols, periods and commas unless between digits, dashes after digits.
std::vector<std::string> tokenize_13a(std::string_view line);

// Sufficient statistics of a corpus: summed over sentences, so corpora can be scored in pieces
// (and summed across ranks) and the score computed once.
struct BleuStats {
  std::array<int64_t, 4> matches{};  // clipped n-gram matches, n = 1..4
  std::array<int64_t, 4> totals{};   // hypothesis n-grams, n = 1..4
  int64_t sys_len = 0, ref_len = 0;  // tokens
  BleuStats& operator+=(const BleuStats& other);
};

BleuStats sentence_stats(std::string_view hypothesis, std::string_view reference);

struct BleuScore {
  double score = 0;                  // 0..100
  std::array<double, 4> precisions{};  // percent, after smoothing
  double brevity_penalty = 0;
  int64_t sys_len = 0, ref_len = 0;
  std::string str() const;  // "BLEU = 27.31 60.2/33.1/20.4/12.9 (BP = 1.000 ratio = 1.012 hyp_len = ... ref_len = ...)"
};

BleuScore bleu_from_stats(const BleuStats& stats);
// hypotheses[i] is scored against references[i]; the sizes must match (CHECK).
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

}  // namespace px::translator

// sacreBLEU's 13a tokenizer and corpus BLEU with exponential smoothing, written from its definition
// (sacrebleu/tokenizers/tokenizer_13a.py, sacrebleu/metrics/bleu.py) and checked against its numbers.
#include "models/translator/bleu.h"

#include <cmath>
#include <cstdio>
#include <map>

#include <glog/logging.h>

namespace px::translator {
namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_period_or_comma(char c) { return c == '.' || c == ','; }

// The first rule's class [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII symbols and punctuation except - . , ' and digits.
bool is_split_symbol(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 0x7B && u <= 0x7E) || (u >= 0x5B && u <= 0x60) || (u >= 0x20 && u <= 0x26) ||
         (u >= 0x28 && u <= 0x2B) || (u >= 0x3A && u <= 0x40) || u == 0x2F;
}

// One left-to-right, non-overlapping pass of a two-character rule, as Python's re.sub does: where
// matches(s[i], s[i+1]), the pair is replaced by emit(a, b); otherwise s[i] is copied.
template <typename Match, typename Emit>
std::string pair_rule(const std::string& s, Match matches, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && matches(s[i], s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Length in bytes of the Unicode whitespace code point at s[i] (as Python's str.split() sees it), or 0.
size_t whitespace_at(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const unsigned c = b(0);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  if (c == 0xC2 && (b(1) == 0x85 || b(1) == 0xA0)) return 2;                            // U+0085, U+00A0
  if (c == 0xE1 && b(1) == 0x9A && b(2) == 0x80) return 3;                              // U+1680
  if (c == 0xE2 && b(1) == 0x80 && (b(2) <= 0x8A || b(2) == 0xA8 || b(2) == 0xA9 || b(2) == 0xAF)) return 3;
  if (c == 0xE2 && b(1) == 0x81 && b(2) == 0x9F) return 3;                              // U+205F
  if (c == 0xE3 && b(1) == 0x80 && b(2) == 0x80) return 3;                              // U+3000
  return 0;
}

std::vector<std::string> split_whitespace(const std::string& s) {
  std::vector<std::string> tokens;
  std::string current;
  for (size_t i = 0; i < s.size();) {
    if (const size_t w = whitespace_at(s, i)) {
      if (!current.empty()) tokens.push_back(std::move(current));
      current.clear();
      i += w;
    } else {
      current.push_back(s[i++]);
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

using NgramCounts = std::map<std::vector<std::string_view>, int64_t>;

NgramCounts count_ngrams(const std::vector<std::string>& tokens, size_t n) {
  NgramCounts counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i) ++counts[std::vector<std::string_view>(tokens.begin() + i, tokens.begin() + i + n)];
  return counts;
}

}  // namespace

std::vector<std::string> tokenize_13a(std::string_view line) {
  std::string s(line);
  replace_all(s, "<skipped>", "");
  replace_all(s, "-\n", "");
  replace_all(s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    replace_all(s, "&quot;", "\"");
    replace_all(s, "&amp;", "&");
    replace_all(s, "&lt;", "<");
    replace_all(s, "&gt;", ">");
  }
  std::string spaced = " ";
  for (const char c : s) {
    if (is_split_symbol(c)) spaced += {' ', c, ' '};
    else spaced.push_back(c);
  }
  spaced.push_back(' ');
  // ([^0-9])([\.,]) -> "\1 \2 "
  spaced = pair_rule(spaced, [](char a, char b) { return !is_digit(a) && is_period_or_comma(b); },
                     [](std::string& o, char a, char b) { o += {a, ' ', b, ' '}; });
  // ([\.,])([^0-9]) -> " \1 \2"
  spaced = pair_rule(spaced, [](char a, char b) { return is_period_or_comma(a) && !is_digit(b); },
                     [](std::string& o, char a, char b) { o += {' ', a, ' ', b}; });
  // ([0-9])(-) -> "\1 \2 "
  spaced = pair_rule(spaced, [](char a, char b) { return is_digit(a) && b == '-'; },
                     [](std::string& o, char a, char b) { o += {a, ' ', b, ' '}; });
  return split_whitespace(spaced);
}

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  for (size_t n = 0; n < 4; ++n) {
    matches[n] += other.matches[n];
    totals[n] += other.totals[n];
  }
  sys_len += other.sys_len;
  ref_len += other.ref_len;
  return *this;
}

// matches[n-1] = sum over hypothesis n-grams of min(count in hypothesis, count in reference).
BleuStats sentence_stats(std::string_view hypothesis, std::string_view reference) {
  const std::vector<std::string> hyp = tokenize_13a(hypothesis), ref = tokenize_13a(reference);
  BleuStats stats;
  stats.sys_len = static_cast<int64_t>(hyp.size());
  stats.ref_len = static_cast<int64_t>(ref.size());
  for (size_t n = 1; n <= 4; ++n) {
    const NgramCounts h = count_ngrams(hyp, n), r = count_ngrams(ref, n);
    for (const auto& [gram, count] : h) {
      const auto it = r.find(gram);
      if (it != r.end()) stats.matches[n - 1] += std::min(count, it->second);
    }
    stats.totals[n - 1] = hyp.size() >= n ? static_cast<int64_t>(hyp.size() - n + 1) : 0;
  }
  return stats;
}

// BLEU = BP * exp(mean log p_n). No match at all scores 0; an order with no hypothesis n-gram stops
// the precisions there (score 0); an order with n-grams but no match gets 100 / (2^k * total), k
// counting such orders so far (sacreBLEU's "exp" smoothing).
BleuScore bleu_from_stats(const BleuStats& stats) {
  BleuScore s;
  s.sys_len = stats.sys_len;
  s.ref_len = stats.ref_len;
  if (stats.sys_len < stats.ref_len) {
    s.brevity_penalty = stats.sys_len > 0 ? std::exp(1.0 - double(stats.ref_len) / double(stats.sys_len)) : 0.0;
  } else {
    s.brevity_penalty = 1.0;
  }
  bool any_match = false;
  for (const int64_t m : stats.matches) any_match |= m > 0;
  if (!any_match) return s;
  double smooth = 1.0;
  for (size_t n = 0; n < 4; ++n) {
    if (stats.totals[n] == 0) break;
    if (stats.matches[n] == 0) {
      smooth *= 2.0;
      s.precisions[n] = 100.0 / (smooth * double(stats.totals[n]));
    } else {
      s.precisions[n] = 100.0 * double(stats.matches[n]) / double(stats.totals[n]);
    }
  }
  double log_sum = 0.0;
  for (const double p : s.precisions) {
    if (p == 0.0) return s;  // log(0): the score is 0
    log_sum += std::log(p);
  }
  s.score = s.brevity_penalty * std::exp(log_sum / 4.0);
  return s;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references) {
  CHECK_EQ(hypotheses.size(), references.size()) << "corpus_bleu: one reference per hypothesis";
  BleuStats stats;
  for (size_t i = 0; i < hypotheses.size(); ++i) stats += sentence_stats(hypotheses[i], references[i]);
  return bleu_from_stats(stats);
}

std::string BleuScore::str() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
                score, precisions[0], precisions[1], precisions[2], precisions[3], brevity_penalty,
                ref_len ? double(sys_len) / double(ref_len) : 0.0, static_cast<long long>(sys_len),
                static_cast<long long>(ref_len));
  return buf;
}

}  // namespace px::translator

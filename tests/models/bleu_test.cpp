// BLEU and the 13a tokenizer against values sacreBLEU 2.6.0 printed for these exact strings
// (corpus_bleu(hyps, [refs]) and Tokenizer13a()(line).split(), computed once, written in here).
#include <gtest/gtest.h>

#include "models/translator/bleu.h"

namespace px::translator {
namespace {

using Tokens = std::vector<std::string>;

TEST(Tokenize13a, MatchesSacreBleu) {
  EXPECT_EQ(tokenize_13a("Hello, world. It's 3.14 -- and 1,000 people!"),
            (Tokens{"Hello", ",", "world", ".", "It's", "3.14", "--", "and", "1,000", "people", "!"}));
  EXPECT_EQ(tokenize_13a("The cost was $5-10 (approx.) &amp; rising; see: http://x.org/a?b=c"),
            (Tokens{"The", "cost", "was", "$", "5", "-", "10", "(", "approx", ".", ")", "&", "rising", ";", "see", ":",
                    "http", ":", "/", "/", "x", ".", "org", "/", "a", "?", "b", "=", "c"}));
  EXPECT_EQ(tokenize_13a("Y dijo Dios: Sea la luz: y fué la luz."),
            (Tokens{"Y", "dijo", "Dios", ":", "Sea", "la", "luz", ":", "y", "fué", "la", "luz", "."}));
  EXPECT_EQ(tokenize_13a("¿Quién es él? «Paz», dijo el niño..."),
            (Tokens{"¿Quién", "es", "él", "?", "«Paz»", ",", "dijo", "el", "niño", ".", ".", "."}));
  EXPECT_EQ(tokenize_13a("a-b 1-2 x.y 3.x ,a a, [b] {c} ~d `e` @f \"g\" &quot;h&quot; &lt;i&gt;"),
            (Tokens{"a-b", "1", "-", "2", "x", ".", "y", "3", ".", "x", ",", "a", "a", ",", "[", "b", "]", "{", "c", "}",
                    "~", "d", "`", "e", "`", "@", "f", "\"", "g", "\"", "\"", "h", "\"", "<", "i", ">"}));
  EXPECT_EQ(tokenize_13a("  multiple   spaces\tand\ttabs  "), (Tokens{"multiple", "spaces", "and", "tabs"}));
  EXPECT_EQ(tokenize_13a(""), Tokens{});
  EXPECT_EQ(tokenize_13a("no\xC2\xA0" "break"), (Tokens{"no", "break"}));  // U+00A0 splits, as in Python
}

struct Expected {
  double score;
  std::array<int64_t, 4> matches, totals;
  int64_t sys_len, ref_len;
  std::array<double, 4> precisions;
  double bp;
};

void expect_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs, const Expected& e) {
  const BleuScore s = corpus_bleu(hyps, refs);
  BleuStats stats;
  for (size_t i = 0; i < hyps.size(); ++i) stats += sentence_stats(hyps[i], refs[i]);
  EXPECT_EQ(stats.matches, e.matches);
  EXPECT_EQ(stats.totals, e.totals);
  EXPECT_EQ(s.sys_len, e.sys_len);
  EXPECT_EQ(s.ref_len, e.ref_len);
  EXPECT_NEAR(s.score, e.score, 1e-9);
  for (size_t n = 0; n < 4; ++n) EXPECT_NEAR(s.precisions[n], e.precisions[n], 1e-9) << "order " << n + 1;
  EXPECT_NEAR(s.brevity_penalty, e.bp, 1e-12);
}

TEST(CorpusBleu, Perfect) {
  expect_bleu({"the cat sat on the mat ."}, {"the cat sat on the mat ."},
              {100.00000000000004, {7, 6, 5, 4}, {7, 6, 5, 4}, 7, 7, {100, 100, 100, 100}, 1.0});
}

TEST(CorpusBleu, BrevityPenaltyOverACorpus) {
  expect_bleu({"And God said, Let there be light: and there was light.", "In the beginning God created the earth."},
              {"And God said, Let there be light: and there was light.",
               "In the beginning God created the heaven and the earth."},
              {83.19057814859532, {22, 20, 17, 14}, {22, 20, 18, 16}, 22, 25, {100.0, 100.0, 94.44444444444444, 87.5},
               0.8725252928694237});
}

TEST(CorpusBleu, ExponentialSmoothingOfAZeroOrder) {
  expect_bleu({"the cat", "a dog barked loudly today"}, {"the cat is here", "the dog barked loudly"},
              {37.684991644924196, {5, 3, 1, 0}, {7, 5, 3, 2}, 7, 8,
               {71.42857142857143, 60.0, 33.333333333333336, 25.0}, 0.8668778997501817});
}

TEST(CorpusBleu, NoFourGramsScoresZero) {
  expect_bleu({"Y dijo Dios"}, {"Y dijo Dios: Sea la luz: y fué la luz."},
              {0.0, {3, 2, 1, 0}, {3, 2, 1, 0}, 3, 13, {100, 100, 100, 0}, 0.03567399334725241});
}

TEST(CorpusBleu, NoMatchAndEmptyHypothesis) {
  expect_bleu({"xyz qrs"}, {"abc def"}, {0.0, {0, 0, 0, 0}, {2, 1, 0, 0}, 2, 2, {0, 0, 0, 0}, 1.0});
  expect_bleu({""}, {"something here"}, {0.0, {0, 0, 0, 0}, {0, 0, 0, 0}, 0, 2, {0, 0, 0, 0}, 0.0});
}

TEST(CorpusBleu, UnicodePunctuationAndNumbers) {
  expect_bleu({"¿Quién es él? «Paz», dijo el niño...", "It costs 1,000.50 dollars -- or 3-4 euros.", "hola"},
              {"¿Quién es? «Paz», dijo el niño.", "It costs 1,000.50 dollars, or 3-4 euros.", "hola mundo"},
              {63.45892590373248, {20, 15, 11, 8}, {24, 21, 19, 17}, 24, 22,
               {83.33333333333333, 71.42857142857143, 57.89473684210526, 47.05882352941177}, 1.0});
}

TEST(CorpusBleu, StatsAddUpAcrossPieces) {
  const BleuStats a = sentence_stats("the cat", "the cat is here");
  BleuStats sum = a;
  sum += sentence_stats("a dog barked loudly today", "the dog barked loudly");
  EXPECT_NEAR(bleu_from_stats(sum).score, 37.684991644924196, 1e-9);
  EXPECT_EQ(bleu_from_stats(sum).str().rfind("BLEU = 37.68 71.4/60.0/33.3/25.0 (BP = 0.867", 0), 0u)
      << bleu_from_stats(sum).str();
}

}  // namespace
}  // namespace px::translator

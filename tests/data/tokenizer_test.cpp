// Tokenizer: text normalisation, SentencePiece training with Parallax's special ids, exact
// encode/decode round trips on normalised text, the model fingerprint and bad model files.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/tokenizer.h"
#include "tests/common/temp_dir.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using px::test::expect_data_error;
using px::test::make_temp_dir;

// A small bilingual-looking corpus with accents and punctuation, deterministic.
std::vector<std::string> corpus() {
  const char* words[] = {"the", "lord", "said", "unto", "moses", "and", "aarón", "señor", "dijo", "niño",
                         "tierra", "cielos", "¿quién?", "¡sí!", "water,", "light.", "día", "noche", "«paz»", "100"};
  std::vector<std::string> lines;
  for (int i = 0; i < 400; ++i) {
    std::string line;
    for (int j = 0; j < 4 + i % 9; ++j) line += std::string(j ? " " : "") + words[(i * 7 + j * 3 + i / 5) % 20];
    lines.push_back(line);
  }
  return lines;
}

TEST(NormalizeText, CollapsesWhitespaceAndControls) {
  EXPECT_EQ(normalize_text("  a \t b\r\n"), "a b");
  EXPECT_EQ(normalize_text("x\x01y"), "x y");
  EXPECT_EQ(normalize_text("niño  «paz»"), "niño «paz»");
  EXPECT_EQ(normalize_text(" \t "), "");
}

TEST(Fnv1a64, KnownValues) {
  EXPECT_EQ(fnv1a64_hex(""), "cbf29ce484222325");
  EXPECT_EQ(fnv1a64_hex("a"), "af63dc4c8601ec8c");
}

class TrainedTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(make_temp_dir("px_tokenizer_test_trained"));
    std::ofstream out(*dir_ / "text.txt");
    for (const auto& line : corpus()) out << line << "\n";
    out.close();
    TokenizerTrainOptions options;
    options.vocab_size = 400;
    options.num_threads = 1;
    Tokenizer::train({(*dir_ / "text.txt").string()}, (*dir_ / "spm").string(), options);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static fs::path* dir_;
};
fs::path* TrainedTokenizer::dir_ = nullptr;

TEST_F(TrainedTokenizer, SpecialIdsAndVocab) {
  const Tokenizer tok((*dir_ / "spm.model").string());
  EXPECT_GT(tok.vocab_size(), 256 + 4);  // bytes + specials, then pieces
  EXPECT_LE(tok.vocab_size(), 400);
  const auto ids = tok.encode("the lord said");
  ASSERT_FALSE(ids.empty());
  for (const int32_t id : ids) {
    EXPECT_GT(id, kEosId);
    EXPECT_LT(id, tok.vocab_size());
  }
}

TEST_F(TrainedTokenizer, RoundTripIsExactOnNormalisedText) {
  const Tokenizer tok((*dir_ / "spm.model").string());
  for (const auto& line : corpus()) EXPECT_EQ(tok.decode(tok.encode(line)), line);
  // Characters never seen in training come back through byte fallback, not as <unk>.
  const std::string unseen = normalize_text("Ωmega  ÆØÅ 漢字 tab\there");
  EXPECT_EQ(tok.decode(tok.encode(unseen)), unseen);
}

TEST_F(TrainedTokenizer, DecodeSkipsSpecialsAndChecksRange) {
  const Tokenizer tok((*dir_ / "spm.model").string());
  auto ids = tok.encode("señor dijo");
  ids.insert(ids.begin(), kBosId);
  ids.push_back(kEosId);
  ids.push_back(kPadId);
  EXPECT_EQ(tok.decode(ids), "señor dijo");
  EXPECT_THROW(tok.decode({5000}), DataError);
}

TEST_F(TrainedTokenizer, HashIsAFingerprintOfTheModel) {
  const Tokenizer a((*dir_ / "spm.model").string());
  const Tokenizer b((*dir_ / "spm.model").string());
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.hash().size(), 16u);
  TokenizerTrainOptions options;
  options.vocab_size = 350;
  options.num_threads = 1;
  Tokenizer::train({(*dir_ / "text.txt").string()}, (*dir_ / "other").string(), options);
  EXPECT_NE(Tokenizer((*dir_ / "other.model").string()).hash(), a.hash());
}

TEST(TokenizerErrors, MissingAndCorruptModelsNameTheFile) {
  const fs::path dir = make_temp_dir("px_tokenizer_test_errors");
  expect_data_error([&] { Tokenizer t((dir / "absent.model").string()); }, {"absent.model"});
  std::ofstream(dir / "junk.model") << "this is not a protobuf";
  expect_data_error([&] { Tokenizer t((dir / "junk.model").string()); }, {"junk.model"});
  EXPECT_THROW(Tokenizer::train({(dir / "missing.txt").string()}, (dir / "m").string(), {}), DataError);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace px::data

// SentencePiece tokenizer: training from text files, encode/decode, the special ids and a fingerprint
// of the model that shards carry so a model never reads shards made by another tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace px::data {

// What Parallax does to every sentence before SentencePiece sees it: control characters become
// spaces, runs of whitespace collapse to one space, leading/trailing whitespace is dropped. The
// tokenizer itself uses the identity normaliser with byte fallback, so decode(encode(s)) == s for
// every normalised s.
std::string normalize_text(std::string_view text);

// Fixed special ids of every Parallax tokenizer.
inline constexpr int32_t kPadId = 0, kUnkId = 1, kBosId = 2, kEosId = 3;

struct TokenizerTrainOptions {
  int32_t vocab_size = 8000;            // at most; >= 256 byte pieces + specials + characters
  std::string model_type = "unigram";  // or "bpe"
  int64_t max_sentences = 2000000;     // sampled from the inputs: bounds the trainer's memory
  uint32_t seed = 0;
  int num_threads = 0;                 // 0: hardware concurrency
};

class Tokenizer {
 public:
  // Trains on the already-normalised lines of `inputs` and writes `<model_prefix>.model` (and .vocab).
  // Throws DataError when SentencePiece fails (too small a corpus for vocab_size, unreadable input).
  static void train(const std::vector<std::string>& inputs, const std::string& model_prefix,
                    const TokenizerTrainOptions& options);

  // Loads a model file; DataError naming the file when it is missing or not a SentencePiece model.
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  Tokenizer(Tokenizer&& other) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  Tokenizer& operator=(Tokenizer&&) = delete;

  std::vector<int32_t> encode(std::string_view normalized_text) const;
  std::string decode(const std::vector<int32_t>& ids) const;  // pad/bos/eos ids are skipped
  int32_t vocab_size() const;
  const std::string& hash() const { return hash_; }  // hex FNV-1a 64 of the model file bytes
  const std::string& path() const { return path_; }

 private:
  std::string path_, hash_;
  void* handle_ = nullptr;  // a SentencePieceProcessor inside the shim (see tokenizer.cpp)
  int32_t vocab_size_ = 0;
};

// Hex FNV-1a 64 of bytes: a fingerprint (not a security hash) for tokenizer models.
std::string fnv1a64_hex(std::string_view bytes);

}  // namespace px::data

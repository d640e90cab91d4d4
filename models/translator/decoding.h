// Batched greedy and beam-search decoding of a Translator with an incremental key/value cache, so each new
// token costs one decoder step over the cached positions instead of a recomputation of the prefix.
#pragma once

#include <cstdint>
#include <vector>

#include "models/translator/transformer.h"

namespace px::translator {

struct DecodeOptions {
  int beam = 4;                  // 1: greedy
  double length_penalty = 1.0;   // alpha: a finished hypothesis scores sum(log p) / length^alpha (fairseq)
  double max_len_a = 1.2;        // at most floor(a * src_len + b) tokens are generated (eos included),
  int64_t max_len_b = 10;        //   src_len counting the source's eos, capped by max_positions - 1
  int64_t bos_id = 2, eos_id = 3, pad_id = 0;
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // generated ids without bos or eos
  double score = 0.0;           // length-normalised log-probability (beam) or sum of log-probabilities (greedy)
};

// Decodes every sentence of `src` i64 (B, S) (right-padded, each row ending in eos like the training data)
// under NoGradGuard; returns one best hypothesis per row, in row order. The caller puts the model in eval mode
// first (model.eval(); CHECKed, since dropout would otherwise be active). Bad options (beam < 1, max_len_a < 0,
// max_len_b < 1, ids outside the target vocabulary, pad_id other than the model's, eos_id equal to bos_id or
// pad_id) are a px::ConfigError naming the field; a source row of only padding is a px::DataError.
// Greedy takes the argmax each step until eos or the length limit. Beam search keeps `beam` live
// hypotheses per sentence; a hypothesis that emits eos is finished with score / length^alpha (length counts
// the eos); a sentence stops once it has `beam` finished hypotheses (fairseq's early stop), or at the length
// limit, where the live ones are finished as they stand. Finished sentences leave the batch.
std::vector<Hypothesis> greedy_decode(const Translator& model, const Tensor& src, const DecodeOptions& options);
std::vector<Hypothesis> beam_search(const Translator& model, const Tensor& src, const DecodeOptions& options);
// beam_search when options.beam > 1, else greedy_decode.
std::vector<Hypothesis> decode(const Translator& model, const Tensor& src, const DecodeOptions& options);

// The generation limit of a source of src_len tokens (with its eos).
int64_t max_decode_length(const Translator& model, int64_t src_len, const DecodeOptions& options);

}  // namespace px::translator

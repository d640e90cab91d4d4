// A small f64 Translator for the multi-rank tests, built at tp = 1 or tensor parallel over a grid from the same
// seeds, and random translation batches that are the same on every rank.
#pragma once

#include <memory>
#include <vector>

#include "core/ops/ops.h"
#include "models/translator/transformer.h"
#include "parallel/grid.h"

namespace px::test {

// d 16, 4 heads, d_ff 32, vocabularies divisible by tp = 2 and 4, no dropout. shared_tied: one table for both
// sides and the output (24); else 24 source and 28 target words, untied. pre_norm with GELU, else post-norm ReLU.
inline translator::TranslatorOptions small_translator_options(bool shared_tied = true, bool pre_norm = false,
                                                               int64_t layers = 2) {
  translator::TranslatorOptions o;
  o.src_vocab = o.tgt_vocab = 24;
  if (!shared_tied) o.tgt_vocab = 28;
  o.d_model = 16;
  o.num_heads = 4;
  o.encoder_layers = o.decoder_layers = layers;
  o.d_ff = 32;
  o.dropout = 0.0;
  o.attention_dropout = 0.0;
  o.activation = pre_norm ? nn::Activation::gelu : nn::Activation::relu;
  o.pre_norm = pre_norm;
  o.share_embeddings = shared_tied;
  o.tie_output = shared_tied;
  o.max_positions = 64;
  o.pad_id = 0;
  o.dtype = DType::f64;
  return o;
}

// A model and the generators it draws from.
struct BuiltTranslator {
  std::unique_ptr<Generator> init, dropout, sharded;
  std::unique_ptr<translator::Translator> model;
};

// Weights from `seed` (the same at every tp); with a grid of tp > 1, tensor parallel over grid->tp().
inline BuiltTranslator build_small_translator(const translator::TranslatorOptions& o, parallel::ParallelGrid* grid,
                                              uint64_t seed) {
  BuiltTranslator b;
  b.init = std::make_unique<Generator>(seed);
  b.dropout = std::make_unique<Generator>(seed + 1);
  models::TensorParallel tp;
  if (grid != nullptr && grid->tp_size() > 1) {
    b.sharded = std::make_unique<Generator>(seed + 2 + grid->tp_rank());
    tp.group = &grid->tp();
    tp.sharded_dropout_gen = b.sharded.get();
  }
  b.model = std::make_unique<translator::Translator>(o, *b.init, *b.dropout, tp);
  return b;
}

// Token ids in [1, vocab) with some right padding (pad 0), the same on every rank. -> (B, L) i64
inline Tensor random_tokens(int64_t B, int64_t L, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  const Tensor u = rand({B, L}, gen, 1.0, static_cast<double>(vocab) - 1e-9, DType::f64);
  std::vector<int64_t> ids(static_cast<size_t>(B * L));
  for (int64_t i = 0; i < B * L; ++i) {
    const int64_t b = i / L, t = i % L;
    ids[static_cast<size_t>(i)] = t >= L - (b % 3) ? 0 : static_cast<int64_t>(u.data<double>()[i]);
  }
  return from_vector(ids, {B, L});
}

struct TranslationBatch {
  Tensor src, tgt_in, tgt_out;  // i64 (B, S), (B, T), (B, T)

  // Rows [start, start + n). -> (n, S), (n, T), (n, T)
  TranslationBatch rows(int64_t start, int64_t n) const {
    return {narrow(src, 0, start, n), narrow(tgt_in, 0, start, n), narrow(tgt_out, 0, start, n)};
  }
  // Non-pad target tokens.
  double target_tokens() const { return sum(to_dtype(ne(tgt_out, zeros_like(tgt_out)), DType::f64)).item(); }
};

// B pairs of 7 source and 6 target positions.
inline TranslationBatch random_translation_batch(const translator::TranslatorOptions& o, int64_t B, uint64_t seed) {
  return {random_tokens(B, 7, o.src_vocab, seed), random_tokens(B, 6, o.tgt_vocab, seed + 1),
          random_tokens(B, 6, o.tgt_vocab, seed + 2)};
}

}  // namespace px::test

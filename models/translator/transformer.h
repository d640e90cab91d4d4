// Translator: the encoder-decoder Transformer of "Attention Is All You Need" (embeddings scaled by
// sqrt(d), sinusoidal positions, encoder and decoder stacks, output projection) and its training loss.
#pragma once

#include <memory>
#include <vector>

#include "core/nn/dropout.h"
#include "core/nn/layer_norm.h"
#include "core/nn/module.h"
#include "core/nn/module_list.h"
#include "core/nn/positional_encoding.h"
#include "core/ops/loss.h"
#include "core/util/generator.h"
#include "models/common/transformer_layers.h"
#include "parallel/tp/parallel_linear.h"
#include "parallel/tp/vocab_parallel.h"

namespace px::translator {

struct TranslatorOptions {
  int64_t src_vocab = 0, tgt_vocab = 0;
  int64_t d_model = 512, num_heads = 8, encoder_layers = 6, decoder_layers = 6, d_ff = 2048;
  double dropout = 0.1;            // embeddings and sublayer outputs
  double attention_dropout = 0.0;  // attention probabilities
  nn::Activation activation = nn::Activation::relu;
  bool pre_norm = false;           // pre-norm adds a final LayerNorm after each stack (encoder.norm, decoder.norm)
  bool share_embeddings = false;   // one table `embed` for both sides; needs src_vocab == tgt_vocab
  bool tie_output = false;         // logits = h @ tgt_embed^T (no output_proj.weight)
  int64_t max_positions = 1024;
  int64_t pad_id = 0;
  DType dtype = DType::f32;
};

// Inconsistent options (d_model % num_heads, share_embeddings with different vocabularies, zero sizes,
// dropout outside [0, 1)) are a px::ConfigError naming the option.
void check_options(const TranslatorOptions& options);

// The encoder's output for one batch of sources.
struct Encoded {
  Tensor memory;    // (B, S, d)
  Tensor pad_mask;  // (B, S) bool, true = padding
};

// A decoder's state while decoding one position at a time.
struct DecoderCache {
  std::vector<models::DecoderLayerCache> layers;  // one per decoder layer
  int64_t length = 0;                     // positions decoded so far (the positional offset)

  // Keeps batch rows `rows` (i64 (B'), indices into the current batch) of every cached tensor, in that order:
  // beam search's reordering after each step and dropping finished sentences.
  void select_rows(const Tensor& rows);
};

// Parameter names (pre-norm, separate embeddings, untied output):
//   src_embed.weight (V_src, d), tgt_embed.weight (V_tgt, d)   [share_embeddings: embed.weight]
//   encoder.layers.<i>.{self_attn.{qkv,out}, ff.{fc1,fc2}, norm1, norm2}.{weight,bias}, encoder.norm.*
//   decoder.layers.<i>.{self_attn.{qkv,out}, cross_attn.{q,kv,out}, ff.*, norm1..3}.*, decoder.norm.*
//   output_proj.weight (V_tgt, d)   [tie_output: none; the target table is used]
// Embeddings are drawn N(0, d^-1/2) with the pad row zero (fairseq), attention as torch's MultiheadAttention,
// other Linears torch's default. Embedding outputs are scaled by sqrt(d) before positions are added.
//
// One set of layers at every tp, a group of one when tp.group is null: embeddings VocabParallelEmbedding (V / tp
// rows), models::TransformerEncoderLayer / DecoderLayer, output_proj a ColumnParallelLinear (V / tp rows);
// LayerNorms replicated. At tp > 1 the same names hold sharded parameters, every shard the slice of the tp = 1
// weights of the same seed. Both vocabularies must be divisible by tp (no padding; a px::ConfigError otherwise).
class Translator : public nn::Module {
 public:
  // Weights from init_gen; dropout masks from dropout_gen (replicated activations, and the sharded ones at
  // tp = 1) and tp's sharded stream at tp > 1; the generators and tp.group must outlive the model.
  Translator(const TranslatorOptions& options, Generator& init_gen, Generator& dropout_gen,
             const models::TensorParallel& tp = {});

  // src i64 (B, S), right-padded with pad_id -> memory (B, S, d) and the padding mask.
  // Here and in decode, positions beyond max_positions are a px::DataError naming it.
  Encoded encode(const Tensor& src) const;
  // tgt_in i64 (B, T) (bos + target, right-padded) -> logits (B, T, V_tgt), teacher forced and causal.
  // With a cache, tgt_in holds only the next positions (usually T = 1) after cache->length decoded ones and
  // the cache is extended; enc.memory may then be undefined once the cross-attention caches are filled.
  Tensor decode(const Tensor& tgt_in, const Encoded& enc, DecoderCache* cache = nullptr) const;
  // decode(tgt_in, encode(src)) -> (B, T, V_tgt)
  Tensor forward(const Tensor& src, const Tensor& tgt_in) const;
  // translation_loss(forward(src, tgt_in), tgt_out, ...) without ever forming the full logits under tensor
  // parallelism (vocab-parallel cross-entropy); the same value on every tp rank. tgt_out i64 (B, T) -> 0-d
  Tensor loss(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out, double label_smoothing,
              Reduction reduction = Reduction::sum) const;
  // loss at each of label_smoothings from one forward pass (evaluation: the smoothed loss and the NLL).
  std::vector<Tensor> losses(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out,
                             const std::vector<double>& label_smoothings, Reduction reduction = Reduction::sum) const;

  // An empty cache with one entry per decoder layer; a capacity > 0 preallocates the self-attention keys and values
  // of that many positions at the first step (decoding under NoGradGuard), else they grow by concatenation.
  DecoderCache new_cache(int64_t capacity = 0) const;

  const TranslatorOptions& options() const { return options_; }
  // Where the parameters live (inputs are moved there by the caller).
  Device device() const;

 private:
  // ids (B, L) -> dropout(table(ids) * sqrt(d) + PE[offset:offset+L]) (B, L, d); source or target table.
  Tensor embed(bool source, const Tensor& ids, int64_t offset) const;
  // The decoder stack's output h (B, T, d) for tgt_in (see decode).
  Tensor decode_hidden(const Tensor& tgt_in, const Encoded& enc, DecoderCache* cache) const;
  // h (B, T, d) -> this rank's logits (B, T, V_tgt / tp) (all of them at tp = 1).
  Tensor logits_shard(const Tensor& h) const;

  TranslatorOptions options_;
  std::unique_ptr<parallel::ProcessGroup> own_group_;  // the group of one when none is given
  models::TensorParallel tp_;  // its group set
  std::shared_ptr<parallel::VocabParallelEmbedding> src_embed_, tgt_embed_;  // the same object when shared
  std::shared_ptr<nn::SinusoidalPositionalEncoding> positions_;
  std::shared_ptr<nn::Dropout> embed_dropout_;
  std::shared_ptr<nn::Module> encoder_, decoder_;  // containers of `layers` (ModuleList) and `norm`
  std::vector<std::shared_ptr<models::TransformerEncoderLayer>> encoder_layers_;
  std::vector<std::shared_ptr<models::TransformerDecoderLayer>> decoder_layers_;
  std::shared_ptr<nn::LayerNorm> encoder_norm_, decoder_norm_;  // pre-norm only
  std::shared_ptr<parallel::ColumnParallelLinear> output_proj_;  // untied only, no bias
};

// Label-smoothed cross-entropy of the target tokens, padding ignored:
//   loss_i = (1 - eps) * -log p(y_i) + eps * mean_c(-log p(c)), summed over non-pad positions
// (Reduction::sum, what the trainer divides by the global target-token count) or averaged over them.
// logits (B, T, V); tgt_out i64 (B, T) with pad_id at padding -> 0-d
Tensor translation_loss(const Tensor& logits, const Tensor& tgt_out, int64_t pad_id, double label_smoothing,
                        Reduction reduction = Reduction::sum);

}  // namespace px::translator

// Translator: option checks, module construction in the parameter-name order of transformer.h, the encoder
// and (incremental) decoder passes, the decoder cache's row selection and the label-smoothed training loss.
#include "models/translator/transformer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/ops/ops.h"
#include "core/util/error.h"
#include "parallel/tp/mappings.h"

namespace px::translator {

namespace {

// A stack "layers" of n Layers (encoder or decoder) and, pre-norm, its final "norm", drawn in that order.
template <typename Layer>
std::shared_ptr<nn::Container> make_stack(const std::string& type_name, int64_t n, const TranslatorOptions& o,
                                      Generator& init_gen, Generator& dropout_gen, const models::TensorParallel& tp,
                                      std::vector<std::shared_ptr<Layer>>* layers,
                                      std::shared_ptr<nn::LayerNorm>* norm) {
  auto stack = std::make_shared<nn::Container>(type_name);
  auto list = stack->add("layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < n; ++i) {
    layers->push_back(list->push_back(std::make_shared<Layer>(o.d_model, o.num_heads, o.d_ff, o.dropout,
                                                              o.attention_dropout, o.activation, o.pre_norm, init_gen,
                                                              dropout_gen, o.dtype, tp)));
  }
  if (o.pre_norm) *norm = stack->add("norm", std::make_shared<nn::LayerNorm>(o.d_model, 1e-5, true, o.dtype));
  return stack;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError("TranslatorOptions." + message);
}

void check_label_smoothing(double eps) {
  if (!(eps >= 0.0 && eps < 1.0)) throw ConfigError("label_smoothing: must be in [0, 1), got " + std::to_string(eps));
}

// fairseq's embedding init: N(0, d^-1/2), with the pad row zero so padding embeds to the positions only; on
// this rank's rows [start, start + V / tp) of the table (scaling commutes with slicing; the pad row is zeroed
// where it lives).
std::shared_ptr<parallel::VocabParallelEmbedding> make_embedding(int64_t vocab, const TranslatorOptions& options,
                                                                 Generator& gen, parallel::ProcessGroup& tp) {
  auto table = std::make_shared<parallel::VocabParallelEmbedding>(vocab, options.d_model, gen, tp, options.dtype);
  NoGradGuard no_grad;
  mul_(table->weight(), 1.0 / std::sqrt(static_cast<double>(options.d_model)));
  const int64_t local_pad = options.pad_id - table->vocab_start();
  if (local_pad >= 0 && local_pad < table->weight().size(0)) fill_(narrow(table->weight(), 0, local_pad, 1), 0.0);
  return table;
}

}  // namespace

void check_options(const TranslatorOptions& options) {
  require(options.src_vocab > 0, "src_vocab: must be positive, got " + std::to_string(options.src_vocab));
  require(options.tgt_vocab > 0, "tgt_vocab: must be positive, got " + std::to_string(options.tgt_vocab));
  require(options.d_model > 0, "d_model: must be positive, got " + std::to_string(options.d_model));
  require(options.num_heads > 0, "num_heads: must be positive, got " + std::to_string(options.num_heads));
  require(options.d_model % options.num_heads == 0, "d_model: " + std::to_string(options.d_model) +
                                                        " is not divisible by num_heads " +
                                                        std::to_string(options.num_heads));
  require(options.encoder_layers > 0,
          "encoder_layers: must be positive, got " + std::to_string(options.encoder_layers));
  require(options.decoder_layers > 0,
          "decoder_layers: must be positive, got " + std::to_string(options.decoder_layers));
  require(options.d_ff > 0, "d_ff: must be positive, got " + std::to_string(options.d_ff));
  require(options.dropout >= 0.0 && options.dropout < 1.0,
          "dropout: must be in [0, 1), got " + std::to_string(options.dropout));
  require(options.attention_dropout >= 0.0 && options.attention_dropout < 1.0,
          "attention_dropout: must be in [0, 1), got " + std::to_string(options.attention_dropout));
  require(options.max_positions > 0, "max_positions: must be positive, got " + std::to_string(options.max_positions));
  require(!options.share_embeddings || options.src_vocab == options.tgt_vocab,
          "share_embeddings: needs src_vocab == tgt_vocab, got " + std::to_string(options.src_vocab) + " and " +
              std::to_string(options.tgt_vocab));
  require(options.pad_id >= 0 && options.pad_id < std::min(options.src_vocab, options.tgt_vocab),
          "pad_id: " + std::to_string(options.pad_id) + " is outside both vocabularies");
  require(is_floating(options.dtype), "dtype: must be floating point");
}

Translator::Translator(const TranslatorOptions& options, Generator& init_gen, Generator& dropout_gen,
                       const models::TensorParallel& tp)
    : Module("Translator"), options_(options), tp_(models::with_group(tp, &own_group_)) {
  check_options(options);
  const TranslatorOptions& o = options_;
  parallel::ProcessGroup& group = *tp_.group;
  // One table "embed" when shared, else "src_embed" and "tgt_embed", in that order.
  if (o.share_embeddings) {
    src_embed_ = tgt_embed_ = register_module("embed", make_embedding(o.src_vocab, o, init_gen, group));
  } else {
    src_embed_ = register_module("src_embed", make_embedding(o.src_vocab, o, init_gen, group));
    tgt_embed_ = register_module("tgt_embed", make_embedding(o.tgt_vocab, o, init_gen, group));
  }
  positions_ = register_module(
      "positions", std::make_shared<nn::SinusoidalPositionalEncoding>(o.d_model, o.max_positions, o.dtype));
  embed_dropout_ = register_module("embed_dropout", std::make_shared<nn::Dropout>(o.dropout, dropout_gen));

  encoder_ = register_module("encoder", make_stack("TransformerEncoder", o.encoder_layers, o, init_gen, dropout_gen,
                                                   tp_, &encoder_layers_, &encoder_norm_));
  decoder_ = register_module("decoder", make_stack("TransformerDecoder", o.decoder_layers, o, init_gen, dropout_gen,
                                                   tp_, &decoder_layers_, &decoder_norm_));

  if (!o.tie_output) {
    output_proj_ = register_module("output_proj", std::make_shared<parallel::ColumnParallelLinear>(
                                                      o.d_model, o.tgt_vocab, init_gen, group, /*bias=*/false, o.dtype));
  }
}

// dropout(table(ids) * sqrt(d) + PE[offset : offset + L])
Tensor Translator::embed(bool source, const Tensor& ids, int64_t offset) const {
  CHECK(ids.defined() && ids.dim() == 2 && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32))
      << "Translator: token ids must be integer (B, L), got " << (ids.defined() ? ids.str() : "undefined");
  if (offset + ids.size(1) > options_.max_positions) {
    throw DataError("Translator: positions [" + std::to_string(offset) + ", " + std::to_string(offset + ids.size(1)) +
                    ") exceed max_positions " + std::to_string(options_.max_positions));
  }
  const Tensor looked_up = (source ? src_embed_ : tgt_embed_)->forward(ids);  // (B, L, d)
  const Tensor scaled = looked_up * std::sqrt(static_cast<double>(options_.d_model));  // (B, L, d)
  return embed_dropout_->forward(positions_->forward(scaled, offset));
}

Encoded Translator::encode(const Tensor& src) const {
  Encoded enc;
  enc.pad_mask = eq(src, full_like(src, static_cast<double>(options_.pad_id)));  // (B, S) bool
  Tensor h = embed(/*source=*/true, src, 0);  // (B, S, d)
  for (const auto& layer : encoder_layers_) h = layer->forward(h, enc.pad_mask);
  enc.memory = encoder_norm_ ? encoder_norm_->forward(h) : h;
  return enc;
}

Tensor Translator::decode_hidden(const Tensor& tgt_in, const Encoded& enc, DecoderCache* cache) const {
  CHECK(enc.pad_mask.defined()) << "Translator::decode: the encoder's pad_mask is undefined";
  const int64_t offset = cache != nullptr ? cache->length : 0;
  if (cache != nullptr) {
    CHECK_EQ(cache->layers.size(), decoder_layers_.size())
        << "Translator::decode: the cache has the wrong number of layers (use new_cache())";
  }
  Tensor h = embed(/*source=*/false, tgt_in, offset);  // (B, T, d)
  for (size_t i = 0; i < decoder_layers_.size(); ++i) {
    h = decoder_layers_[i]->forward(h, enc.memory, enc.pad_mask, cache != nullptr ? &cache->layers[i] : nullptr);
  }
  if (decoder_norm_) h = decoder_norm_->forward(h);
  if (cache != nullptr) cache->length += tgt_in.size(1);
  return h;
}

// tied: h E^T (E the target table, or this rank's rows of it); untied: output_proj(h).
Tensor Translator::logits_shard(const Tensor& h) const {
  if (output_proj_) return output_proj_->forward(h);
  return linear(parallel::copy_to_tp_region(h, *tp_.group), tgt_embed_->weight());
}

Tensor Translator::decode(const Tensor& tgt_in, const Encoded& enc, DecoderCache* cache) const {
  const Tensor shard = logits_shard(decode_hidden(tgt_in, enc, cache));  // (B, T, V_tgt / tp)
  return parallel::gather_from_tp_region(shard, *tp_.group);
}

Tensor Translator::forward(const Tensor& src, const Tensor& tgt_in) const { return decode(tgt_in, encode(src)); }

Tensor Translator::loss(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out, double label_smoothing,
                        Reduction reduction) const {
  return losses(src, tgt_in, tgt_out, {label_smoothing}, reduction).front();
}

std::vector<Tensor> Translator::losses(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out,
                                       const std::vector<double>& label_smoothings, Reduction reduction) const {
  std::vector<Tensor> out;
  const Tensor shard = logits_shard(decode_hidden(tgt_in, encode(src), nullptr));  // (B, T, V_tgt / tp)
  CHECK(tgt_out.dim() == 2 && tgt_out.size(0) == shard.size(0) && tgt_out.size(1) == shard.size(1))
      << "Translator::loss: targets " << tgt_out.str() << " for logits " << shard.str();
  const int64_t rows = shard.size(0) * shard.size(1);
  // Losses in f32 whatever the precision (a bf16/f16 shard is widened, as torch's autocast does).
  const Tensor narrow_shard = reshape(shard, {rows, shard.size(2)});  // (B T, V_tgt / tp)
  const DType loss_dtype = master_dtype(narrow_shard.dtype());
  const Tensor flat_shard = narrow_shard.dtype() == loss_dtype ? narrow_shard : to_dtype(narrow_shard, loss_dtype);
  const Tensor flat_target = reshape(tgt_out, {rows});              // (B T)
  for (double eps : label_smoothings) {
    check_label_smoothing(eps);
    out.push_back(parallel::vocab_parallel_cross_entropy(flat_shard, flat_target, options_.pad_id, eps, *tp_.group,
                                                         reduction));
  }
  return out;
}

DecoderCache Translator::new_cache(int64_t capacity) const {
  CHECK_GE(capacity, 0) << "Translator::new_cache: negative capacity";
  DecoderCache cache;
  cache.layers.resize(decoder_layers_.size());
  for (models::DecoderLayerCache& layer : cache.layers) layer.self_attn.capacity = capacity;
  return cache;
}

Device Translator::device() const { return tgt_embed_->weight().device(); }

void DecoderCache::select_rows(const Tensor& rows) {
  CHECK(rows.defined() && rows.dim() == 1 && rows.dtype() == DType::i64)
      << "DecoderCache::select_rows: rows must be i64 (B'), got " << (rows.defined() ? rows.str() : "undefined");
  for (models::DecoderLayerCache& layer : layers) {
    layer.self_attn.select_rows(rows);
    layer.cross_attn.select_rows(rows);
  }
}

Tensor translation_loss(const Tensor& logits, const Tensor& tgt_out, int64_t pad_id, double label_smoothing,
                        Reduction reduction) {
  CHECK(logits.dim() == 3 && tgt_out.dim() == 2 && tgt_out.size(0) == logits.size(0) &&
        tgt_out.size(1) == logits.size(1))
      << "translation_loss: logits " << logits.str() << " must be (B, T, V) for targets " << tgt_out.str();
  check_label_smoothing(label_smoothing);
  const int64_t rows = logits.size(0) * logits.size(1);
  return cross_entropy(reshape(logits, {rows, logits.size(2)}), reshape(tgt_out, {rows}), pad_id, label_smoothing,
                       reduction);
}

}  // namespace px::translator

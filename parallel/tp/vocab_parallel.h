// VocabParallelEmbedding and vocab-parallel cross-entropy with label smoothing: the vocabulary split over the
// tp group by rows, so neither the table nor the logits are ever gathered.
#pragma once

#include "core/nn/module.h"
#include "core/ops/loss.h"
#include "core/util/generator.h"
#include "parallel/tp/shard_spec.h"

namespace px::parallel {

// Rows [vocab_start, vocab_start + V / tp) of the (V, d) table; ids outside the range embed to 0 locally and
// the all-reduce (reduce_from_tp_region) sums in the rank that owns them; at tp = 1 a plain lookup. Parameter
// weight (V / tp, d), drawn as nn::Embedding draws the full table (N(0, 1)) from `gen`, sliced. V % tp != 0 is a
// px::ConfigError.
class VocabParallelEmbedding : public nn::Module, public TensorParallelModule {
 public:
  VocabParallelEmbedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen, ProcessGroup& tp,
                         DType dtype = DType::f32);
  // ids i64/i32 (...) -> (..., d), replicated over tp
  Tensor forward(const Tensor& ids) const;
  std::vector<std::pair<std::string, ShardSpec>> shard_specs() const override;

  const Tensor& weight() const { return weight_; }  // (V / tp, d)
  int64_t vocab_start() const { return vocab_start_; }
  int64_t num_embeddings() const { return num_embeddings_; }  // full V
  int64_t embedding_dim() const { return embedding_dim_; }

 private:
  int64_t num_embeddings_, embedding_dim_, vocab_start_;
  ProcessGroup* tp_;
  Tensor weight_;  // (V / tp, d)
};

// Label-smoothed cross-entropy over logits split by vocabulary: rank r holds columns
// [r V/tp, (r+1) V/tp) of the (N, V) logits. loss_n = lse_n - (1 - eps) x_{n,t} - eps/V sum_c x_{n,c}, 0 where
// target == ignore_index; lse from an all-reduced max and sum of exps, the target logit and the row sums
// from all-reduced sums (two all-reduces: max of (N), then sum of the (3, N) exp sums, target logits and row
// sums). Backward is local:
// glogits = gloss * (softmax - q) on this rank's columns. Same value on every tp rank; at tp = 1 it is
// px::cross_entropy.
// logits_shard (N, V / tp), target i64 (N) -> (N) for Reduction::none, else 0-d (sum, or mean over
// non-ignored rows)
Tensor vocab_parallel_cross_entropy(const Tensor& logits_shard, const Tensor& target, int64_t ignore_index,
                                    double label_smoothing, ProcessGroup& tp, Reduction reduction = Reduction::sum);

}  // namespace px::parallel

// VocabParallelEmbedding (this rank's rows of the table, other ids masked, summed over tp) and the
// vocab-parallel label-smoothed cross-entropy (all-reduced row statistics, local backward).
#include "parallel/tp/vocab_parallel.h"

#include <string>
#include <utility>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/factory.h"
#include "core/ops/indexing.h"
#include "core/ops/join.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"
#include "core/util/error.h"
#include "parallel/tp/mappings.h"

namespace px::parallel {

namespace {

// a || b for bool tensors of one shape.
Tensor logical_or(const Tensor& a, const Tensor& b) { return where(a, a, b); }

// ids relative to this rank's range [start, start + count); `outside` (bool, ids' shape) marks the ids that
// fall outside it, whose relative id is `fill`. ids i64 (...) -> i64 (...)
Tensor local_ids(const Tensor& ids, int64_t start, int64_t count, int64_t fill, Tensor* outside) {
  const Tensor shifted = sub(ids, scalar_tensor(static_cast<double>(start), DType::i64, ids.device()));
  *outside = logical_or(lt(shifted, scalar_tensor(0.0, DType::i64, ids.device())),
                        ge(shifted, scalar_tensor(static_cast<double>(count), DType::i64, ids.device())));
  return masked_fill(shifted, *outside, static_cast<double>(fill));
}

}  // namespace

VocabParallelEmbedding::VocabParallelEmbedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen,
                                               ProcessGroup& tp, DType dtype)
    : Module("VocabParallelEmbedding"),
      num_embeddings_(num_embeddings),
      embedding_dim_(embedding_dim),
      vocab_start_(0),
      tp_(&tp) {
  CHECK(num_embeddings > 0 && embedding_dim > 0)
      << "VocabParallelEmbedding: sizes must be positive, got " << num_embeddings << " x " << embedding_dim;
  if (num_embeddings % tp.size() != 0)
    throw ConfigError("VocabParallelEmbedding: vocabulary size " + std::to_string(num_embeddings) +
                      " is not divisible by the tensor-parallel size " + std::to_string(tp.size()));
  vocab_start_ = tp.rank() * (num_embeddings / tp.size());
  // The full (V, d) table as nn::Embedding draws it, then this rank's rows.
  const Tensor full = randn({num_embeddings, embedding_dim}, gen, dtype);  // (V, d)
  weight_ = register_parameter("weight", shard_of(full, ShardSpec{0, 1}, tp.rank(), tp.size()));
}

// forward: y = sum_r [id in range_r] W_r[id - start_r]   backward: gW_r[v] = sum of g over ids == start_r + v
Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  if (tp_->size() == 1) return embedding(weight_, ids);
  const Tensor ids64 = detail::checked_indices(ids, num_embeddings_, "VocabParallelEmbedding");  // (...)
  Tensor outside;  // (...) bool
  const Tensor local = local_ids(ids64, vocab_start_, weight_.size(0), 0, &outside);  // (...)
  Tensor partial = masked_fill(embedding(weight_, local), unsqueeze(outside, -1), 0.0);  // (..., d)
  return reduce_from_tp_region(std::move(partial), *tp_);
}

std::vector<std::pair<std::string, ShardSpec>> VocabParallelEmbedding::shard_specs() const {
  return {{"weight", ShardSpec{0, 1}}};
}

// forward: loss_n = lse_n - (1 - eps) x_{n,t} - eps/V sum_c x_{n,c}   backward: gx_{n,c} = g_n (p_{n,c} - q_{n,c})
Tensor vocab_parallel_cross_entropy(const Tensor& logits_shard, const Tensor& target, int64_t ignore_index,
                                    double label_smoothing, ProcessGroup& tp, Reduction reduction) {
  CHECK(logits_shard.defined() && target.defined()) << "vocab_parallel_cross_entropy: undefined input";
  CHECK(is_floating(logits_shard.dtype())) << "vocab_parallel_cross_entropy: logits " << logits_shard.str();
  CHECK_EQ(logits_shard.dim(), 2) << "vocab_parallel_cross_entropy: logits must be (N, V / tp), got "
                                  << logits_shard.str();
  CHECK(target.dim() == 1 && target.size(0) == logits_shard.size(0))
      << "vocab_parallel_cross_entropy: target " << target.str() << " for logits " << logits_shard.str();
  CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0) << "label_smoothing " << label_smoothing;
  if (tp.size() == 1) return cross_entropy(logits_shard, target, ignore_index, label_smoothing, reduction);
  const double eps = label_smoothing;
  const int64_t n = logits_shard.size(0), local_vocab = logits_shard.size(1);
  const int64_t vocab = local_vocab * tp.size();
  const int64_t start = tp.rank() * local_vocab;
  const DType dtype = logits_shard.dtype();
  const DType stat = dtype == DType::f64 ? DType::f64 : DType::f32;
  const Device device = logits_shard.device();
  const Tensor tgt = detail::checked_indices(target, vocab, "vocab_parallel_cross_entropy", &ignore_index);  // (N)

  Tensor loss, lse, target_local, ignored;  // (N) each: dtype, stat, i64 (-1 off this rank), bool
  {
    NoGradGuard no_grad;
    const Tensor x = to_dtype(logits_shard.detach(), stat);  // (N, V / tp)
    ignored = eq(tgt, scalar_tensor(static_cast<double>(ignore_index), DType::i64, device));
    Tensor off_rank;  // (N) bool
    target_local = masked_fill(local_ids(tgt, start, local_vocab, -1, &off_rank), ignored, -1.0);
    const Tensor at_target = eq(unsqueeze(arange(local_vocab, DType::i64, device), 0),
                                unsqueeze(target_local, 1));  // (N, V / tp) bool
    Tensor row_max = max(x, {1});  // (N)
    tp.all_reduce(row_max, ReduceOp::max)->wait_on_stream();  // NCCL: the current stream waits, not the host
    // Rows: sum_c exp(x - max), x_{n,t} (0 on ranks that do not hold t), sum_c x.
    Tensor sums = stack({sum(exp(sub(x, unsqueeze(row_max, 1))), {1}),
                         sum(where(at_target, x, scalar_tensor(0.0, stat, device)), {1}), sum(x, {1})},
                        0);  // (3, N)
    tp.all_reduce(sums, ReduceOp::sum)->wait_on_stream();
    const auto row = [&](int64_t i) { return reshape(narrow(sums, 0, i, 1), {n}); };  // (N)
    lse = add(row_max, log(row(0)));
    const Tensor loss_stat = sub(sub(lse, mul(row(1), 1.0 - eps)), mul(row(2), eps / static_cast<double>(vocab)));
    loss = to_dtype(masked_fill(loss_stat, ignored, 0.0), dtype);
  }
  if (autograd::any_requires_grad({&logits_shard})) {
    autograd::attach(loss, "VocabParallelCrossEntropyBackward", {logits_shard},
                     [sx = autograd::SavedTensor(logits_shard), lse, target_local, ignored, eps, vocab, stat,
                      dtype](const Tensor& g) {
                       const Tensor x = to_dtype(sx.unpack("VocabParallelCrossEntropyBackward"), stat);  // (N, V / tp)
                       const int64_t local_vocab = x.size(1);
                       const Tensor at_target = eq(unsqueeze(arange(local_vocab, DType::i64, x.device()), 0),
                                                   unsqueeze(target_local, 1));  // (N, V / tp) bool
                       // softmax - q with q = eps/V everywhere plus (1 - eps) at the target.
                       const Tensor p_minus_smooth =
                           add(exp(sub(x, unsqueeze(lse, 1))), -eps / static_cast<double>(vocab));
                       const Tensor p_minus_q = where(at_target, add(p_minus_smooth, -(1.0 - eps)), p_minus_smooth);
                       const Tensor row_grad = masked_fill(to_dtype(g, stat), ignored, 0.0);  // (N)
                       return std::vector<Tensor>{to_dtype(mul(p_minus_q, unsqueeze(row_grad, 1)), dtype)};
                     });
  }
  return reduce_loss(loss, ignored, reduction);
}

}  // namespace px::parallel

// ParallelFeedForward: construction of the column-parallel fc1, the sharded dropout and the row-parallel fc2
// in nn::FeedForward's order, and the forward (all-reduce inside fc2, its conjugate inside fc1).
#include "parallel/tp/parallel_feed_forward.h"

#include <string>

#include "core/util/error.h"

namespace px::parallel {

ParallelFeedForward::ParallelFeedForward(int64_t d_model, int64_t d_ff, nn::Activation activation, double dropout,
                                         Generator& init_gen, Generator& sharded_dropout_gen, ProcessGroup& tp,
                                         DType dtype)
    : Module("ParallelFeedForward"), activation_(activation) {
  // Checked before anything is drawn.
  if (d_ff % tp.size() != 0) {
    throw ConfigError("feed-forward d_ff " + std::to_string(d_ff) +
                      " is not divisible by the tensor-parallel size " + std::to_string(tp.size()));
  }
  fc1_ = register_module("fc1", std::make_shared<ColumnParallelLinear>(d_model, d_ff, init_gen, tp, true, dtype));
  dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(dropout, sharded_dropout_gen));
  fc2_ = register_module("fc2", std::make_shared<RowParallelLinear>(d_ff, d_model, init_gen, tp, true, dtype,
                                                                    /*input_is_parallel=*/true));
}

// x (..., d_model) -> fc1 (..., d_ff / tp) -> act, dropout (per rank) -> fc2 (..., d_model), summed over tp.
Tensor ParallelFeedForward::forward(const Tensor& x) const {
  return fc2_->forward(dropout_->forward(nn::apply_activation(activation_, fc1_->forward(x))));
}

}  // namespace px::parallel

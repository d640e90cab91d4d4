// ParallelFeedForward: nn::FeedForward with fc1 column-parallel and fc2 row-parallel over the tp group,
// same parameter names and initialisation, one all-reduce forward and one backward.
#pragma once

#include <memory>

#include "core/nn/dropout.h"
#include "core/nn/feed_forward.h"
#include "parallel/tp/parallel_linear.h"

namespace px::parallel {

// fc2(dropout(act(fc1(x)))) with fc1 column-parallel (d_ff / tp rows) and fc2 row-parallel; parameter names
// and init as nn::FeedForward (fc1 drawn first). d_ff % tp != 0 is a px::ConfigError. The inner dropout acts on
// sharded activations, so its masks come from `sharded_dropout_gen` (per tp rank).
class ParallelFeedForward : public nn::Module, public TensorParallelModule {
 public:
  ParallelFeedForward(int64_t d_model, int64_t d_ff, nn::Activation activation, double dropout, Generator& init_gen,
                      Generator& sharded_dropout_gen, ProcessGroup& tp, DType dtype = DType::f32);
  // x (..., d_model) replicated -> (..., d_model) replicated
  Tensor forward(const Tensor& x) const;
  std::vector<std::pair<std::string, ShardSpec>> shard_specs() const override { return {}; }

 private:
  nn::Activation activation_;
  std::shared_ptr<ColumnParallelLinear> fc1_;  // d_model -> d_ff / tp
  std::shared_ptr<nn::Dropout> dropout_;
  std::shared_ptr<RowParallelLinear> fc2_;  // d_ff / tp -> d_model
};

}  // namespace px::parallel

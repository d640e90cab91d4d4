// ColumnParallelLinear and RowParallelLinear: nn::Linear with its weight split over the tp group by output
// rows or input columns, initialised as the slice of what nn::Linear would draw from the same generator.
#pragma once

#include "core/nn/module.h"
#include "core/util/generator.h"
#include "parallel/tp/shard_spec.h"

namespace px::parallel {

// y_r = x W_r^T + b_r for this rank's rows W_r of W (out, in); parameters weight (out / tp, in), bias (out / tp).
// `groups` > 1 keeps this rank's rows of each of `groups` equal row blocks (a fused QKV projection: groups 3).
// Draws the full (out, in) weight then the full bias from `gen` exactly as nn::Linear does (so the generator
// advances identically at every tp) and keeps the rank's slices.
class ColumnParallelLinear : public nn::Module, public TensorParallelModule {
 public:
  ColumnParallelLinear(int64_t in_features, int64_t out_features, Generator& gen, ProcessGroup& tp, bool bias = true,
                       DType dtype = DType::f32, int64_t groups = 1, bool gather_output = false);
  // x (..., in), replicated over tp -> (..., out / tp), or (..., out) with gather_output
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  // This rank's output features [start, start + count) alone (a block of rows of weight), never gathered:
  // attention projecting queries and keys from one input and values from another.
  // x (..., in), replicated over tp -> (..., count)
  Tensor forward_features(const Tensor& x, int64_t start, int64_t count) const;
  std::vector<std::pair<std::string, ShardSpec>> shard_specs() const override;

  const Tensor& weight() const { return weight_; }  // (out / tp, in)
  const Tensor& bias() const { return bias_; }  // (out / tp) or undefined
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }  // full

 private:
  int64_t in_features_, out_features_, groups_;
  bool gather_output_;
  ProcessGroup* tp_;
  Tensor weight_;  // (out / tp, in)
  Tensor bias_;  // (out / tp) or undefined
};

// y = sum_r x_r W_r^T + b for this rank's columns W_r of W (out, in); parameters weight (out, in / tp) and
// bias (out), replicated and added once after the all-reduce (at tp = 1 inside the GEMM, as nn::Linear adds
// it). Draws like nn::Linear and keeps the slice.
class RowParallelLinear : public nn::Module, public TensorParallelModule {
 public:
  RowParallelLinear(int64_t in_features, int64_t out_features, Generator& gen, ProcessGroup& tp, bool bias = true,
                    DType dtype = DType::f32, bool input_is_parallel = true);
  // x (..., in / tp) (or (..., in) replicated when !input_is_parallel) -> (..., out), replicated over tp
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  std::vector<std::pair<std::string, ShardSpec>> shard_specs() const override;

  const Tensor& weight() const { return weight_; }  // (out, in / tp)
  const Tensor& bias() const { return bias_; }  // (out) or undefined

 private:
  int64_t in_features_, out_features_;
  bool input_is_parallel_;
  ProcessGroup* tp_;
  Tensor weight_;  // (out, in / tp)
  Tensor bias_;  // (out) or undefined
};

}  // namespace px::parallel

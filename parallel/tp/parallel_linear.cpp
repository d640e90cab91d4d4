// ColumnParallelLinear and RowParallelLinear: nn::Linear's full draws sliced to this rank's rows / columns,
// and the forwards that put Megatron's conjugate communication ops around the local GEMM.
#include "parallel/tp/parallel_linear.h"

#include <cmath>
#include <string>

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/matmul.h"
#include "core/ops/view.h"
#include "core/util/error.h"
#include "parallel/tp/mappings.h"

namespace px::parallel {

namespace {

// nn::Linear's bound: kaiming_uniform_(a = sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
double linear_init_bound(int64_t in_features) { return 1.0 / std::sqrt(static_cast<double>(in_features)); }

void check_divisible(int64_t features, int64_t parts, const char* layer, const char* field) {
  if (features % parts != 0)
    throw ConfigError(std::string(layer) + ": " + field + " " + std::to_string(features) +
                      " is not divisible into " + std::to_string(parts) + " tensor-parallel parts");
}

}  // namespace

ColumnParallelLinear::ColumnParallelLinear(int64_t in_features, int64_t out_features, Generator& gen,
                                           ProcessGroup& tp, bool bias, DType dtype, int64_t groups,
                                           bool gather_output)
    : Module("ColumnParallelLinear"),
      in_features_(in_features),
      out_features_(out_features),
      groups_(groups),
      gather_output_(gather_output),
      tp_(&tp) {
  CHECK(in_features > 0 && out_features > 0 && groups > 0)
      << "ColumnParallelLinear: features and groups must be positive, got in " << in_features << " out "
      << out_features << " groups " << groups;
  check_divisible(out_features, groups * tp.size(), "ColumnParallelLinear", "out_features");
  const double bound = linear_init_bound(in_features);
  const ShardSpec rows{0, groups};
  // The full (out, in) weight, then the full (out) bias, as nn::Linear draws them.
  const Tensor full_weight = rand({out_features, in_features}, gen, -bound, bound, dtype);  // (out, in)
  weight_ = register_parameter("weight", shard_of(full_weight, rows, tp.rank(), tp.size()));
  if (bias) {
    const Tensor full_bias = rand({out_features}, gen, -bound, bound, dtype);  // (out)
    bias_ = register_parameter("bias", shard_of(full_bias, rows, tp.rank(), tp.size()));
  }
}

// forward: y_r = copy(x) W_r^T + b_r   backward: gx = sum_r g_r W_r, gW_r = g_r^T x, gb_r = sum g_r
Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  CHECK(x.dim() >= 1 && x.size(-1) == in_features_)
      << "ColumnParallelLinear(" << in_features_ << " -> " << out_features_ << "): input " << x.str();
  const Tensor y = linear(copy_to_tp_region(x, *tp_), weight_, bias_);  // (..., out / tp)
  if (!gather_output_) return y;
  const Tensor gathered = gather_from_tp_region(y, *tp_);  // (..., tp * groups * chunk), rank-major
  if (groups_ == 1) return gathered;
  // (..., tp, groups, chunk) -> (..., groups, tp, chunk): the full layout of the `groups` row blocks.
  Shape split_shape(x.shape().begin(), x.shape().end() - 1);
  Shape out_shape = split_shape;
  const int64_t chunk = out_features_ / (groups_ * tp_->size());
  split_shape.insert(split_shape.end(), {static_cast<int64_t>(tp_->size()), groups_, chunk});
  out_shape.push_back(out_features_);
  const int64_t tp_dim = static_cast<int64_t>(split_shape.size()) - 3;
  return reshape(contiguous(transpose(reshape(gathered, split_shape), tp_dim, tp_dim + 1)), out_shape);
}

// y_r = copy(x) W_r[start : start + count]^T + b_r[start : start + count]
Tensor ColumnParallelLinear::forward_features(const Tensor& x, int64_t start, int64_t count) const {
  CHECK(x.dim() >= 1 && x.size(-1) == in_features_)
      << "ColumnParallelLinear(" << in_features_ << " -> " << out_features_ << "): input " << x.str();
  CHECK(start >= 0 && count > 0 && start + count <= weight_.size(0))
      << "ColumnParallelLinear::forward_features: features [" << start << ", " << start + count << ") outside this "
      << "rank's " << weight_.size(0);
  const Tensor bias = bias_.defined() ? narrow(bias_, 0, start, count) : Tensor();  // (count)
  return linear(copy_to_tp_region(x, *tp_), narrow(weight_, 0, start, count), bias);  // (..., count)
}

std::vector<std::pair<std::string, ShardSpec>> ColumnParallelLinear::shard_specs() const {
  std::vector<std::pair<std::string, ShardSpec>> specs{{"weight", ShardSpec{0, groups_}}};
  if (bias_.defined()) specs.emplace_back("bias", ShardSpec{0, groups_});
  return specs;
}

RowParallelLinear::RowParallelLinear(int64_t in_features, int64_t out_features, Generator& gen, ProcessGroup& tp,
                                     bool bias, DType dtype, bool input_is_parallel)
    : Module("RowParallelLinear"),
      in_features_(in_features),
      out_features_(out_features),
      input_is_parallel_(input_is_parallel),
      tp_(&tp) {
  CHECK(in_features > 0 && out_features > 0)
      << "RowParallelLinear: features must be positive, got in " << in_features << " out " << out_features;
  check_divisible(in_features, tp.size(), "RowParallelLinear", "in_features");
  const double bound = linear_init_bound(in_features);
  // The full (out, in) weight, then the full (out) bias, as nn::Linear draws them; the bias stays whole.
  const Tensor full_weight = rand({out_features, in_features}, gen, -bound, bound, dtype);  // (out, in)
  weight_ = register_parameter("weight", shard_of(full_weight, ShardSpec{1, 1}, tp.rank(), tp.size()));
  if (bias) bias_ = register_parameter("bias", rand({out_features}, gen, -bound, bound, dtype));
}

// forward: y = sum_r x_r W_r^T + b   backward: gx_r = g W_r, gW_r = g^T x_r, gb = sum g (same on every rank)
Tensor RowParallelLinear::forward(const Tensor& x) const {
  const int64_t local_in = in_features_ / tp_->size();
  const int64_t expected_in = input_is_parallel_ ? local_in : in_features_;
  CHECK(x.dim() >= 1 && x.size(-1) == expected_in)
      << "RowParallelLinear(" << in_features_ << " / tp " << tp_->size() << " -> " << out_features_
      << ", input_is_parallel " << input_is_parallel_ << "): input " << x.str();
  if (tp_->size() == 1) return linear(x, weight_, bias_);
  const Tensor x_local = input_is_parallel_ ? x : scatter_to_tp_region(x, *tp_);  // (..., in / tp)
  const Tensor y = reduce_from_tp_region(linear(x_local, weight_), *tp_);  // (..., out)
  return bias_.defined() ? add(y, bias_) : y;
}

std::vector<std::pair<std::string, ShardSpec>> RowParallelLinear::shard_specs() const {
  return {{"weight", ShardSpec{1, 1}}};
}

}  // namespace px::parallel

// FeedForward: construction of fc1/dropout/fc2 and the forward; activation parsing for configs.
// The dropout child follows the module's train/eval state like every child.
#include "core/nn/feed_forward.h"

#include "core/ops/elementwise.h"
#include "core/util/error.h"

namespace px::nn {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "gelu") return Activation::gelu;
  throw ConfigError("unknown activation '" + name + "' (expected relu or gelu)");
}

const char* activation_name(Activation a) { return a == Activation::relu ? "relu" : "gelu"; }

Tensor apply_activation(Activation a, const Tensor& x) { return a == Activation::relu ? relu(x) : gelu(x); }

FeedForward::FeedForward(int64_t d_model, int64_t d_ff, Activation activation, double dropout, Generator& init_gen,
                         Generator& dropout_gen, DType dtype)
    : Module("FeedForward"), activation_(activation) {
  fc1_ = register_module("fc1", std::make_shared<Linear>(d_model, d_ff, init_gen, true, dtype));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(dropout, dropout_gen));
  fc2_ = register_module("fc2", std::make_shared<Linear>(d_ff, d_model, init_gen, true, dtype));
}

Tensor FeedForward::forward(const Tensor& x) const {
  return fc2_->forward(dropout_->forward(apply_activation(activation_, fc1_->forward(x))));
}

}  // namespace px::nn

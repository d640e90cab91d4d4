// FeedForward: the position-wise Transformer MLP, fc2(dropout(act(fc1(x)))), with GELU or ReLU
// (the inner block of torch.nn.TransformerEncoderLayer; the residual dropout is the caller's).
#pragma once

#include <memory>
#include <string>

#include "core/nn/dropout.h"
#include "core/nn/linear.h"
#include "core/nn/module.h"

namespace px::nn {

enum class Activation { relu, gelu };  // gelu is the exact x * Phi(x)

// "relu" or "gelu"; anything else is a px::ConfigError.
Activation parse_activation(const std::string& name);
const char* activation_name(Activation a);
// act(x), elementwise.
Tensor apply_activation(Activation a, const Tensor& x);

class FeedForward : public Module {
 public:
  // Parameters fc1.weight (d_ff, d_model), fc1.bias (d_ff), fc2.weight (d_model, d_ff), fc2.bias (d_model),
  // drawn from init_gen (fc1 first); dropout masks from dropout_gen (which must outlive the module).
  FeedForward(int64_t d_model, int64_t d_ff, Activation activation, double dropout, Generator& init_gen,
              Generator& dropout_gen, DType dtype = DType::f32);
  // One generator for both.
  FeedForward(int64_t d_model, int64_t d_ff, Activation activation, double dropout, Generator& gen,
              DType dtype = DType::f32)
      : FeedForward(d_model, d_ff, activation, dropout, gen, gen, dtype) {}

  // x (..., d_model) -> (..., d_model)
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  Activation activation() const { return activation_; }
  const Linear& fc1() const { return *fc1_; }
  const Linear& fc2() const { return *fc2_; }

 private:
  Activation activation_;
  std::shared_ptr<Linear> fc1_;  // d_model -> d_ff
  std::shared_ptr<Dropout> dropout_;
  std::shared_ptr<Linear> fc2_;  // d_ff -> d_model
};

}  // namespace px::nn

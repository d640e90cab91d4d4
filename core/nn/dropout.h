// Dropout: zeroes elements with probability p while training (scaling the rest by 1 / (1 - p)) and is
// the identity in eval mode; the mask comes from the Generator it holds, so runs are reproducible.
#pragma once

#include "core/nn/module.h"
#include "core/util/generator.h"

namespace px::nn {

class Dropout : public Module {
 public:
  // `gen` must outlive the module. p outside [0, 1) is a px::ConfigError.
  Dropout(double p, Generator& gen);

  // x (...) -> (...)
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  double p() const { return p_; }
  Generator& generator() const { return *gen_; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace px::nn

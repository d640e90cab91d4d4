// SGD with momentum, dampening, Nesterov and L2 weight decay, with torch.optim.SGD's semantics:
//   g = grad + wd * p;  buf = g (first step) else momentum * buf + (1 - dampening) * g;
//   g = nesterov ? g + momentum * buf : buf (when momentum != 0);  p -= lr * g
#pragma once

#include "core/optim/optimizer.h"

namespace px::optim {

struct SGDOptions {
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

class SGD : public Optimizer {
 public:
  // Invalid options are a px::ConfigError.
  SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  SGD(std::vector<Tensor> params, double lr, SGDOptions options = {}, double weight_decay = 0.0)
      : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), lr, weight_decay, "", -1.0}}, options) {}

  const SGDOptions& options() const { return options_; }

 protected:
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) override;

 private:
  SGDOptions options_;
};

}  // namespace px::optim

// SGD: a fused host loop for CPU f32/f64 parameters and a device-generic path from ops;
// the momentum buffer is state "momentum_buffer", created from the first step's (decayed) gradient.
#include "core/optim/sgd.h"

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/util/error.h"

namespace px::optim {

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options) : Optimizer("SGD", std::move(groups)), options_(options) {
  if (!(options.momentum >= 0.0)) throw ConfigError("SGD: momentum must be >= 0, got " + std::to_string(options.momentum));
  if (!(options.dampening >= 0.0 && options.dampening <= 1.0))
    throw ConfigError("SGD: dampening must be in [0, 1], got " + std::to_string(options.dampening));
  if (options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0))
    throw ConfigError("SGD: nesterov needs momentum > 0 and dampening 0");
}

namespace {

// n elements; buf is null without momentum; first: the buffer is initialised from g.
template <typename T>
void sgd_loop(T* p, const T* grad, T* buf, int64_t n, bool first, const ParamGroup& g, const SGDOptions& o) {
  const T lr = static_cast<T>(g.lr), wd = static_cast<T>(g.weight_decay), mom = static_cast<T>(o.momentum);
  const T keep = static_cast<T>(1.0 - o.dampening);
  const bool decay = g.weight_decay != 0.0, nesterov = o.nesterov;
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i];
    if (decay) d = d + wd * p[i];
    if (buf) {
      const T b = first ? d : mom * buf[i] + keep * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] = p[i] - lr * d;
  }
}

}  // namespace

void SGD::update(const ParamGroup& group, const Tensor& param, const Tensor& grad, ParamState& state) {
  CHECK(master_dtype(param.dtype()) == param.dtype())
      << "SGD: " << param.str() << " is a 16-bit parameter; SGD keeps no master weights (use AdamW)";
  const bool momentum = options_.momentum != 0.0;
  auto it = state.tensors.find("momentum_buffer");
  const bool first = momentum && it == state.tensors.end();
  if (first) it = state.tensors.emplace("momentum_buffer", zeros_like(param)).first;
  ++state.step;
  if (use_host_loop(param)) {
    const Tensor buf = momentum ? it->second : Tensor();
    if (param.dtype() == DType::f32) {
      sgd_loop<float>(param.data<float>(), grad.data<float>(), momentum ? buf.data<float>() : nullptr,
                      param.numel(), first, group, options_);
    } else {
      sgd_loop<double>(param.data<double>(), grad.data<double>(), momentum ? buf.data<double>() : nullptr,
                       param.numel(), first, group, options_);
    }
    return;
  }
  // Device-generic path.
  Tensor d = group.weight_decay != 0.0 ? add(grad, mul(param, group.weight_decay)) : grad;
  if (momentum) {
    const Tensor& buf = it->second;
    if (first) {
      copy_(buf, d);
    } else {
      mul_(buf, options_.momentum);
      add_(buf, d, 1.0 - options_.dampening);
    }
    d = options_.nesterov ? add(d, mul(buf, options_.momentum)) : buf;
  }
  add_(param, d, -group.lr);
}

}  // namespace px::optim

// Dropout: validates p and forwards to px::dropout with the module's training flag.
// The generator's counter advances by numel per training forward.
#include "core/nn/dropout.h"

#include "core/ops/dropout.h"
#include "core/util/error.h"

namespace px::nn {

Dropout::Dropout(double p, Generator& gen) : Module("Dropout"), p_(p), gen_(&gen) {
  if (!(p >= 0.0 && p < 1.0)) throw ConfigError("dropout probability must be in [0, 1), got " + std::to_string(p));
}

Tensor Dropout::forward(const Tensor& x) const { return dropout(x, p_, is_training(), *gen_); }

}  // namespace px::nn

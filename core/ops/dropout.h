// Inverted dropout with a counter-based mask: backward regenerates the mask from (seed, offset).
#pragma once

#include "core/tensor/tensor.h"
#include "core/util/generator.h"

namespace px {

// Identity when !training or p == 0; otherwise keeps each element with probability 1 - p,
// scaled by 1 / (1 - p). Reserves numel counters from gen.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

}  // namespace px

// Embedding lookup: rows of a table by integer ids; backward scatter-adds into the table.
#pragma once

#include "core/tensor/tensor.h"

namespace px {

// weight (V, D), ids i32/i64 (...) in [0, V) -> (..., D). Out-of-range ids throw px::Error.
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace px

// Helpers shared by the op files (not part of the public API): backend lookup, raw views
// without autograd, argument checks that name the op.
#pragma once

#include <string>
#include <vector>

#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/tensor/tensor.h"

namespace px::detail {

inline Backend& backend_of(const Tensor& t) { return backend_for(t.device()); }
inline Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

// Stride-0 view of t broadcast to `shape` (no autograd link).
Tensor expand_raw(const Tensor& t, const Shape& shape);
// t itself when contiguous, else a contiguous copy (no autograd link).
Tensor contiguous_raw(const Tensor& t);
// View of t as (1, rows, cols) for Backend::gemm; t is 2-D.
Tensor batch1_raw(const Tensor& t);
// Normalised, sorted, unique dims; empty means every dim.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim);

void check_defined(const Tensor& t, const char* op, const char* arg);
void check_same(const Tensor& a, const Tensor& b, const char* op);  // dtype and device
void check_floating(const Tensor& t, const char* op);
// ids as a contiguous i64 tensor; throws px::Error naming `op` if any id is outside [0, bound)
// (ignore_value, if given, is allowed too).
Tensor checked_indices(const Tensor& ids, int64_t bound, const char* op, const int64_t* ignore_value = nullptr);

}  // namespace px::detail

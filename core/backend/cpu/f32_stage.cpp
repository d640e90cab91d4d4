// F32Stage: f32 stand-ins for the bf16/f16 operands of one CPU kernel call and the rounding back into the
// 16-bit outputs. Conversions go through CpuBackend::copy (round to nearest even).
#include "core/backend/cpu/f32_stage.h"

#include "core/backend/cpu/cpu_backend.h"

namespace px {
namespace {

bool is_half(const Tensor& t) { return t.defined() && master_dtype(t.dtype()) != t.dtype(); }

}  // namespace

bool F32Stage::any_half(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (is_half(*t)) return true;
  return false;
}

Tensor F32Stage::in(const Tensor& t) {
  if (!is_half(t)) return t;
  // Broadcast (stride-0) dims are converted once and re-broadcast: a weight shared by a batch stays one copy.
  Shape compact = t.shape(), strides = t.strides();
  for (int64_t d = 0; d < t.dim(); ++d)
    if (strides[d] == 0) compact[d] = 1;
  const Tensor f = Tensor::empty(compact, DType::f32);
  cpu_backend().copy(t.as_strided(compact, strides, t.offset()), f);
  if (compact == t.shape()) return f;
  Shape f_strides = f.strides();
  for (int64_t d = 0; d < t.dim(); ++d)
    if (strides[d] == 0) f_strides[d] = 0;
  return f.as_strided(t.shape(), f_strides, 0);
}

Tensor F32Stage::out(const Tensor& t) {
  if (!is_half(t)) return t;
  const Tensor f = Tensor::empty(t.shape(), DType::f32);
  outs_.emplace_back(t, f);
  return f;
}

Tensor F32Stage::inout(const Tensor& t) {
  const Tensor f = out(t);
  if (f.impl() != t.impl()) cpu_backend().copy(t, f);
  return f;
}

void F32Stage::finish() {
  for (const auto& [original, f] : outs_) cpu_backend().copy(f, original);
  outs_.clear();
}

}  // namespace px

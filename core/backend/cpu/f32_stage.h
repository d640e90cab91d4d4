// F32Stage: bf16/f16 on the CPU as f32 compute. f32 stand-ins for the 16-bit tensors of one kernel call, rounded
// back into the 16-bit outputs afterwards (the CPU kernels themselves are f32/f64 only).
#pragma once

#include <initializer_list>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace px {

class F32Stage {
 public:
  // Whether any defined tensor among `ts` is bf16 or f16.
  static bool any_half(std::initializer_list<const Tensor*> ts);

  // A read-only operand: a contiguous f32 copy of a 16-bit tensor; any other (or undefined) tensor itself.
  Tensor in(const Tensor& t);
  // A written operand: an f32 scratch tensor for a 16-bit one (copied back by finish()), else t itself.
  Tensor out(const Tensor& t);
  // A read-and-written operand (an accumulation target): out() holding t's current values.
  Tensor inout(const Tensor& t);
  // Rounds every stand-in from out()/inout() into its 16-bit original.
  void finish();

 private:
  std::vector<std::pair<Tensor, Tensor>> outs_;  // (16-bit original, its f32 stand-in)
};

}  // namespace px

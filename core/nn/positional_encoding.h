// SinusoidalPositionalEncoding: the fixed encodings of "Attention Is All You Need" held as a
// non-persistent (max_len, d) buffer and added to embeddings, with an offset for incremental decoding.
#pragma once

#include "core/nn/module.h"

namespace px::nn {

// PE[pos, 2i] = sin(pos / 10000^(2i / d)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / d)), computed in f64 and
// stored in `dtype`. The buffer "pe" is not in the state dict (it is a function of max_len and d).
class SinusoidalPositionalEncoding : public Module {
 public:
  SinusoidalPositionalEncoding(int64_t d_model, int64_t max_len, DType dtype = DType::f32);

  // x + PE[offset : offset + T]; x (B, T, d) -> (B, T, d). offset + T must not exceed max_len.
  Tensor forward(const Tensor& x, int64_t offset = 0) const;
  Tensor operator()(const Tensor& x, int64_t offset = 0) const { return forward(x, offset); }

  int64_t d_model() const { return d_model_; }
  int64_t max_len() const { return max_len_; }
  const Tensor& table() const { return pe_; }  // (max_len, d)

 private:
  int64_t d_model_, max_len_;
  Tensor pe_;  // (max_len, d)
};

}  // namespace px::nn

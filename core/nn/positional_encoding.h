// Fixed sinusoidal positions: SinusoidalPositionalEncoding, "Attention Is All You Need"'s 1D table added to
// embeddings (with an offset for incremental decoding), and DETR's 2D sine encoding of an image's padding mask.
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

// DETR's PositionEmbeddingSine(normalize=True): over the unpadded pixels, y = cumsum of not_mask down the rows
// and x = cumsum along the columns (starting at 1), each divided by its last value (+ 1e-6) and scaled by `scale`;
// channel 2i of a half is sin(v / T^(2i / F)), channel 2i + 1 cos(v / T^(2i / F)), F = num_pos_feats and
// T = temperature; the y half comes before the x half. Computed on the host in f64 (a batch's mask lives there).
// mask bool (B, h, w), true = padding, on the host -> (B, h * w, 2 F) in `dtype` on the host
Tensor sine_position_encoding_2d(const Tensor& mask, int64_t num_pos_feats, DType dtype = DType::f32,
                                 double temperature = 10000.0, double scale = 2 * 3.14159265358979323846);

}  // namespace px::nn

// Sinusoidal positions: the 1D table built on the host and added to the input, and DETR's 2D encoding of a
// padding mask. Nothing here is trained.
#include "core/nn/positional_encoding.h"

#include <cmath>
#include <vector>

#include "core/ops/ops.h"

namespace px::nn {

namespace {

// (max_len, d) row-major: column 2i holds sin(pos * 10000^(-2i/d)), column 2i + 1 the matching cos.
std::vector<double> sinusoid_table(int64_t d_model, int64_t max_len) {
  std::vector<double> table(static_cast<size_t>(max_len * d_model));
  for (int64_t pos = 0; pos < max_len; ++pos) {
    for (int64_t col = 0; col < d_model; ++col) {
      const int64_t two_i = col - col % 2;
      const double angle = static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(two_i) / d_model);
      table[pos * d_model + col] = col % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  }
  return table;
}

}  // namespace

SinusoidalPositionalEncoding::SinusoidalPositionalEncoding(int64_t d_model, int64_t max_len, DType dtype)
    : Module("SinusoidalPositionalEncoding"), d_model_(d_model), max_len_(max_len) {
  CHECK(d_model > 0 && max_len > 0) << "SinusoidalPositionalEncoding: d_model " << d_model << " and max_len "
                                    << max_len << " must be positive";
  pe_ = register_buffer("pe", from_vector(sinusoid_table(d_model, max_len), {max_len, d_model}, dtype),
                        /*persistent=*/false);
}

// y[b, t] = x[b, t] + PE[offset + t]
Tensor SinusoidalPositionalEncoding::forward(const Tensor& x, int64_t offset) const {
  CHECK(x.dim() == 3 && x.size(2) == d_model_)
      << "SinusoidalPositionalEncoding(d_model " << d_model_ << "): x must be (B, T, d_model), got " << x.str();
  CHECK(offset >= 0 && offset + x.size(1) <= max_len_)
      << "SinusoidalPositionalEncoding: positions [" << offset << ", " << offset + x.size(1)
      << ") exceed max_len " << max_len_;
  CHECK(x.dtype() == pe_.dtype()) << "SinusoidalPositionalEncoding: x " << x.str() << " but the table is "
                                  << pe_.str();
  return x + narrow(pe_, 0, offset, x.size(1));
}

// pos[b, i, j] = [sin/cos(y_ij / T^(2k/F)) for k ..., sin/cos(x_ij / T^(2k/F)) for k ...], y and x the normalised
// cumulative counts of unpadded pixels down column j and along row i
Tensor sine_position_encoding_2d(const Tensor& mask, int64_t num_pos_feats, DType dtype, double temperature,
                                 double scale) {
  CHECK(mask.dim() == 3 && mask.dtype() == DType::boolean && mask.device().is_cpu())
      << "sine_position_encoding_2d: mask must be a bool (B, h, w) host tensor, got " << mask.str();
  CHECK_GT(num_pos_feats, 0) << "sine_position_encoding_2d: num_pos_feats";
  const Tensor m = contiguous(mask);
  const int64_t batch = m.size(0), h = m.size(1), w = m.size(2), f = num_pos_feats, d = 2 * f;
  const bool* pad = m.data<bool>();
  std::vector<double> inv_dim(static_cast<size_t>(f));  // 1 / T^(2 floor(k/2) / F)
  for (int64_t k = 0; k < f; ++k) inv_dim[k] = std::pow(temperature, -static_cast<double>(2 * (k / 2)) / f);
  std::vector<double> out(static_cast<size_t>(batch * h * w * d));
  std::vector<double> ys(static_cast<size_t>(h * w)), xs(static_cast<size_t>(h * w));
  constexpr double kEps = 1e-6;
  for (int64_t b = 0; b < batch; ++b) {
    const bool* p = pad + b * h * w;
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const double keep = p[i * w + j] ? 0.0 : 1.0;
        ys[i * w + j] = keep + (i > 0 ? ys[(i - 1) * w + j] : 0.0);
        xs[i * w + j] = keep + (j > 0 ? xs[i * w + j - 1] : 0.0);
      }
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const double y = ys[i * w + j] / (ys[(h - 1) * w + j] + kEps) * scale;
        const double x = xs[i * w + j] / (xs[i * w + w - 1] + kEps) * scale;
        double* o = out.data() + ((b * h + i) * w + j) * d;
        for (int64_t k = 0; k < f; ++k) {
          o[k] = k % 2 == 0 ? std::sin(y * inv_dim[k]) : std::cos(y * inv_dim[k]);
          o[f + k] = k % 2 == 0 ? std::sin(x * inv_dim[k]) : std::cos(x * inv_dim[k]);
        }
      }
  }
  return from_vector(out, {batch, h * w, d}, dtype);
}

}  // namespace px::nn

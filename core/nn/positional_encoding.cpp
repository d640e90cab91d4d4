// SinusoidalPositionalEncoding: building the table on the host and adding a window of it to the input.
// The table is a buffer, so nothing here is trained.
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

}  // namespace px::nn

// Plain reference kernels of the elementwise family: copy, fill, Philox uniform/normal/dropout,
// unary ops with their backward, binary ops and where, one element at a time in double.
#include <cmath>

#include "core/backend/cpu/reference_kernels.h"
#include "core/util/philox.h"

namespace px::ref {
namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  CHECK(a.shape() == b.shape()) << "ref::" << op << ": " << a.str() << " vs " << b.str();
}

// d op / dx from x (log, relu, gelu, pow) or from y = op(x) (exp, sqrt, tanh, sigmoid)
double unary_derivative(UnaryOp op, double x, double y, double alpha) {
  switch (op) {
    case UnaryOp::neg: return -1.0;
    case UnaryOp::exp: return y;
    case UnaryOp::log: return 1.0 / x;
    case UnaryOp::sqrt: return 0.5 / y;
    case UnaryOp::relu: return x > 0.0 ? 1.0 : 0.0;
    case UnaryOp::gelu: return 0.5 * (1.0 + std::erf(x * kInvSqrt2)) + x * std::exp(-0.5 * x * x) * kInvSqrt2Pi;
    case UnaryOp::tanh: return 1.0 - y * y;
    case UnaryOp::sigmoid: return y * (1.0 - y);
    case UnaryOp::add_scalar: return 1.0;
    case UnaryOp::mul_scalar: return alpha;
    case UnaryOp::pow: return alpha == 0.0 ? 0.0 : alpha * std::pow(x, alpha - 1.0);
  }
  LOG(FATAL) << "ref::unary_backward: unknown op " << static_cast<int>(op);
  __builtin_unreachable();
}

}  // namespace

// op(v; alpha) in double
double unary_value(UnaryOp op, double v, double alpha) {
  switch (op) {
    case UnaryOp::neg: return -v;
    case UnaryOp::exp: return std::exp(v);
    case UnaryOp::log: return std::log(v);
    case UnaryOp::sqrt: return std::sqrt(v);
    case UnaryOp::relu: return v < 0.0 ? 0.0 : v;
    case UnaryOp::gelu: return 0.5 * v * (1.0 + std::erf(v * kInvSqrt2));
    case UnaryOp::tanh: return std::tanh(v);
    case UnaryOp::sigmoid: return 1.0 / (1.0 + std::exp(-v));
    case UnaryOp::add_scalar: return v + alpha;
    case UnaryOp::mul_scalar: return alpha * v;
    case UnaryOp::pow: return std::pow(v, alpha);
  }
  LOG(FATAL) << "ref::unary: unknown op " << static_cast<int>(op);
  __builtin_unreachable();
}

// a op b in double; comparisons give 1 or 0; maximum / minimum propagate NaN
double binary_value(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::maximum: return (std::isnan(a) || a > b) ? a : b;
    case BinaryOp::minimum: return (std::isnan(a) || a < b) ? a : b;
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
  }
  LOG(FATAL) << "ref::binary: unknown op " << static_cast<int>(op);
  __builtin_unreachable();
}

// dst_i = src_i
void copy(const Tensor& src, const Tensor& dst) {
  check_same_shape("copy", src, dst);
  for (int64_t i = 0; i < dst.numel(); ++i) store(dst, i, load(src, i));
}

// dst_i = value
void fill(const Tensor& dst, double value) {
  for (int64_t i = 0; i < dst.numel(); ++i) store(dst, i, value);
}

// out_i = lo + (hi - lo) U(seed, offset + i)
void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  for (int64_t i = 0; i < out.numel(); ++i)
    store(out, i, lo + (hi - lo) * philox_uniform(seed, offset + static_cast<uint64_t>(i)));
}

// out_i = mean + std N(seed, offset + i)
void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  for (int64_t i = 0; i < out.numel(); ++i)
    store(out, i, mean + std * philox_normal(seed, offset + static_cast<uint64_t>(i)));
}

// y_i = U_f32(seed, offset + i) >= p ? x_i / (1 - p) : 0
void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) {
  check_same_shape("dropout", x, y);
  const float pf = static_cast<float>(p);
  for (int64_t i = 0; i < y.numel(); ++i) {
    const bool keep = philox_uniform_f32(seed, offset + static_cast<uint64_t>(i)) >= pf;
    store(y, i, keep && p < 1.0 ? load(x, i) / (1.0 - p) : 0.0);
  }
}

// out_i = op(x_i; alpha)
void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) {
  check_same_shape("unary", x, out);
  for (int64_t i = 0; i < out.numel(); ++i) store(out, i, unary_value(op, load(x, i), alpha));
}

// gx_i = gy_i op'(x_i)
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx, double alpha) {
  check_same_shape("unary_backward", gy, gx);
  for (int64_t i = 0; i < gx.numel(); ++i) {
    const double xv = x.defined() ? load(x, i) : 0.0, yv = y.defined() ? load(y, i) : 0.0;
    store(gx, i, load(gy, i) * unary_derivative(op, xv, yv, alpha));
  }
}

// out_i = a_i op b_i
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_same_shape("binary", a, out);
  check_same_shape("binary", b, out);
  for (int64_t i = 0; i < out.numel(); ++i) store(out, i, binary_value(op, load(a, i), load(b, i)));
}

// out_i = cond_i ? a_i : b_i
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  for (const Tensor* t : {&cond, &a, &b}) check_same_shape("where", *t, out);
  for (int64_t i = 0; i < out.numel(); ++i) store(out, i, load(cond, i) != 0.0 ? load(a, i) : load(b, i));
}

}  // namespace px::ref

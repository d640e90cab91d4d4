// Differentiable pointwise math with NumPy broadcasting, comparisons, and the in-place updates
// optimizers use (which bump the version counter and refuse leaves that require grad in grad mode).
#include "core/ops/elementwise.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/factory.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"
#include "core/util/error.h"

namespace px {

using autograd::attach;
using autograd::SavedTensor;
using detail::backend_of;
using detail::expand_raw;

namespace {

Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  detail::check_defined(a, name, "a");
  detail::check_defined(b, name, "b");
  detail::check_same(a, b, name);
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, is_comparison(op) ? DType::boolean : a.dtype(), a.device());
  backend_of(a).binary(op, expand_raw(a, shape), expand_raw(b, shape), out);
  return out;
}

Tensor unary_raw(UnaryOp op, const Tensor& x, double alpha) {
  Tensor y = detail::empty_like(x);
  backend_of(x).unary(op, x, y, alpha);
  return y;
}

// y = op(x; alpha); dL/dx = dL/dy * op'(x) computed by the backend from x and y
Tensor unary_op(UnaryOp op, const Tensor& x, double alpha, const char* name) {
  detail::check_defined(x, name, "x");
  detail::check_floating(x, name);
  Tensor y = unary_raw(op, x, alpha);
  if (autograd::any_requires_grad({&x})) {
    attach(y, name, {x}, [op, alpha, name, sx = SavedTensor(x), sy = SavedTensor(y)](const Tensor& g) {
      const Tensor x = detail::contiguous_raw(sx.unpack(name)), y = sy.unpack(name);
      Tensor gx = detail::empty_like(x);
      backend_of(g).unary_backward(op, x, y, detail::contiguous_raw(g), gx, alpha);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace

// out = a + b; dL/da = sum_to(g, a), dL/db = sum_to(g, b)
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::add, a, b, "add");
  if (autograd::any_requires_grad({&a, &b})) {
    attach(out, "AddBackward", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
      return std::vector<Tensor>{sum_to(g, sa), sum_to(g, sb)};
    });
  }
  return out;
}

// out = a - b; dL/da = sum_to(g, a), dL/db = -sum_to(g, b)
Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::sub, a, b, "sub");
  if (autograd::any_requires_grad({&a, &b})) {
    attach(out, "SubBackward", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
      return std::vector<Tensor>{sum_to(g, sa), neg(sum_to(g, sb))};
    });
  }
  return out;
}

// out = a * b; dL/da = sum_to(g * b, a), dL/db = sum_to(g * a, b)
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::mul, a, b, "mul");
  const bool need_a = autograd::any_requires_grad({&a}), need_b = autograd::any_requires_grad({&b});
  if (need_a || need_b) {
    attach(out, "MulBackward", {a, b},
           [need_a, need_b, sa = SavedTensor(need_b ? a : Tensor()), sb = SavedTensor(need_a ? b : Tensor()),
            shape_a = a.shape(), shape_b = b.shape()](const Tensor& g) {
             std::vector<Tensor> grads(2);
             if (need_a) grads[0] = sum_to(mul(g, sb.unpack("MulBackward")), shape_a);
             if (need_b) grads[1] = sum_to(mul(g, sa.unpack("MulBackward")), shape_b);
             return grads;
           });
  }
  return out;
}

// out = a / b; dL/da = sum_to(g / b, a), dL/db = -sum_to(g * a / b^2, b)
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::div, a, b, "div");
  const bool need_a = autograd::any_requires_grad({&a}), need_b = autograd::any_requires_grad({&b});
  if (need_a || need_b) {
    attach(out, "DivBackward", {a, b},
           [need_a, need_b, sa = SavedTensor(need_b ? a : Tensor()), sb = SavedTensor(b), shape_a = a.shape(),
            shape_b = b.shape()](const Tensor& g) {
             const Tensor b = sb.unpack("DivBackward");
             const Tensor g_over_b = div(g, b);
             std::vector<Tensor> grads(2);
             if (need_a) grads[0] = sum_to(g_over_b, shape_a);
             if (need_b) grads[1] = neg(sum_to(div(mul(g_over_b, sa.unpack("DivBackward")), b), shape_b));
             return grads;
           });
  }
  return out;
}

namespace {

// out = max(a, b) or min(a, b); dL/da = sum_to(g * w, a), dL/db = sum_to(g * (1 - w), b), w = [a wins] + [a == b] / 2
Tensor extremum(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  Tensor out = binary_raw(op, a, b, name);
  if (autograd::any_requires_grad({&a, &b})) {
    attach(out, name, {a, b}, [op, name, sa = SavedTensor(a), sb = SavedTensor(b)](const Tensor& g) {
      const Tensor a = sa.unpack(name), b = sb.unpack(name);
      const Tensor wins = binary_raw(op == BinaryOp::maximum ? BinaryOp::gt : BinaryOp::lt, a, b, name);
      const Tensor w = to_dtype(wins, g.dtype()) + to_dtype(binary_raw(BinaryOp::eq, a, b, name), g.dtype()) * 0.5;
      const Tensor ga = mul(g, w);
      return std::vector<Tensor>{sum_to(ga, a.shape()), sum_to(sub(g, ga), b.shape())};
    });
  }
  return out;
}

}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::maximum, a, b, "MaximumBackward"); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::minimum, a, b, "MinimumBackward"); }

// y = x + s; dL/dx = g
Tensor add(const Tensor& x, double s) {
  Tensor y = unary_raw(UnaryOp::add_scalar, x, s);
  if (autograd::any_requires_grad({&x}))
    attach(y, "AddScalarBackward", {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return y;
}

// y = s * x; dL/dx = s * g
Tensor mul(const Tensor& x, double s) {
  Tensor y = unary_raw(UnaryOp::mul_scalar, x, s);
  if (autograd::any_requires_grad({&x}))
    attach(y, "MulScalarBackward", {x}, [s](const Tensor& g) { return std::vector<Tensor>{mul(g, s)}; });
  return y;
}

Tensor neg(const Tensor& x) { return unary_op(UnaryOp::neg, x, 0, "NegBackward"); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::exp, x, 0, "ExpBackward"); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::log, x, 0, "LogBackward"); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::sqrt, x, 0, "SqrtBackward"); }
Tensor pow(const Tensor& x, double exponent) { return unary_op(UnaryOp::pow, x, exponent, "PowBackward"); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::relu, x, 0, "ReluBackward"); }
Tensor gelu(const Tensor& x) { return unary_op(UnaryOp::gelu, x, 0, "GeluBackward"); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::tanh, x, 0, "TanhBackward"); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::sigmoid, x, 0, "SigmoidBackward"); }

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::eq, a, b, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ne, a, b, "ne"); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::lt, a, b, "lt"); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::le, a, b, "le"); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::gt, a, b, "gt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ge, a, b, "ge"); }

// fill_ and copy_ write strided views too (Backend::fill / copy take any strides); add_ and mul_ need contiguous.
static void check_inplace(const Tensor& dst, const char* op, bool strided_ok = false) {
  detail::check_defined(dst, op, "dst");
  if (grad_enabled() && dst.requires_grad())
    throw AutogradError(std::string(op) + " on " + dst.str() +
                        ", which requires grad, while grad mode is on: use NoGradGuard");
  CHECK(strided_ok || dst.is_contiguous()) << op << ": in-place ops need a contiguous destination, got " << dst.str();
}

void add_(const Tensor& dst, const Tensor& src, double alpha) {
  check_inplace(dst, "add_");
  detail::check_same(dst, src, "add_");
  Tensor s = alpha == 1.0 ? src : unary_raw(UnaryOp::mul_scalar, src, alpha);
  backend_of(dst).binary(BinaryOp::add, dst, expand_raw(s, dst.shape()), dst);
  dst.bump_version();
}

void mul_(const Tensor& dst, double s) {
  check_inplace(dst, "mul_");
  backend_of(dst).unary(UnaryOp::mul_scalar, dst, dst, s);
  dst.bump_version();
}

void fill_(const Tensor& dst, double value) {
  check_inplace(dst, "fill_", /*strided_ok=*/true);
  backend_of(dst).fill(dst, value);
  dst.bump_version();
}

void copy_(const Tensor& dst, const Tensor& src) {
  check_inplace(dst, "copy_", /*strided_ok=*/true);
  const Tensor& device_side = dst.device().is_cpu() ? src : dst;
  backend_of(device_side).copy(src.device() == dst.device() ? expand_raw(src, dst.shape()) : src, dst);
  dst.bump_version();
}

}  // namespace px

// Matrix products: matmul with batch broadcasting (1-D operands promoted like torch.matmul)
// and linear (y = x W^T + b), both as Backend::gemm calls on strided views.
#include "core/ops/matmul.h"

#include "core/ops/factory.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"

namespace px {

using autograd::attach;
using autograd::SavedTensor;
using detail::backend_of;

namespace {

// t (..., r, c) as a view Backend::gemm accepts: row-major (unit column stride, row stride >= c)
// or column-major (a transposed matrix), with size-1 dims given canonical strides; else a copy.
Tensor gemm_operand(const Tensor& t) {
  const int64_t n = t.dim(), rows = t.size(-2), cols = t.size(-1), rs = t.stride(-2), cs = t.stride(-1);
  Shape strides = t.strides();
  if ((cs == 1 || cols == 1) && (rows == 1 || rs >= std::max<int64_t>(cols, 1))) {
    strides[n - 1] = 1;
    strides[n - 2] = rows == 1 ? std::max<int64_t>(cols, 1) : rs;
  } else if ((rs == 1 || rows == 1) && (cols == 1 || cs >= std::max<int64_t>(rows, 1))) {
    strides[n - 2] = 1;
    strides[n - 1] = cols == 1 ? std::max<int64_t>(rows, 1) : cs;
  } else {
    return detail::contiguous_raw(t);
  }
  return t.as_strided(t.shape(), strides, t.offset());
}

// View of t (batch..., r, c) broadcast to `batch` as (B, r, c) with a single batch stride,
// copying when the batch dims cannot be folded into one stride.
Tensor as_batched(const Tensor& t, const Shape& batch) {
  Shape shape = batch;
  shape.push_back(t.size(-2));
  shape.push_back(t.size(-1));
  Tensor e = gemm_operand(detail::expand_raw(t, shape));
  const int64_t nb = static_cast<int64_t>(batch.size());
  int64_t bstride = 0;
  bool foldable = true;
  int64_t expected = -1;
  for (int64_t i = nb - 1; i >= 0; --i) {
    if (shape[i] == 1) continue;
    const int64_t s = e.strides()[i];
    if (expected < 0) {
      bstride = s;
    } else if (s != expected) {
      foldable = false;
    }
    expected = s * shape[i];
  }
  if (!foldable) {
    e = gemm_operand(detail::contiguous_raw(e));
    bstride = e.size(-1) * e.size(-2);
  }
  const int64_t b = shape_numel(batch);
  return e.as_strided({b, e.size(-2), e.size(-1)}, {bstride, e.stride(-2), e.stride(-1)}, e.offset());
}

// c = a @ b without autograd for a (..., M, K), b (..., K, N).
Tensor matmul_raw(const Tensor& a, const Tensor& b) {
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb);
  Shape out_shape = batch;
  out_shape.push_back(a.size(-2));
  out_shape.push_back(b.size(-1));
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  const int64_t nbatch = shape_numel(batch);
  Tensor c3 = out.as_strided({nbatch, a.size(-2), b.size(-1)}, {a.size(-2) * b.size(-1), b.size(-1), 1}, 0);
  if (a.size(-1) == 0) {
    backend_of(out).fill(out, 0.0);
    return out;
  }
  backend_of(a).gemm(as_batched(a, batch), as_batched(b, batch), c3, 1.0, 0.0);
  return out;
}

Tensor matrix_transpose(const Tensor& t) { return transpose(t, -1, -2); }

}  // namespace

// c = a @ b; dL/da = sum_to(g @ b^T, a), dL/db = sum_to(a^T @ g, b)
Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "matmul", "a");
  detail::check_defined(b, "matmul", "b");
  detail::check_same(a, b, "matmul");
  detail::check_floating(a, "matmul");
  CHECK(a.dim() >= 1 && b.dim() >= 1) << "matmul of " << a.str() << " and " << b.str();
  if (a.dim() == 1) return squeeze(matmul(unsqueeze(a, 0), b), b.dim() == 1 ? -1 : -2);
  if (b.dim() == 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  CHECK_EQ(a.size(-1), b.size(-2)) << "matmul: inner dims differ, " << a.str() << " @ " << b.str();
  Tensor out;
  if (b.dim() == 2 && a.dim() > 2 && a.is_contiguous()) {  // fold a's batch into its rows
    Shape shape = a.shape();
    shape.back() = b.size(1);
    out = matmul_raw(a.as_strided({a.numel() / a.size(-1), a.size(-1)}, {a.size(-1), 1}, a.offset()), b);
    out = out.as_strided(shape, contiguous_strides(shape), 0);
  } else {
    out = matmul_raw(a, b);
  }
  const bool need_a = autograd::any_requires_grad({&a}), need_b = autograd::any_requires_grad({&b});
  if (need_a || need_b) {
    attach(out, "MatmulBackward", {a, b},
           [need_a, need_b, sa = SavedTensor(need_b ? a : Tensor()), sb = SavedTensor(need_a ? b : Tensor()),
            shape_a = a.shape(), shape_b = b.shape()](const Tensor& g) {
             std::vector<Tensor> grads(2);
             if (need_a) grads[0] = sum_to(matmul(g, matrix_transpose(sb.unpack("MatmulBackward"))), shape_a);
             if (need_b) {
               const Tensor a = sa.unpack("MatmulBackward");
               if (shape_b.size() == 2 && a.dim() > 2) {  // weight-like b: one GEMM over all rows
                 const Tensor a2 = reshape(a, {-1, a.size(-1)}), g2 = reshape(g, {-1, g.size(-1)});
                 grads[1] = matmul(matrix_transpose(a2), g2);
               } else {
                 grads[1] = sum_to(matmul(matrix_transpose(a), g), shape_b);
               }
             }
             return grads;
           });
  }
  return out;
}

// y = x W^T + b over rows of x (R, in); dL/dx = g W, dL/dW = g^T x, dL/db = sum over rows of g
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_defined(x, "linear", "x");
  detail::check_defined(weight, "linear", "weight");
  detail::check_same(x, weight, "linear");
  detail::check_floating(x, "linear");
  CHECK_EQ(weight.dim(), 2) << "linear: weight must be (out, in), got " << weight.str();
  CHECK_EQ(x.size(-1), weight.size(1)) << "linear: input " << x.str() << " vs weight " << weight.str();
  const int64_t in = weight.size(1), out_features = weight.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  const Tensor x2 = detail::contiguous_raw(x);
  const int64_t rows = x2.numel() / std::max<int64_t>(in, 1);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor y3 = y.as_strided({1, rows, out_features}, {0, out_features, 1}, 0);
  double beta = 0.0;
  if (bias.defined()) {
    detail::check_same(x, bias, "linear");
    CHECK(bias.dim() == 1 && bias.size(0) == out_features) << "linear: bias " << bias.str();
    backend_of(x).copy(detail::expand_raw(bias, {1, rows, out_features}), y3);
    beta = 1.0;
  }
  const Tensor w_t = gemm_operand(transpose(weight.detach(), 0, 1));  // (in, out) view
  if (rows > 0) {
    if (in == 0) {
      if (beta == 0.0) backend_of(x).fill(y, 0.0);
    } else {
      backend_of(x).gemm(x2.as_strided({1, rows, in}, {0, in, 1}, x2.offset()), detail::batch1_raw(w_t), y3, 1.0,
                         beta);
    }
  }
  const bool need_x = autograd::any_requires_grad({&x}), need_w = autograd::any_requires_grad({&weight}),
             need_b = autograd::any_requires_grad({&bias});
  if (need_x || need_w || need_b) {
    attach(y, "LinearBackward", {x, weight, bias},
           [need_x, need_w, need_b, sx = SavedTensor(need_w ? x2 : Tensor()), sw = SavedTensor(need_x ? weight : Tensor()),
            x_shape = x.shape(), rows, in, out_features](const Tensor& g) {
             std::vector<Tensor> grads(3);
             const Tensor g2 = detail::contiguous_raw(g);
             const Tensor g3 = g2.as_strided({1, rows, out_features}, {0, out_features, 1}, g2.offset());
             Backend& be = backend_of(g);
             if (need_x) {
               const Tensor w = sw.unpack("LinearBackward");
               Tensor gx = Tensor::empty(x_shape, g.dtype(), g.device());
               be.gemm(g3, detail::batch1_raw(gemm_operand(w)), gx.as_strided({1, rows, in}, {0, in, 1}, 0), 1.0, 0.0);
               grads[0] = gx;
             }
             if (need_w) {
               const Tensor x2 = sx.unpack("LinearBackward");
               Tensor gw = Tensor::empty({out_features, in}, g.dtype(), g.device());
               const Tensor g_t = g2.as_strided({1, out_features, rows}, {0, 1, out_features}, g2.offset());
               be.gemm(g_t, x2.as_strided({1, rows, in}, {0, in, 1}, x2.offset()), detail::batch1_raw(gw), 1.0, 0.0);
               grads[1] = gw;
             }
             if (need_b) grads[2] = sum(g2.as_strided({rows, out_features}, {out_features, 1}, g2.offset()), {0});
             return grads;
           });
  }
  return y;
}

}  // namespace px

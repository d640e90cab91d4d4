// CPU GEMM through OpenBLAS: batched c = alpha * a @ b + beta * c with row-major or transposed
// operands and broadcast (stride-0) batches; bf16/f16 through f32 stand-ins (F32Stage).
#include <cblas.h>

#include <algorithm>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/f32_stage.h"
#include "core/backend/cpu/cpu_loops.h"

namespace px {
namespace {

// How one (B, R, C) operand maps to BLAS: transposed or not, its leading dimension, its batch stride.
struct BlasOperand {
  CBLAS_TRANSPOSE trans = CblasNoTrans;
  int64_t ld = 1;
  int64_t batch_stride = 0;
};

// A view is usable when its last dim has unit stride (row-major, ld = stride[-2]) or its
// second-to-last does (a transposed view, ld = stride[-1]); size-1 dims may have any stride.
BlasOperand blas_operand(const Tensor& t, const char* name) {
  const int64_t nd = t.dim();
  const int64_t rows = t.size(nd - 2), cols = t.size(nd - 1);
  const int64_t rs = t.stride(nd - 2), cs = t.stride(nd - 1);
  BlasOperand op;
  op.batch_stride = nd == 3 ? (t.size(0) == 1 ? 0 : t.stride(0)) : 0;
  if ((cs == 1 || cols <= 1) && (rows <= 1 || rs >= std::max<int64_t>(cols, 1))) {
    op.trans = CblasNoTrans;
    op.ld = rows <= 1 ? std::max<int64_t>(cols, 1) : rs;
    return op;
  }
  if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= std::max<int64_t>(rows, 1))) {
    op.trans = CblasTrans;
    op.ld = cols <= 1 ? std::max<int64_t>(rows, 1) : cs;
    return op;
  }
  LOG(FATAL) << "gemm: operand " << name << " " << t.str() << " with strides " << shape_str(t.strides())
             << " has no unit stride in its last two dims; make it contiguous first";
  __builtin_unreachable();
}

template <typename T>
void gemm_blas(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  const int64_t nd = c.dim();
  const int64_t batch = nd == 3 ? c.size(0) : 1;
  const int64_t m = c.size(nd - 2), n = c.size(nd - 1), k = a.size(nd - 1);
  const BlasOperand oa = blas_operand(a, "a"), ob = blas_operand(b, "b");
  const T* ap = a.data<T>();
  const T* bp = b.data<T>();
  T* cp = c.data<T>();
  for (int64_t i = 0; i < batch; ++i) {
    const T* ai = ap + i * oa.batch_stride;
    const T* bi = bp + i * ob.batch_stride;
    T* ci = cp + i * m * n;
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(CblasRowMajor, oa.trans, ob.trans, m, n, k, static_cast<float>(alpha), ai, oa.ld, bi, ob.ld,
                  static_cast<float>(beta), ci, std::max<int64_t>(n, 1));
    } else {
      cblas_dgemm(CblasRowMajor, oa.trans, ob.trans, m, n, k, alpha, ai, oa.ld, bi, ob.ld, beta, ci,
                  std::max<int64_t>(n, 1));
    }
  }
}

}  // namespace

// c = alpha * a @ b + beta * c: a (B, M, K), b (B, K, N), c (B, M, N) contiguous (B optional).
void CpuBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  if (F32Stage::any_half({&a, &b, &c})) {
    F32Stage s;
    gemm(s.in(a), s.in(b), beta != 0.0 ? s.inout(c) : s.out(c), alpha, beta);
    return s.finish();
  }
  CHECK(a.dim() == b.dim() && a.dim() == c.dim() && (c.dim() == 3 || c.dim() == 2))
      << "gemm: expects (B, M, K) @ (B, K, N) -> (B, M, N); got " << a.str() << ", " << b.str() << ", " << c.str();
  CHECK(a.dtype() == b.dtype() && a.dtype() == c.dtype())
      << "gemm: dtypes differ: " << a.str() << ", " << b.str() << ", " << c.str();
  const int64_t nd = c.dim();
  const int64_t m = c.size(nd - 2), n = c.size(nd - 1), k = a.size(nd - 1);
  CHECK(a.size(nd - 2) == m && b.size(nd - 2) == k && b.size(nd - 1) == n && (nd == 2 || (a.size(0) == c.size(0) &&
                                                                                          b.size(0) == c.size(0))))
      << "gemm: shapes do not chain: " << a.str() << " @ " << b.str() << " -> " << c.str();
  CHECK(c.is_contiguous()) << "gemm: c must be contiguous, got " << c.str() << " strides " << shape_str(c.strides());
  if (c.numel() == 0) return;
  if (k == 0) {  // empty inner dim: c = beta * c (beta 0 overwrites, NaN included)
    if (beta == 0.0) {
      fill(c, 0.0);
    } else if (beta != 1.0) {
      unary(UnaryOp::mul_scalar, c, c, beta);
    }
    return;
  }
  switch (c.dtype()) {
    case DType::f32: return gemm_blas<float>(a, b, c, alpha, beta);
    case DType::f64: return gemm_blas<double>(a, b, c, alpha, beta);
    default:
      LOG(FATAL) << "op gemm: dtype " << dtype_name(c.dtype()) << " not supported on the CPU; convert to f32";
  }
}

}  // namespace px

// The only cuBLASLt wrapper: row-major batched GEMM with transposed-view operands and strided (or
// broadcast) batches, a heuristics/plan cache, a per-(device, stream) workspace, and optional epilogues.
#include "core/backend/cuda/gemm_cublaslt.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_kernels.h"
#include "core/util/check.h"

namespace px::gpu {
namespace {

// Row-major C = A B is computed as column-major C^T = B^T A^T: cuBLAS's "A" operand is our b and its
// "B" operand our a. A row-major logical (R, C) matrix X with strides (sR, sC) becomes the column-major
// operand whose op() is X^T: stored (C x R, ld sR) with op N when sC == 1, or stored (R x C, ld sC)
// with op T when sR == 1.
struct Operand {
  bool trans = false;
  int64_t rows = 0, cols = 0, ld = 0;  // of the stored column-major matrix
  int64_t batch_stride = 0;
};

std::optional<Operand> describe(int64_t r, int64_t c, int64_t sr, int64_t sc) {
  // The stride of a size-1 dim is irrelevant: pick the one that makes a valid layout.
  if (r == 1) sr = (sc == 1) ? std::max<int64_t>(c, 1) : 1;
  if (c == 1) sc = (sr == 1 && r > 1) ? r : 1;
  if (sc == 1 && sr >= std::max<int64_t>(c, 1)) return Operand{false, c, r, std::max<int64_t>(sr, 1), 0};
  if (sr == 1 && sc >= std::max<int64_t>(r, 1)) return Operand{true, r, c, std::max<int64_t>(sc, 1), 0};
  return std::nullopt;
}

// a (B?, R, C) -> its operand, copying to a contiguous temporary when no cuBLAS layout fits.
Operand operand_for(const Tensor& x, int64_t batches, Tensor* storage) {
  const int64_t nd = x.dim();
  const int64_t r = x.size(nd - 2), c = x.size(nd - 1);
  std::optional<Operand> op = describe(r, c, x.stride(nd - 2), x.stride(nd - 1));
  if (!op) {
    *storage = Tensor::empty(x.shape(), x.dtype(), x.device());
    copy(x, *storage);
    op = describe(r, c, storage->stride(nd - 2), storage->stride(nd - 1));
  } else {
    *storage = x;
  }
  CHECK(op.has_value()) << "gemm: no cuBLAS layout for " << x.str();
  const bool batched = nd == 3 && x.size(0) == batches && batches > 1;
  op->batch_stride = batched ? storage->stride(0) : 0;
  return *op;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    case DType::f64: return CUDA_R_64F;
    default: LOG(FATAL) << "gemm: unsupported dtype " << dtype_name(t) << " on CUDA";
  }
  return CUDA_R_32F;
}

cublasLtEpilogue_t lt_epilogue(GemmEpilogue ep) {
  switch (ep) {
    case GemmEpilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::relu: return CUBLASLT_EPILOGUE_RELU;
    case GemmEpilogue::bias_relu: return CUBLASLT_EPILOGUE_RELU_BIAS;
    case GemmEpilogue::gelu: return CUBLASLT_EPILOGUE_GELU;
    case GemmEpilogue::bias_gelu: return CUBLASLT_EPILOGUE_GELU_BIAS;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// Largest power of two (<= 256) dividing the address: cuBLASLt picks kernels by operand alignment.
int64_t alignment(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  int64_t a = 1;
  while (a < 256 && (u % (2 * a)) == 0) a *= 2;
  return a;
}

// Everything the chosen algorithm depends on.
using PlanKey = std::array<int64_t, 22>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct GemmState {
  std::mutex mu;
  std::map<int, cublasLtHandle_t> lt;                          // per device
  std::map<int, cublasHandle_t> blas;                          // per device (f64)
  std::map<std::pair<int, void*>, void*> workspace;           // per (device, stream)
  std::map<PlanKey, Plan> plans;                               // never evicted: shapes repeat in training
};

GemmState& state() {
  static GemmState* s = new GemmState();  // never destroyed (CUDA may be torn down first)
  return *s;
}

std::atomic<bool> g_allow_tf32{false};

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, const Operand& op, int64_t batches) {
  cublasLtMatrixLayout_t l = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(op.rows), static_cast<uint64_t>(op.cols),
                                          op.ld));
  if (batches > 1) {
    const int32_t count = static_cast<int32_t>(batches);
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &op.batch_stride,
                                                  sizeof(op.batch_stride)));
  }
  return l;
}

// The cuBLASLt path for f32/bf16/f16 (f32 compute).
void lt_gemm(int device, void* stream, const Operand& oa, const void* pa, const Operand& ob, const void* pb,
             const Operand& oc, void* pc, DType dt, int64_t batches, int64_t m, int64_t n, int64_t k, float alpha,
             float beta, GemmEpilogue ep, const void* bias) {
  GemmState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto& lt = s.lt[device];
  if (lt == nullptr) CUBLAS_CHECK(cublasLtCreate(&lt));
  void*& ws = s.workspace[{device, stream}];
  if (ws == nullptr) CUDA_CHECK(cudaMalloc(&ws, kGemmWorkspaceBytes));

  const bool tf32 = dt == DType::f32 && g_allow_tf32.load();
  // cuBLAS operand A is b, operand B is a (see Operand).
  const PlanKey key{device, static_cast<int64_t>(dt), ob.trans, oa.trans, m, n, k, ob.ld, oa.ld, oc.ld,
                    batches, ob.batch_stride, oa.batch_stride, oc.batch_stride, static_cast<int64_t>(ep),
                    alignment(pb), alignment(pa), alignment(pc), bias != nullptr ? alignment(bias) : 0, tf32,
                    ob.rows, oa.rows};
  auto it = s.plans.find(key);
  if (it == s.plans.end()) {
    Plan p;
    const cudaDataType_t t = cuda_type(dt);
    const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F));
    const cublasOperation_t ta = ob.trans ? CUBLAS_OP_T : CUBLAS_OP_N, tb = oa.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    const cublasLtEpilogue_t e = lt_epilogue(ep);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
    if (bias != nullptr) {
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof(t)));
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    p.la = make_layout(t, ob, batches);
    p.lb = make_layout(t, oa, batches);
    p.lc = make_layout(t, oc, batches);

    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws_bytes = kGemmWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                      sizeof(ws_bytes)));
    const uint32_t al_a = static_cast<uint32_t>(alignment(pb)), al_b = static_cast<uint32_t>(alignment(pa)),
                   al_c = static_cast<uint32_t>(alignment(pc));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                      sizeof(al_a)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                      sizeof(al_b)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                      sizeof(al_c)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                      sizeof(al_c)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, &result, &found));
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    CHECK_GT(found, 0) << "gemm: cuBLASLt has no algorithm for " << dtype_name(dt) << " (B=" << batches << ", M=" << m
                       << ", N=" << n << ", K=" << k << ", lda=" << ob.ld << ", ldb=" << oa.ld << ")";
    p.algo = result.algo;
    it = s.plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  if (bias != nullptr)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  CUBLAS_CHECK(cublasLtMatmul(lt, p.desc, &alpha, pb, p.la, pa, p.lb, &beta, pc, p.lc, pc, p.lc, &p.algo, ws,
                              kGemmWorkspaceBytes, static_cast<cudaStream_t>(stream)));
}

// The f64 path (gradient checks): cublasDgemmStridedBatched with the same operand mapping.
void dgemm(int device, void* stream, const Operand& oa, const double* pa, const Operand& ob, const double* pb,
           double* pc, int64_t batches, int64_t m, int64_t n, int64_t k, double alpha, double beta) {
  GemmState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto& h = s.blas[device];
  if (h == nullptr) CUBLAS_CHECK(cublasCreate(&h));
  CUBLAS_CHECK(cublasSetStream(h, static_cast<cudaStream_t>(stream)));
  CHECK(m < INT32_MAX && n < INT32_MAX && k < INT32_MAX && batches < INT32_MAX)
      << "gemm: f64 sizes exceed int32 (M=" << m << ", N=" << n << ", K=" << k << ")";
  CUBLAS_CHECK(cublasDgemmStridedBatched(
      h, ob.trans ? CUBLAS_OP_T : CUBLAS_OP_N, oa.trans ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
      static_cast<int>(m), static_cast<int>(k), &alpha, pb, static_cast<int>(ob.ld), ob.batch_stride, pa,
      static_cast<int>(oa.ld), oa.batch_stride, &beta, pc, static_cast<int>(n), m * n, static_cast<int>(batches)));
}

void run_gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta, GemmEpilogue ep,
              const Tensor& bias) {
  for (const Tensor* t : {&a, &b, &c}) {
    CHECK(t->defined() && t->device().type == DeviceType::cuda) << "gemm: operands must be CUDA tensors";
    CHECK(t->dim() == 2 || t->dim() == 3) << "gemm: operands must be 2-D or 3-D; got " << t->str();
    CHECK(t->dtype() == c.dtype()) << "gemm: dtypes differ: " << a.str() << " x " << b.str() << " -> " << c.str();
  }
  CHECK(c.is_contiguous()) << "gemm: c must be contiguous; got " << c.str();
  const int64_t batches = c.dim() == 3 ? c.size(0) : 1;
  const int64_t m = c.size(-2), n = c.size(-1), k = a.size(-1);
  CHECK(a.size(-2) == m && b.size(-2) == k && b.size(-1) == n)
      << "gemm: shapes do not chain: " << a.str() << " x " << b.str() << " -> " << c.str();
  for (const Tensor* t : {&a, &b})
    CHECK(t->dim() == 2 || t->size(0) == batches || t->size(0) == 1)
        << "gemm: batch of " << t->str() << " vs " << c.str();
  if (batches == 0 || m == 0 || n == 0) return;
  if (k == 0) {  // empty sum: c = beta * c
    CHECK(ep == GemmEpilogue::none) << "gemm: an epilogue needs K > 0";
    if (beta == 0.0) fill(c, 0.0);
    else unary(UnaryOp::mul_scalar, c, c, beta);
    return;
  }
  Tensor sa, sb;
  const Operand oa = operand_for(a, batches, &sa), ob = operand_for(b, batches, &sb);
  const Operand oc{false, n, m, n, batches > 1 ? m * n : 0};
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  void* stream = current_cuda_stream();
  if (c.dtype() == DType::f64) {
    CHECK(ep == GemmEpilogue::none) << "gemm: epilogues are f32/bf16/f16 only";
    dgemm(device, stream, oa, sa.data<double>(), ob, sb.data<double>(), c.data<double>(), batches, m, n, k, alpha,
          beta);
  } else {
    CHECK(m < INT32_MAX && n < INT32_MAX && k < INT32_MAX && batches < INT32_MAX) << "gemm: sizes exceed int32";
    lt_gemm(device, stream, oa, sa.raw_data(), ob, sb.raw_data(), oc, c.raw_data(), c.dtype(), batches, m, n, k,
            static_cast<float>(alpha), static_cast<float>(beta), ep, bias.defined() ? bias.raw_data() : nullptr);
  }
}

}  // namespace

void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  run_gemm(a, b, c, alpha, beta, GemmEpilogue::none, Tensor());
}

void gemm_epilogue(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta, GemmEpilogue ep,
                   const Tensor& bias) {
  const bool needs_bias = ep == GemmEpilogue::bias || ep == GemmEpilogue::bias_relu || ep == GemmEpilogue::bias_gelu;
  CHECK_EQ(needs_bias, bias.defined()) << "gemm_epilogue: bias must be given exactly for the bias epilogues";
  if (needs_bias)
    CHECK(bias.is_contiguous() && bias.numel() == c.size(-1) && bias.dtype() == c.dtype() &&
          bias.device() == c.device())
        << "gemm_epilogue: bias must be a contiguous (" << c.size(-1) << ") " << dtype_name(c.dtype())
        << " CUDA vector; got " << bias.str();
  run_gemm(a, b, c, alpha, beta, ep, bias);
}

void set_gemm_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool gemm_allow_tf32() { return g_allow_tf32.load(); }

}  // namespace px::gpu

// The only cuBLASLt wrapper: row-major batched GEMM with transposed-view operands and strided (or
// broadcast) batches, a heuristics/plan cache, a per-(device, stream) workspace, and optional epilogues.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace px::gpu {

// What cuBLASLt applies to the product before it is written (see gemm_epilogue).
enum class GemmEpilogue : uint8_t { none, bias, relu, bias_relu, gelu, bias_gelu };

// c = alpha * a @ b + beta * c, Backend::gemm's contract: a (B, M, K) or (M, K), b (B, K, N) or (K, N),
// c (B, M, N) or (M, N) contiguous; a, b with a unit stride in one of their last two dims (other
// layouts are first copied contiguous); batch strides may be 0. f32/bf16/f16 use cuBLASLt with f32
// compute (TF32 tensor cores only after set_gemm_allow_tf32(true)); f64 uses cublasDgemmStridedBatched.
void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta);

// For fused layers (not used by Backend yet): c = epilogue(alpha * a @ b + beta * c [+ bias]) where
// bias is a contiguous (N) vector of c's dtype added to every row; relu is max(0, .); gelu is
// cuBLASLt's tanh approximation 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))) — NOT the exact erf
// form of UnaryOp::gelu, so use it only where the approximation is intended. f32/bf16/f16 only.
void gemm_epilogue(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta, GemmEpilogue ep,
                   const Tensor& bias);

// Allows TF32 tensor cores for f32 GEMMs (faster, ~10-bit mantissa products). Off by default.
void set_gemm_allow_tf32(bool allow);
bool gemm_allow_tf32();

// Bytes of the cuBLASLt workspace given to each (device, stream).
constexpr size_t kGemmWorkspaceBytes = 32u << 20;

}  // namespace px::gpu

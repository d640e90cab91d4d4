// The narrow per-device compute interface every op goes through; CPU and CUDA implement it.
// Kernels take Tensors: inputs may be strided views, outputs are written as described per call.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace px {

// y = f(x; alpha). Scalar ops (add_scalar: x + alpha, mul_scalar: alpha * x, pow: x^alpha).
enum class UnaryOp : uint8_t { neg, exp, log, sqrt, relu, gelu, tanh, sigmoid, add_scalar, mul_scalar, pow };
// out = a op b; comparisons write bool.
enum class BinaryOp : uint8_t { add, sub, mul, div, maximum, minimum, eq, ne, lt, le, gt, ge };
enum class ReduceOp : uint8_t { sum, max, min, argmax };

inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

// One tensor of a multi-tensor AdamW step (Backend::adamw). Its target is `master` when defined (a bf16/f16
// parameter's f32 master weights), else `param` itself; grad and both moments have the target's dtype. All
// contiguous, of one shape and on one device.
struct AdamWSlot {
  Tensor param;       // (N) f32 or f64 (the target), or bf16/f16: overwritten with the updated master, rounded
  Tensor grad;        // (N) the target's dtype (master_dtype of param)
  Tensor exp_avg;     // (N) m, updated in place
  Tensor exp_avg_sq;  // (N) v, updated in place
  Tensor master;      // (N) f32 master of a bf16/f16 param; undefined for f32/f64 params
  double step_size;   // lr / (1 - b1^t): per slot, as parameters have their own lr and step count t
  double bc2_sqrt;    // sqrt(1 - b2^t)
  double decay;       // 1 - lr * weight_decay
};
// CHECK-fails, naming `what` and the slot, unless `s` is as AdamWSlot describes (any one device).
void check_adamw_slot(const AdamWSlot& s, size_t index, const char* what);

// The window geometry of a 2-d convolution or pooling over images (B, C, H, W): output (oh, ow) and kernel tap
// (i, j) read input row oh * stride_h - pad_h + i * dilation_h and column ow * stride_w - pad_w + j * dilation_w.
struct ConvGeometry {
  int64_t channels = 0, height = 0, width = 0;  // C, H, W of one image
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;

  // floor((H + 2 pad - dilation (kernel - 1) - 1) / stride) + 1, as torch (no ceil mode).
  int64_t out_h() const { return (height + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  int64_t col_rows() const { return channels * kernel_h * kernel_w; }  // C kh kw
  int64_t out_area() const { return out_h() * out_w(); }  // OH OW
};
// CHECK-fails, naming `what`, unless g has positive sizes, kernel, stride and dilation, non-negative padding and
// an output of at least one row and column.
void check_conv_geometry(const ConvGeometry& g, const char* what);
// CHECK-fails, naming `what`, unless image (B, C, H, W) and col (C kh kw, B, OH OW) fit g, share a dtype and a
// device and are contiguous.
void check_im2col_args(const Tensor& image, const Tensor& col, const ConvGeometry& g, const char* what);
// CHECK-fails, naming `what`, unless x (B, C, H, W) and y (B, C, OH, OW) fit g and share a dtype, indices is i64
// shaped like y, and all are contiguous on one device.
// CHECK-fails, naming `what`, unless x is a contiguous float (N, C, L), every defined tensor of `same_shape` is x's
// shape and dtype, of `params` a (C) of x's dtype and of `stats` a (C) of master_dtype(x), all contiguous on x's
// device (the batch norm kernels' operands).
void check_channel_args(const Tensor& x, std::initializer_list<const Tensor*> same_shape,
                        std::initializer_list<const Tensor*> params, std::initializer_list<const Tensor*> stats,
                        const char* what);
void check_max_pool_args(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g,
                         const char* what);

class Backend {
 public:
  virtual ~Backend() = default;

  // dst = src elementwise, converting dtypes; equal shapes, both may be strided.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  // dst[...] = value (dst may be strided).
  virtual void fill(const Tensor& dst, double value) = 0;
  // out = uniform[lo, hi) or normal(mean, std) from Philox4x32-10 keyed by seed, element i
  // drawing from counter offset + i, so every device gives the same numbers. out contiguous.
  virtual void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) = 0;
  virtual void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) = 0;

  // out = op(x; alpha); x strided, out contiguous with x's shape.
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) = 0;
  // gx = gy * d op(x; alpha)/dx, given x and y = op(x); all contiguous, same shape.
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                              const Tensor& gx, double alpha) = 0;
  // out = a op b; a, b strided views already expanded to out's shape; out contiguous.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = cond ? a : b; all expanded to out's shape; cond bool; out contiguous.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = reduce of x over the dims where out has size 1 and x does not (out keeps x's ndim,
  // contiguous); argmax needs exactly one reduced dim and writes i64.
  virtual void reduce(ReduceOp op, const Tensor& x, const Tensor& out) = 0;

  // c = alpha * a @ b + beta * c for every batch: a (B, M, K), b (B, K, N), c (B, M, N) contiguous.
  // a and b have a unit stride in one of their last two dims (a transposed view is fine);
  // a batch stride of 0 broadcasts.
  virtual void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) = 0;

  // Over the last dim of contiguous (R, C) tensors: y = softmax(x) or log_softmax(x).
  virtual void softmax(const Tensor& x, const Tensor& y, bool log) = 0;
  // gx = y * (gy - sum(gy * y)) for softmax; gx = gy - exp(y) * sum(gy) for log_softmax.
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) = 0;

  // y = (x - mean) * rstd * w + b over the last dim; x, y (R, C); w, b (C) or undefined;
  // mean, rstd (R) f32/f64 statistics kept for backward.
  virtual void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                         const Tensor& mean, const Tensor& rstd) = 0;
  // gx (R, C); gw, gb (C) or undefined: written, not accumulated.
  virtual void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                                  const Tensor& gy, const Tensor& gx, const Tensor& gw, const Tensor& gb) = 0;

  // col (C kh kw, B, OH OW) from x (B, C, H, W): row (c, i, j), column (b, oh, ow) holds
  // x[b, c, oh sh - ph + i dh, ow sw - pw + j dw], 0 where that lies outside the image: the images of a batch side
  // by side, so one GEMM covers them all. Contiguous, one dtype.
  virtual void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) = 0;
  // The adjoint of im2col: x[b, c, h, w] = the sum of the col entries im2col reads from (b, c, h, w), 0 where none
  // does; x written, not accumulated. Contiguous, one dtype.
  virtual void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) = 0;

  // y (B, C, OH, OW) = the max of x (B, C, H, W) over each window of g, padding counting as -inf; a NaN wins.
  // indices (i64, y's shape) = h W + w of the window's first maximum (row-major window order; a later NaN replaces
  // it), or of its first position inside the image when every value is -inf. All contiguous.
  virtual void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) = 0;

  // Over x (N, C, L), per channel c with M = N L elements: mean_c and the biased var_c = sum (x - mean_c)^2 / M.
  // mean, var (C) in the statistics dtype, master_dtype(x): f32, f64 for f64. Contiguous.
  virtual void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) = 0;
  // y = x * scale_c + shift_c over x, y (N, C, L) of one dtype; scale, shift (C) in the statistics dtype, shift
  // undefined for 0. Contiguous; y may be x.
  virtual void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) = 0;
  // Over x, gy (N, C, L) with xhat = (x - mean_c) invstd_c, M = N L: gb_c = sum gy, gw_c = sum gy xhat, and
  // gx = w_c invstd_c (gy - (gb_c + xhat gw_c) / M) when batch_stats (mean, invstd are x's own), else
  // gx = w_c invstd_c gy. w (C) x's dtype or undefined (1); mean, invstd (C) statistics dtype; gx (x's shape), gw, gb
  // (C) x's dtype, each optional, written. Contiguous.
  virtual void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean,
                                  const Tensor& invstd, bool batch_stats, const Tensor& gx, const Tensor& gw,
                                  const Tensor& gb) = 0;

  // out = x.index_select(dim, index): x contiguous, index i64 (L) in range, out contiguous.
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // out.index_add_(dim, index, src): out contiguous, src contiguous.
  virtual void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  // out = x.gather(dim, index): index i64 with out's shape; all contiguous.
  virtual void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // out.scatter_add_(dim, index, src): index and src share a shape; all contiguous.
  virtual void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) = 0;

  // y = x * keep_i / (1 - p) with keep_i = (uniform_i >= p) drawn from Philox(seed, offset + i):
  // the same call on the gradient regenerates the mask. x, y contiguous.
  virtual void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) = 0;

  // Over the last dim of contiguous x (R, C), 1 <= k <= C: each row's k largest values in descending order, ties
  // by lower column; NaN ranks above every number (torch.topk). values (R, k) x's dtype, indices i64 (R, k).
  virtual void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) = 0;

  // Fused log-softmax + NLL with label smoothing eps over logits (N, C), target i64 (N):
  // loss_n = lse_n - (1 - eps) x_{n,t} - eps/C sum_c x_{n,c}, 0 where target == ignore_index.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps,
                             const Tensor& loss, const Tensor& lse) = 0;
  // glogits_{n,c} = gloss_n * (softmax_{n,c} - q_{n,c}), q = (1 - eps) onehot(t) + eps/C; 0 rows for ignored.
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                      const Tensor& gloss, int64_t ignore_index, double eps,
                                      const Tensor& glogits) = 0;

  // AdamW over every slot (all on this backend's device) in torch's order, in the target's dtype:
  //   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  target = target * decay - step_size * m / (sqrt(v) / bc2_sqrt
  //   + eps);  param = round(master) for bf16/f16 params. One call per optimizer step and device.
  virtual void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) = 0;
};

// True when this build has CUDA and the machine a usable GPU; the first call registers the CUDA
// backend and allocator (or logs once why not). Cached; cheap after the first call.
bool cuda_available();

// A GPU this process sees (CUDA_VISIBLE_DEVICES applied), for console lines and the rank-to-GPU check.
struct GpuInfo {
  std::string name;  // "NVIDIA H200"
  int64_t memory_bytes = 0;
  int major = 0, minor = 0;  // compute capability
};
// Every visible GPU when cuda_available(), else none, with *why_none (when given) saying why in a few words.
std::vector<GpuInfo> visible_gpus(std::string* why_none = nullptr);
// Makes GPU `index` the current device of the calling thread (and the device new threads start on is still 0:
// threads that launch work use CudaDeviceGuard). CHECK-fails without CUDA.
void set_current_gpu(int index);

// The backend for a device; CHECK-fails for a device kind this build or machine lacks.
Backend& backend_for(Device device);
void register_backend(DeviceType type, Backend* backend);

}  // namespace px

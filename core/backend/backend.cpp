// The narrow per-device compute interface every op goes through; CPU and CUDA implement it.
// This file keeps the registry that maps a device kind to its backend and the argument checks shared by backends.
#include "core/backend/backend.h"

#include <cmath>
#include <utility>

#include "core/backend/cpu/cpu_backend.h"
#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {
Backend* g_backends[2] = {nullptr, nullptr};
}

void register_backend(DeviceType type, Backend* backend) { g_backends[static_cast<int>(type)] = backend; }

bool cuda_available() {
#ifdef PARALLAX_WITH_CUDA
  return init_cuda_backend();  // probes once and caches
#else
  static const bool logged = [] {
    LOG(INFO) << "CUDA: built without CUDA (PARALLAX_CUDA=OFF); running on the CPU";
    return true;
  }();
  (void)logged;
  return false;
#endif
}

#ifndef PARALLAX_WITH_CUDA
std::vector<GpuInfo> visible_gpus(std::string* why_none) {
  if (why_none != nullptr) *why_none = "built without CUDA (PARALLAX_CUDA=OFF)";
  return {};
}

void set_current_gpu(int index) { LOG(FATAL) << "set_current_gpu(" << index << "): built without CUDA"; }
#endif

void check_adamw_slot(const AdamWSlot& s, size_t index, const char* what) {
  CHECK(s.param.defined()) << what << ": slot " << index << ": param is undefined";
  const DType pt = s.param.dtype(), mt = master_dtype(pt);
  CHECK(pt == DType::f32 || pt == DType::f64 || pt == DType::bf16 || pt == DType::f16)
      << what << ": slot " << index << ": param " << s.param.str() << " must be f32, f64, bf16 or f16";
  CHECK_EQ(s.master.defined(), mt != pt) << what << ": slot " << index << ": param " << s.param.str()
                                         << (mt != pt ? " needs an f32 master" : " takes no master (it is its own)");
  const std::pair<const char*, const Tensor*> parts[] = {
      {"param", &s.param}, {"grad", &s.grad}, {"exp_avg", &s.exp_avg}, {"exp_avg_sq", &s.exp_avg_sq},
      {"master", &s.master}};
  for (const auto& [name, t] : parts) {
    if (t == &s.master && !s.master.defined()) continue;
    CHECK(t->defined()) << what << ": slot " << index << ": " << name << " is undefined";
    CHECK(t->shape() == s.param.shape() && t->device() == s.param.device() && t->is_contiguous())
        << what << ": slot " << index << ": " << name << " " << t->str() << " must be contiguous, shaped like and "
        << "on the device of param " << s.param.str();
    if (t != &s.param)
      CHECK(t->dtype() == mt) << what << ": slot " << index << ": " << name << " " << t->str() << " must be "
                              << dtype_name(mt) << " (the master dtype of param " << s.param.str() << ")";
  }
  CHECK(std::isfinite(s.step_size) && std::isfinite(s.decay) && s.bc2_sqrt > 0.0)
      << what << ": slot " << index << ": step_size " << s.step_size << ", bc2_sqrt " << s.bc2_sqrt << ", decay "
      << s.decay << ": finite coefficients and bc2_sqrt > 0 expected";
}

void check_conv_geometry(const ConvGeometry& g, const char* what) {
  CHECK(g.channels > 0 && g.height > 0 && g.width > 0)
      << what << ": images of C " << g.channels << ", H " << g.height << ", W " << g.width << " must be non-empty";
  CHECK(g.kernel_h > 0 && g.kernel_w > 0 && g.stride_h > 0 && g.stride_w > 0 && g.dilation_h > 0 && g.dilation_w > 0 &&
        g.pad_h >= 0 && g.pad_w >= 0)
      << what << ": kernel " << g.kernel_h << "x" << g.kernel_w << ", stride " << g.stride_h << "x" << g.stride_w
      << ", dilation " << g.dilation_h << "x" << g.dilation_w << " must be positive and padding " << g.pad_h << "x"
      << g.pad_w << " non-negative";
  CHECK(g.height + 2 * g.pad_h >= g.dilation_h * (g.kernel_h - 1) + 1 &&
        g.width + 2 * g.pad_w >= g.dilation_w * (g.kernel_w - 1) + 1)
      << what << ": a " << g.kernel_h << "x" << g.kernel_w << " kernel with dilation " << g.dilation_h << "x"
      << g.dilation_w << " does not fit a padded " << g.height << "x" << g.width << " image (padding " << g.pad_h
      << "x" << g.pad_w << ")";
}

void check_im2col_args(const Tensor& image, const Tensor& col, const ConvGeometry& g, const char* what) {
  check_conv_geometry(g, what);
  CHECK(image.defined() && col.defined()) << what << ": undefined image or col";
  CHECK(image.dim() == 4 && image.size(1) == g.channels && image.size(2) == g.height && image.size(3) == g.width)
      << what << ": image " << image.str() << " is not (B, " << g.channels << ", " << g.height << ", " << g.width
      << ")";
  CHECK(col.dim() == 3 && col.size(0) == g.col_rows() && col.size(1) == image.size(0) && col.size(2) == g.out_area())
      << what << ": col " << col.str() << " is not (" << g.col_rows() << ", " << image.size(0) << ", " << g.out_area()
      << ")";
  CHECK(image.dtype() == col.dtype() && image.device() == col.device())
      << what << ": image " << image.str() << " and col " << col.str() << " differ in dtype or device";
  CHECK(image.is_contiguous() && col.is_contiguous())
      << what << ": image " << image.str() << " and col " << col.str() << " must be contiguous";
}

void check_max_pool_args(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g,
                         const char* what) {
  check_conv_geometry(g, what);
  CHECK(x.defined() && y.defined() && indices.defined()) << what << ": undefined x, y or indices";
  CHECK(x.dim() == 4 && x.size(1) == g.channels && x.size(2) == g.height && x.size(3) == g.width)
      << what << ": x " << x.str() << " is not (B, " << g.channels << ", " << g.height << ", " << g.width << ")";
  const Shape out{x.size(0), g.channels, g.out_h(), g.out_w()};
  CHECK(y.shape() == out && indices.shape() == out)
      << what << ": y " << y.str() << " and indices " << indices.str() << " must be " << shape_str(out);
  CHECK(y.dtype() == x.dtype() && indices.dtype() == DType::i64)
      << what << ": y " << y.str() << " must have x's dtype and indices " << indices.str() << " be i64";
  CHECK(y.device() == x.device() && indices.device() == x.device() && x.is_contiguous() && y.is_contiguous() &&
        indices.is_contiguous())
      << what << ": x " << x.str() << ", y " << y.str() << " and indices " << indices.str()
      << " must be contiguous on one device";
}

void check_channel_args(const Tensor& x, std::initializer_list<const Tensor*> same_shape,
                        std::initializer_list<const Tensor*> params, std::initializer_list<const Tensor*> stats,
                        const char* what) {
  CHECK(x.defined() && x.dim() == 3 && is_floating(x.dtype()) && x.is_contiguous())
      << what << ": x must be a contiguous float (N, C, L), got " << (x.defined() ? x.str() : "undefined");
  const auto check = [&](const Tensor* t, const Shape& shape, DType dtype, const char* kind) {
    if (!t->defined()) return;
    CHECK(t->shape() == shape && t->dtype() == dtype && t->device() == x.device() && t->is_contiguous())
        << what << ": " << kind << " " << t->str() << " must be a contiguous " << dtype_name(dtype)
        << shape_str(shape) << " beside x " << x.str();
  };
  for (const Tensor* t : same_shape) check(t, x.shape(), x.dtype(), "tensor");
  for (const Tensor* t : params) check(t, {x.size(1)}, x.dtype(), "per-channel parameter");
  for (const Tensor* t : stats) check(t, {x.size(1)}, master_dtype(x.dtype()), "per-channel statistic");
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
  Backend* b = g_backends[static_cast<int>(device.type)];
  CHECK(b != nullptr) << "no backend for device " << device.str() << " (built without CUDA, or no GPU)";
  return *b;
}

}  // namespace px

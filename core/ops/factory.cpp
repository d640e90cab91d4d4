// Tensor creation and conversion: constants, random tensors, host vectors, dtype/device copies.
#include "core/ops/factory.h"

#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/ops/op_utils.h"

namespace px {

using detail::backend_of;

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_of(t).fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return full_like(t, 0.0); }
Tensor ones_like(const Tensor& t) { return full_like(t, 1.0); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

namespace {

// 0, 1, ..., n-1 as an i64 host tensor.
Tensor host_iota(int64_t n) {
  Tensor t = Tensor::empty({n}, DType::i64);
  int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  return t;
}

// An i64 iota (>= n elements) on a device, built once per device and size class (powers of two): arange on a GPU is
// then one device-side copy, not a host-to-device copy that waits for the stream (the causal mask, vocab-parallel
// cross-entropy). Outgrown buffers are kept: a copy on another stream may still read them. Never destroyed.
Tensor device_iota(int64_t n, Device device) {
  static std::mutex mu;
  static auto* cache = new std::map<std::pair<int, int>, std::vector<Tensor>>();
  std::lock_guard<std::mutex> lock(mu);
  std::vector<Tensor>& held = (*cache)[{static_cast<int>(device.type), device.index}];
  if (held.empty() || held.back().numel() < n) {
    int64_t size = held.empty() ? 1024 : held.back().numel();
    while (size < n) size *= 2;
    Tensor t = Tensor::empty({size}, DType::i64, device);
    backend_for(device).copy(host_iota(size), t);
    held.push_back(t);
  }
  return held.back();
}

}  // namespace

Tensor arange(int64_t n, DType dtype, Device device) {
  CHECK_GE(n, 0) << "arange: negative length " << n;
  if (device.is_cpu()) {
    const Tensor t = host_iota(n);
    if (dtype == DType::i64) return t;
    Tensor out = Tensor::empty({n}, dtype);
    backend_of(out).copy(t, out);
    return out;
  }
  Tensor out = Tensor::empty({n}, dtype, device);
  if (n > 0) backend_for(device).copy(device_iota(n, device).as_strided({n}, {1}, 0), out);
  return out;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_of(t).normal(t, gen.seed(), gen.take(t.numel()), 0.0, 1.0);
  return t;
}

Tensor rand(const Shape& shape, Generator& gen, double lo, double hi, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_of(t).uniform(t, gen.seed(), gen.take(t.numel()), lo, hi);
  return t;
}

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  CHECK_EQ(static_cast<int64_t>(values.size()), shape_numel(shape)) << "from_vector: shape " << shape_str(shape);
  Tensor src = Tensor::empty(shape, DType::f64);
  std::memcpy(src.raw_data(), values.data(), values.size() * sizeof(double));
  if (dtype == DType::f64) return src;
  Tensor out = Tensor::empty(shape, dtype);
  backend_of(out).copy(src, out);
  return out;
}

Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, DType dtype) {
  CHECK_EQ(static_cast<int64_t>(values.size()), shape_numel(shape)) << "from_vector: shape " << shape_str(shape);
  Tensor src = Tensor::empty(shape, DType::i64);
  std::memcpy(src.raw_data(), values.data(), values.size() * sizeof(int64_t));
  if (dtype == DType::i64) return src;
  Tensor out = Tensor::empty(shape, dtype);
  backend_of(out).copy(src, out);
  return out;
}

std::vector<double> to_vector(const Tensor& t) {
  Tensor host = Tensor::empty(t.shape(), DType::f64);
  backend_of(t.device().is_cpu() ? host : t).copy(t, host);
  std::vector<double> v(host.numel());
  std::memcpy(v.data(), host.raw_data(), v.size() * sizeof(double));
  return v;
}

// y = x converted; dL/dx = dL/dy converted back to x's dtype and device.
static Tensor convert(const Tensor& x, DType dtype, Device device, const char* name) {
  Tensor y = Tensor::empty(x.shape(), dtype, device);
  backend_for(device.is_cpu() ? x.device() : device).copy(x, y);
  if (autograd::any_requires_grad({&x})) {
    CHECK(is_floating(dtype)) << name << ": a differentiable conversion needs a floating target dtype";
    const DType in_dtype = x.dtype();
    const Device in_device = x.device();
    autograd::attach(y, name, {x}, [in_dtype, in_device, name](const Tensor& g) {
      return std::vector<Tensor>{convert(g, in_dtype, in_device, name)};
    });
  }
  return y;
}

Tensor to_dtype(const Tensor& t, DType dtype) { return convert(t, dtype, t.device(), "ToDtypeBackward"); }
Tensor to_device(const Tensor& t, Device device) { return convert(t, t.dtype(), device, "ToDeviceBackward"); }
Tensor clone(const Tensor& t) { return convert(t, t.dtype(), t.device(), "CloneBackward"); }

}  // namespace px

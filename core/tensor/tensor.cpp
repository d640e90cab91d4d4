// Tensor: a ref-counted handle to storage + shape + strides + offset + dtype, with the
// autograd fields (requires_grad, grad, grad_fn, hooks). Views share storage; nothing here differentiates.
#include "core/tensor/tensor.h"

#include "core/util/error.h"

namespace px {

namespace {
Tensor contiguous_over(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) CHECK_GE(s, 0) << "negative size in shape " << shape_str(shape);
  return contiguous_over(std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device), shape, dtype);
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  for (int64_t s : shape) CHECK_GE(s, 0) << "negative size in shape " << shape_str(shape);
  return contiguous_over(Storage::pinned_host(shape_numel(shape) * dtype_size(dtype)), shape, dtype);
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " " + device().str();
}

double Tensor::item() const {
  CHECK_EQ(numel(), 1) << "item() on a tensor of shape " << shape_str(shape());
  CHECK(device().is_cpu()) << "item() needs a host tensor; got " << device().str();
  return dispatch_dtype(dtype(), [&](auto t) {
    using T = decltype(t);
    return to_double(*static_cast<const T*>(raw_data()));
  });
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  CHECK_EQ(shape.size(), strides.size());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const { return as_strided(shape(), strides(), offset()); }

Tensor& Tensor::set_requires_grad(bool value) {
  if (!is_leaf()) throw AutogradError("set_requires_grad on a non-leaf tensor " + str());
  if (value && !is_floating(dtype()))
    throw AutogradError(std::string("only floating tensors can require grad; got ") + dtype_name(dtype()));
  impl_->requires_grad = value;
  return *this;
}

void Tensor::register_grad_ready_hook(GradHook hook) const {
  CHECK(is_leaf() && requires_grad()) << "grad-ready hooks go on leaves that require grad; " << str();
  impl_->grad_ready_hooks.push_back(std::move(hook));
}

}  // namespace px

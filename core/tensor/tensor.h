// Tensor: a ref-counted handle to storage + shape + strides + offset + dtype, with the
// autograd fields (requires_grad, grad, grad_fn, hooks). Views share storage; nothing here differentiates.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/dtype.h"
#include "core/tensor/shape.h"
#include "core/tensor/storage.h"
#include "core/util/check.h"

namespace px {

namespace autograd {
class Node;
}
class Tensor;

using GradHook = std::function<void(const Tensor& grad)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;

  // autograd
  bool requires_grad = false;
  std::shared_ptr<autograd::Node> grad_fn;  // null for leaves
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::weak_ptr<autograd::Node> grad_accumulator;  // the leaf's AccumulateGrad node
  std::vector<GradHook> grad_ready_hooks;  // run after the leaf's grad is accumulated
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Uninitialised contiguous tensor.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = cpu());
  // Uninitialised contiguous host tensor in page-locked memory, which a GPU copies from asynchronously; ordinary
  // host memory (is_pinned() false) where no GPU backend registered the pinned allocator. Allocate and free it on
  // a thread whose current GPU is the process's (CudaDeviceGuard): CUDA opens a context on the current device.
  static Tensor empty_pinned(const Shape& shape, DType dtype = DType::f32);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t d) const { return impl_->shape[wrap_dim(d, dim())]; }
  int64_t stride(int64_t d) const { return impl_->strides[wrap_dim(d, dim())]; }
  int64_t numel() const { return shape_numel(impl_->shape); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  bool is_contiguous() const;
  bool is_pinned() const { return impl_->storage->pinned(); }
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
  uint64_t version() const { return impl_->storage->version(); }
  void bump_version() const { impl_->storage->bump_version(); }
  std::string str() const;  // "f32(2, 3) cpu"

  // Pointer to the first element (storage + offset). T must match dtype().
  template <typename T>
  T* data() const {
    CHECK(dtype_of<T>::value == dtype())
        << "data<" << dtype_name(dtype_of<T>::value) << ">() on a " << dtype_name(dtype()) << " tensor";
    return static_cast<T*>(impl_->storage->data()) + impl_->offset;
  }
  void* raw_data() const {
    return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(dtype());
  }
  // Value of a one-element tensor on the host, converted to double.
  double item() const;

  // A new tensor over the same storage (no autograd link): the primitive behind every view.
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  // Same data, no grad_fn, requires_grad false; shares storage and version counter.
  Tensor detach() const;

  // autograd fields
  bool requires_grad() const { return impl_->requires_grad; }
  // Only on leaves (tensors without grad_fn); a float dtype is required.
  Tensor& set_requires_grad(bool value = true);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl_->grad_fn; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) const { impl_->grad = g.impl_; }
  // Hook run by the engine right after this leaf's gradient has been accumulated.
  void register_grad_ready_hook(GradHook hook) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace px

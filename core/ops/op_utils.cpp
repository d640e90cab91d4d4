// Helpers shared by the op files (not part of the public API): backend lookup, raw views
// without autograd, argument checks that name the op.
#include "core/ops/op_utils.h"

#include <algorithm>

#include "core/ops/index_check.h"
#include "core/util/error.h"

namespace px::detail {

Tensor expand_raw(const Tensor& t, const Shape& shape) {
  const int64_t nd = static_cast<int64_t>(shape.size()), td = t.dim();
  CHECK_GE(nd, td) << "cannot expand " << t.str() << " to " << shape_str(shape);
  Shape strides(nd, 0);
  for (int64_t i = 0; i < td; ++i) {
    const int64_t o = i + nd - td;
    if (t.shape()[i] == shape[o]) {
      strides[o] = t.strides()[i];
    } else {
      CHECK_EQ(t.shape()[i], 1) << "cannot expand " << t.str() << " to " << shape_str(shape);
    }
  }
  return t.as_strided(shape, strides, t.offset());
}

Tensor contiguous_raw(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = empty_like(t);
  backend_of(t).copy(t, out);
  return out;
}

Tensor batch1_raw(const Tensor& t) {
  CHECK_EQ(t.dim(), 2);
  return t.as_strided({1, t.size(0), t.size(1)}, {0, t.stride(0), t.stride(1)}, t.offset());
}

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void check_defined(const Tensor& t, const char* op, const char* arg) {
  CHECK(t.defined()) << op << ": argument " << arg << " is undefined";
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  CHECK(a.dtype() == b.dtype()) << op << ": dtype mismatch " << a.str() << " vs " << b.str();
  CHECK(a.device() == b.device()) << op << ": device mismatch " << a.str() << " vs " << b.str();
}

void check_floating(const Tensor& t, const char* op) {
  CHECK(is_floating(t.dtype())) << op << ": needs a floating tensor, got " << t.str();
}

Tensor checked_indices(const Tensor& ids, int64_t bound, const char* op, const int64_t* ignore_value) {
  CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32) << op << ": ids must be i32 or i64, got " << ids.str();
  Tensor idx = ids;
  if (ids.dtype() != DType::i64 || !ids.is_contiguous()) {
    idx = Tensor::empty(ids.shape(), DType::i64, ids.device());
    backend_of(ids).copy(ids, idx);
  }
  if (idx.numel() == 0) return idx;
  // Device ids the caller checked on the host (HostCheckedIndicesGuard): no read-back, no host sync.
  if (!ids.device().is_cpu() && !device_index_checks_enabled()) return idx;
  Tensor checked = idx;
  if (ignore_value != nullptr) {  // replace ignored ids by 0 for the range check
    Tensor ign = Tensor::empty({}, DType::i64, ids.device());
    backend_of(ids).fill(ign, static_cast<double>(*ignore_value));
    Tensor mask = Tensor::empty(idx.shape(), DType::boolean, ids.device());
    backend_of(ids).binary(BinaryOp::eq, idx, expand_raw(ign, idx.shape()), mask);
    Tensor zero = Tensor::empty({}, DType::i64, ids.device());
    backend_of(ids).fill(zero, 0);
    checked = empty_like(idx);
    backend_of(ids).where(mask, expand_raw(zero, idx.shape()), idx, checked);
  }
  // The min and the max side by side, so that a device tensor's check reads the host once.
  const Shape ones(idx.dim(), 1);
  Shape pair_shape = ones;
  pair_shape.insert(pair_shape.begin(), 2);
  const Tensor lo_hi = Tensor::empty(pair_shape, DType::i64, ids.device());
  backend_of(ids).reduce(ReduceOp::min, checked, lo_hi.as_strided(ones, ones, 0));
  backend_of(ids).reduce(ReduceOp::max, checked, lo_hi.as_strided(ones, ones, 1));
  Tensor host = lo_hi;
  if (!ids.device().is_cpu()) {
    host = Tensor::empty(pair_shape, DType::i64);
    backend_of(ids).copy(lo_hi, host);
  }
  const int64_t mn = host.data<int64_t>()[0], mx = host.data<int64_t>()[1];
  if (mn < 0 || mx >= bound) {
    throw Error(std::string(op) + ": index " + std::to_string(mn < 0 ? mn : mx) + " out of range [0, " +
                std::to_string(bound) + ")");
  }
  return idx;
}

}  // namespace px::detail

// The harness behind the backend op table: the reference kernels (and CUDA's) behind the Backend interface,
// guarded operand buffers, and run_case, which runs one case on a backend and compares it with the reference.
#include "tests/backend/op_harness.h"

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <utility>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/reference_kernels.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_kernels.h"
#endif

namespace px::test {
namespace {

// The CPU reference kernels (core/backend/cpu/reference_*.cpp) as a Backend: the oracle of every case.
class ReferenceBackend final : public Backend {
 public:
  void copy(const Tensor& src, const Tensor& dst) override { ref::copy(src, dst); }
  void fill(const Tensor& dst, double value) override { ref::fill(dst, value); }
  void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) override {
    ref::uniform(out, seed, offset, lo, hi);
  }
  void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) override {
    ref::normal(out, seed, offset, mean, std);
  }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) override { ref::unary(op, x, out, alpha); }
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                      double alpha) override {
    ref::unary_backward(op, x, y, gy, gx, alpha);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override { ref::binary(op, a, b, out); }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    ref::where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override { ref::reduce(op, x, out); }
  void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) override {
    ref::gemm(a, b, c, alpha, beta);
  }
  void softmax(const Tensor& x, const Tensor& y, bool log) override { ref::softmax(x, y, log); }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    ref::softmax_backward(y, gy, gx, log);
  }
  void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                 const Tensor& rstd) override {
    ref::layernorm(x, w, b, eps, y, mean, rstd);
  }
  void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                          const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    ref::layernorm_backward(x, w, mean, rstd, gy, gx, gw, gb);
  }
  void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) override { ref::im2col(x, col, g); }
  void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) override { ref::col2im(col, x, g); }
  void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) override {
    ref::max_pool2d(x, y, indices, g);
  }
  void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) override {
    ref::batchnorm_stats(x, mean, var);
  }
  void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) override {
    ref::channel_affine(x, scale, shift, y);
  }
  void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                          bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    ref::batchnorm_backward(x, gy, w, mean, invstd, batch_stats, gx, gw, gb);
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    ref::index_select(x, dim, index, out);
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    ref::index_add(out, dim, index, src);
  }
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    ref::gather(x, dim, index, out);
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    ref::scatter_add(out, dim, index, src);
  }
  void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) override {
    ref::dropout(x, y, p, seed, offset);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                     const Tensor& lse) override {
    ref::cross_entropy(logits, target, ignore_index, eps, loss, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                              int64_t ignore_index, double eps, const Tensor& glogits) override {
    ref::cross_entropy_backward(logits, target, lse, gloss, ignore_index, eps, glogits);
  }
  void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) override {
    ref::topk(x, k, values, indices);
  }
  void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) override {
    ref::adamw(slots, beta1, beta2, eps);
  }
};

ReferenceBackend& reference_backend() {
  static ReferenceBackend backend;
  return backend;
}

// The CPU's float kernels take every float dtype (bf16/f16 through f32 stand-ins, F32Stage); its integer-capable
// ones add i32/i64 (and bool/u8 where noted in cpu_*.cpp); its copies and byte-moving index kernels take every dtype.
bool cpu_supports(OpFamily f, DType t) {
  switch (f) {
    case OpFamily::copy:
    case OpFamily::fill:
    case OpFamily::where:
    case OpFamily::index_select:
    case OpFamily::gather: return true;
    case OpFamily::gemm_epilogue: return false;
    case OpFamily::binary:
    case OpFamily::reduce:
    case OpFamily::index_add:
    case OpFamily::scatter_add: return t != DType::u8 && t != DType::boolean;
    default: return is_floating(t);
  }
}

#ifdef PARALLAX_WITH_CUDA

using gpu::Impl;

// The families with a plain Impl::reference kernel beside the optimised CUDA one.
bool has_cuda_reference(OpFamily f) {
  switch (f) {
    case OpFamily::fill:
    case OpFamily::uniform:
    case OpFamily::normal:
    case OpFamily::dropout:
    case OpFamily::unary_backward:
    case OpFamily::where:
    case OpFamily::gemm_epilogue: return false;
    default: return true;
  }
}

// A 2-d GEMM operand as the (1, R, C) batch gemm_reference takes.
Tensor batch_of_one(const Tensor& t) {
  if (t.dim() == 3) return t;
  return t.as_strided({1, t.size(0), t.size(1)}, {0, t.stride(0), t.stride(1)}, t.offset());
}

// CUDA's Impl::reference kernels behind the Backend interface; the families without one run the fast
// kernel (has_cuda_reference keeps them out of this backend's rows).
class CudaReferenceBackend final : public Backend {
 public:
  void copy(const Tensor& src, const Tensor& dst) override {
    if (src.device().is_cpu() || dst.device().is_cpu()) return cuda_backend().copy(src, dst);  // host staging
    gpu::copy(src, dst, Impl::reference);
  }
  void fill(const Tensor& dst, double value) override { gpu::fill(dst, value); }
  void uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) override {
    gpu::uniform(out, seed, offset, lo, hi);
  }
  void normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) override {
    gpu::normal(out, seed, offset, mean, std);
  }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) override {
    gpu::unary(op, x, out, alpha, Impl::reference);
  }
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                      double alpha) override {
    gpu::unary_backward(op, x, y, gy, gx, alpha);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    gpu::binary(op, a, b, out, Impl::reference);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    gpu::where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override { gpu::reduce(op, x, out, Impl::reference); }
  void gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) override {
    gpu::gemm_reference(batch_of_one(a), batch_of_one(b), batch_of_one(c), alpha, beta);
  }
  void softmax(const Tensor& x, const Tensor& y, bool log) override { gpu::softmax(x, y, log, Impl::reference); }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    gpu::softmax_backward(y, gy, gx, log, Impl::reference);
  }
  void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                 const Tensor& rstd) override {
    gpu::layernorm(x, w, b, eps, y, mean, rstd, Impl::reference);
  }
  void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                          const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    gpu::layernorm_backward(x, w, mean, rstd, gy, gx, gw, gb, Impl::reference);
  }
  void im2col(const Tensor& x, const Tensor& col, const ConvGeometry& g) override {
    gpu::im2col(x, col, g, Impl::reference);
  }
  void col2im(const Tensor& col, const Tensor& x, const ConvGeometry& g) override {
    gpu::col2im(col, x, g, Impl::reference);
  }
  void max_pool2d(const Tensor& x, const Tensor& y, const Tensor& indices, const ConvGeometry& g) override {
    gpu::max_pool2d(x, y, indices, g, Impl::reference);
  }
  void batchnorm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) override {
    gpu::batchnorm_stats(x, mean, var, Impl::reference);
  }
  void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) override {
    gpu::channel_affine(x, scale, shift, y, Impl::reference);
  }
  void batchnorm_backward(const Tensor& x, const Tensor& gy, const Tensor& w, const Tensor& mean, const Tensor& invstd,
                          bool batch_stats, const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    gpu::batchnorm_backward(x, gy, w, mean, invstd, batch_stats, gx, gw, gb, Impl::reference);
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    gpu::index_select(x, dim, index, out, Impl::reference);
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    gpu::index_add(out, dim, index, src, Impl::reference);
  }
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    gpu::gather(x, dim, index, out, Impl::reference);
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    gpu::scatter_add(out, dim, index, src, Impl::reference);
  }
  void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) override {
    gpu::dropout(x, y, p, seed, offset);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps, const Tensor& loss,
                     const Tensor& lse) override {
    gpu::cross_entropy(logits, target, ignore_index, eps, loss, lse, Impl::reference);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& gloss,
                              int64_t ignore_index, double eps, const Tensor& glogits) override {
    gpu::cross_entropy_backward(logits, target, lse, gloss, ignore_index, eps, glogits, Impl::reference);
  }
  void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) override {
    gpu::topk(x, k, values, indices, Impl::reference);
  }
  void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps) override {
    gpu::adamw(slots, beta1, beta2, eps, Impl::reference);
  }
};

#endif  // PARALLAX_WITH_CUDA

// ---- operand buffers ----

constexpr int64_t kGuard = 32;       // sentinel elements before and after every operand's stored region
constexpr uint8_t kSentinel = 0xA5;  // their bytes, and the poison of non-float outputs

// An operand's whole buffer, (kGuard + stored + kGuard) elements, and the view the op sees.
struct Placed {
  Tensor buffer;
  Tensor view;  // undefined for absent operands
};

// The stored shape of an operand and the view's strides over it, per its layout.
std::pair<Shape, Shape> stored_and_strides(const Operand& o) {
  const int64_t nd = static_cast<int64_t>(o.shape.size());
  Shape stored = o.shape, strides;
  switch (o.layout) {
    case Layout::contiguous: strides = contiguous_strides(stored); break;
    case Layout::transposed:
      CHECK_GE(nd, 2) << "operand " << o.name << ": a transposed layout needs two dims";
      std::swap(stored[nd - 1], stored[nd - 2]);
      strides = contiguous_strides(stored);
      std::swap(strides[nd - 1], strides[nd - 2]);
      break;
    case Layout::padded:
      CHECK_GE(nd, 1) << "operand " << o.name << ": a padded layout needs a dim";
      stored[nd - 1] += kRowPadding;
      strides = contiguous_strides(stored);
      break;
    case Layout::broadcast:
      CHECK_EQ(static_cast<int64_t>(o.stored.size()), nd) << "operand " << o.name << ": stored shape's ndim";
      stored = o.stored;
      strides = contiguous_strides(stored);
      for (int64_t d = 0; d < nd; ++d) {
        CHECK(stored[d] == o.shape[d] || stored[d] == 1)
            << "operand " << o.name << ": cannot broadcast " << shape_str(stored) << " to " << shape_str(o.shape);
        if (stored[d] != o.shape[d]) strides[d] = 0;
      }
      break;
  }
  return {stored, strides};
}

Placed allocate(const Operand& o, Device device) {
  if (o.role == Role::absent) return {};
  const auto [stored, strides] = stored_and_strides(o);
  const Tensor buffer = Tensor::empty({2 * kGuard + shape_numel(stored)}, o.dtype, device);
  return {buffer, buffer.as_strided(o.shape, strides, kGuard)};
}

// dst = src for buffers of one shape and dtype on any two devices.
void transfer(const Tensor& src, const Tensor& dst) {
  backend_for(src.device().is_cpu() ? dst.device() : src.device()).copy(src, dst);
}

Placed placed_copy(const Placed& from, const Operand& o, Device device) {
  Placed to = allocate(o, device);
  if (to.buffer.defined()) transfer(from.buffer, to.buffer);
  return to;
}

// The host operand before the op: sentinels everywhere, then drawn values (inputs) or poison (float outputs)
// over the stored region.
Placed initial(const Operand& o, std::mt19937& gen) {
  Placed p = allocate(o, cpu());
  if (!p.buffer.defined()) return p;
  const int64_t total = p.buffer.numel(), bytes = total * static_cast<int64_t>(dtype_size(o.dtype));
  std::memset(p.buffer.raw_data(), kSentinel, bytes);
  if (o.role == Role::output) {
    if (is_floating(o.dtype))
      for (int64_t i = kGuard; i < total - kGuard; ++i) ref::store(p.buffer, i, std::nan(""));
    return p;
  }
  std::uniform_real_distribution<double> uniform(o.lo, o.hi);
  std::uniform_int_distribution<int64_t> integer(0, std::max<int64_t>(0, static_cast<int64_t>(o.hi) - 1));
  std::bernoulli_distribution coin(0.5);
  for (int64_t i = kGuard; i < total - kGuard; ++i) {
    double v = 0;
    switch (o.draw) {
      case Draw::uniform: v = uniform(gen); break;
      case Draw::index:
      case Draw::labels: v = static_cast<double>(integer(gen)); break;
      case Draw::mask: v = coin(gen) ? 1.0 : 0.0; break;
    }
    ref::store(p.buffer, i, v);
  }
  if (o.draw == Draw::labels && p.view.numel() > 1) {
    ref::store(p.view, 1, o.lo);
    ref::store(p.view, p.view.numel() - 1, o.lo);
  }
  return p;
}

// Element offsets into the buffer of every element of the view.
std::vector<int64_t> view_offsets(const Tensor& view) {
  std::vector<int64_t> offs(view.numel());
  for (int64_t p = 0; p < view.numel(); ++p) {
    int64_t rem = p, off = view.offset();
    for (int64_t d = view.dim() - 1; d >= 0; --d) {
      off += (rem % view.size(d)) * view.stride(d);
      rem /= view.size(d);
    }
    offs[p] = off;
  }
  return offs;
}

// Problems found in one operand after the op, appended to `out`.
void check_operand(const Operand& o, const Placed& before, const Placed& after, const Placed& expected, bool exact,
                   std::ostringstream& out) {
  if (o.role == Role::absent) return;
  const bool written = o.role == Role::output || o.role == Role::in_out;
  const int64_t total = before.buffer.numel(), es = static_cast<int64_t>(dtype_size(o.dtype));
  std::vector<bool> covered(total, false);
  if (written)
    for (int64_t off : view_offsets(after.view)) covered[off] = true;
  const auto* b0 = static_cast<const uint8_t*>(before.buffer.raw_data());
  const auto* b1 = static_cast<const uint8_t*>(after.buffer.raw_data());
  int64_t changed = 0, first = -1;
  for (int64_t e = 0; e < total; ++e)
    if (!covered[e] && std::memcmp(b0 + e * es, b1 + e * es, es) != 0) {
      ++changed;
      if (first < 0) first = e;
    }
  if (changed > 0) {
    const char* where = first < kGuard            ? "the guard before it"
                        : first >= total - kGuard ? "the guard after it"
                                                  : "a gap inside it";
    out << "; " << o.name << ": " << changed << " element(s) outside what the op may write changed, first " << first
        << " of the buffer (" << where << ")";
  }
  if (!written) return;

  const Tensor& a = after.view;
  const Tensor& r = expected.view;
  exact = exact || !is_floating(o.dtype);
  if (o.dtype == DType::boolean)
    for (int64_t off : view_offsets(a))
      if (b1[off] > 1) {
        out << "; " << o.name << ": byte " << int(b1[off]) << " at buffer element " << off << " is not a bool";
        return;
      }
  double err = 0, norm = 0;
  int64_t bad = 0, first_bad = -1;
  for (int64_t p = 0; p < a.numel(); ++p) {
    const double av = ref::load(a, p), rv = ref::load(r, p);
    const bool same_special = !std::isfinite(rv) && (std::isnan(rv) ? std::isnan(av) : av == rv);
    const bool mismatch = std::isfinite(rv) ? (!std::isfinite(av) || (exact && av != rv)) : !same_special;
    if (mismatch) {
      if (first_bad < 0) first_bad = p;
      ++bad;
    } else if (std::isfinite(rv)) {
      err += (av - rv) * (av - rv);
      norm += rv * rv;
    }
  }
  if (bad > 0) {
    out << "; " << o.name << ": " << bad << " of " << a.numel() << " element(s) "
        << (exact ? "differ from the reference"
                  : "are NaN/Inf where the reference is finite, or finite where it is not")
        << ", first at " << first_bad << ": " << ref::load(a, first_bad) << " vs " << ref::load(r, first_bad);
    return;
  }
  const double nmse = norm > 0 ? err / norm : err;
  if (!exact && nmse > max_nmse(o.dtype)) {
    int64_t worst = 0;
    double worst_err = -1;
    for (int64_t p = 0; p < a.numel(); ++p) {
      const double d = std::fabs(ref::load(a, p) - ref::load(r, p));
      if (d > worst_err) {
        worst_err = d;
        worst = p;
      }
    }
    out << "; " << o.name << ": NMSE " << nmse << " > " << max_nmse(o.dtype) << " for " << dtype_name(o.dtype)
        << ", worst element " << worst << ": " << ref::load(a, worst) << " vs " << ref::load(r, worst);
  }
}

}  // namespace

const char* family_name(OpFamily family) {
  static const char* const names[kOpFamilies] = {"copy",           "fill",
                                                 "uniform",        "normal",
                                                 "dropout",        "unary",
                                                 "unary_backward", "binary",
                                                 "where",          "reduce",
                                                 "gemm",           "gemm_epilogue",
                                                 "softmax",        "softmax_backward",
                                                 "layernorm",      "layernorm_backward",
                                                 "im2col",         "col2im",
                                                 "max_pool2d",     "batchnorm_stats",
                                                 "channel_affine", "batchnorm_backward",
                                                 "index_select",   "index_add",
                                                 "gather",         "scatter_add",
                                                 "cross_entropy",  "cross_entropy_backward",
                                                 "topk",           "adamw"};
  return names[static_cast<int>(family)];
}

Operand Operand::in(std::string name, Shape shape, DType dtype) {
  Operand o;
  o.name = std::move(name);
  o.shape = std::move(shape);
  o.dtype = dtype;
  return o;
}
Operand Operand::out(std::string name, Shape shape, DType dtype) {
  Operand o = in(std::move(name), std::move(shape), dtype);
  o.role = Role::output;
  return o;
}
Operand Operand::in_out(std::string name, Shape shape, DType dtype) {
  Operand o = in(std::move(name), std::move(shape), dtype);
  o.role = Role::in_out;
  return o;
}
Operand Operand::index(std::string name, Shape shape, int64_t n) {
  Operand o = in(std::move(name), std::move(shape), DType::i64);
  o.draw = Draw::index;
  o.hi = static_cast<double>(n);
  return o;
}
Operand Operand::labels(std::string name, Shape shape, int64_t n, int64_t ignore_index) {
  Operand o = index(std::move(name), std::move(shape), n);
  o.draw = Draw::labels;
  o.lo = static_cast<double>(ignore_index);
  return o;
}
Operand Operand::mask(std::string name, Shape shape) {
  Operand o = in(std::move(name), std::move(shape), DType::boolean);
  o.draw = Draw::mask;
  return o;
}
Operand Operand::absent(std::string name) {
  Operand o;
  o.name = std::move(name);
  o.role = Role::absent;
  return o;
}
Operand Operand::range(double low, double high) && {
  lo = low;
  hi = high;
  return std::move(*this);
}
Operand Operand::as(Layout l) && {
  layout = l;
  return std::move(*this);
}
Operand Operand::broadcast_from(Shape stored_shape) && {
  layout = Layout::broadcast;
  stored = std::move(stored_shape);
  return std::move(*this);
}
Operand Operand::host() && {
  on_host = true;
  return std::move(*this);
}

BackendUnderTest cpu_under_test() { return {"cpu", cpu(), &cpu_backend(), cpu_supports}; }

#ifdef PARALLAX_WITH_CUDA
BackendUnderTest cuda_under_test() {
  return {"cuda", px::cuda(), &backend_for(px::cuda()),
          [](OpFamily f, DType t) { return f != OpFamily::gemm_epilogue || t != DType::f64; }};
}
BackendUnderTest cuda_reference_under_test() {
  static CudaReferenceBackend backend;
  return {"cuda-reference", px::cuda(), &backend, [](OpFamily f, DType) { return has_cuda_reference(f); }};
}
#endif

// Relative RMS errors of about 1e-10 (f64) and 1e-5 (f32), the old CUDA-vs-CPU tolerances, and a few
// units of the last place for the 16-bit floats (2^-11 for f16, 2^-8 for bf16).
double max_nmse(DType dtype) {
  switch (dtype) {
    case DType::f64: return 1e-20;
    case DType::f32: return 1e-10;
    case DType::f16: return 2e-6;
    case DType::bf16: return 5e-5;
    default: return 0.0;
  }
}

::testing::AssertionResult run_case(const OpCase& c, const BackendUnderTest& b, uint32_t seed) {
  std::mt19937 gen(seed);
  const size_t n = c.operands.size();
  std::vector<Placed> host(n), expected(n), under_test(n), back(n);
  for (size_t i = 0; i < n; ++i) host[i] = initial(c.operands[i], gen);

  std::vector<Tensor> views(n);
  for (size_t i = 0; i < n; ++i) {
    expected[i] = placed_copy(host[i], c.operands[i], cpu());
    views[i] = expected[i].view;
  }
  (c.reference ? c.reference : c.run)(reference_backend(), views);

  for (size_t i = 0; i < n; ++i) {
    under_test[i] = placed_copy(host[i], c.operands[i], c.operands[i].on_host ? cpu() : b.device);
    views[i] = under_test[i].view;
  }
  c.run(*b.backend, views);
  for (size_t i = 0; i < n; ++i) back[i] = placed_copy(under_test[i], c.operands[i], cpu());

  std::ostringstream problems;
  for (size_t i = 0; i < n; ++i) check_operand(c.operands[i], host[i], back[i], expected[i], c.exact, problems);
  if (problems.str().empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << c.name << " on " << b.name << problems.str();
}

}  // namespace px::test

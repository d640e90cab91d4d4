// CUDA multi-tensor AdamW (Backend::adamw): the slots grouped by parameter dtype, each group one launch (a few when
// its tensors or chunks overflow one kernel argument block) over a chunk table; plus a one-thread-per-element reference.
#include <climits>
#include <type_traits>

#include "core/backend/cuda/cuda_common.cuh"

namespace px::gpu {
namespace {

// ================================ kernels ================================

constexpr int kAdamWMaxTensors = 24;    // tensors one launch's argument block describes
constexpr int kAdamWMaxChunks = 320;    // chunks (one block each) per launch
constexpr int64_t kAdamWChunk = 65536;  // elements per chunk unless the caller asks for fewer
constexpr int kAdamWThreads = 256;      // a launch of 320 blocks stays resident on an H100 (4 blocks per SM)
constexpr int kAdamWIlp = 4;            // elements per thread per pass, all loaded before any is computed

// One launch's tensors and chunk table, passed by value as the kernel argument (no host-to-device copy, no sync).
// A is the math and target dtype (f32 or f64).
template <typename A>
struct AdamWLaunch {
  A* target[kAdamWMaxTensors];        // (n_k) the master, or the f32/f64 parameter itself
  void* param[kAdamWMaxTensors];      // (n_k) the bf16/f16 parameter the target is rounded into (else the target)
  const A* grad[kAdamWMaxTensors];    // (n_k)
  A* exp_avg[kAdamWMaxTensors];       // (n_k)
  A* exp_avg_sq[kAdamWMaxTensors];    // (n_k)
  int64_t n[kAdamWMaxTensors];
  double step_size[kAdamWMaxTensors];
  double bc2_sqrt[kAdamWMaxTensors];
  double decay[kAdamWMaxTensors];
  uint8_t tensor[kAdamWMaxChunks];  // the tensor of chunk c
  int32_t chunk[kAdamWMaxChunks];   // its index within that tensor: elements [chunk * chunk_elems, + chunk_elems)
};
static_assert(sizeof(AdamWLaunch<double>) <= 3900, "AdamWLaunch must fit the 4 KiB kernel argument limit");
static_assert(kAdamWMaxTensors <= 256, "AdamWLaunch::tensor is a uint8_t");

// The betas and eps of every slot, in the math dtype.
template <typename A>
struct AdamWBetas {
  A b1, b2, one_b1, one_b2, eps;
};

// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; t = t decay - step_size m / (sqrt(v) / bc2_sqrt + eps)
template <typename A>
__device__ __forceinline__ void adamw_values(A& t, A g, A& m, A& v, const AdamWBetas<A>& b, A decay, A step_size,
                                             A bc2_sqrt) {
  m = m * b.b1 + b.one_b1 * g;
  v = v * b.b2 + b.one_b2 * (g * g);
  const A denom = sqrt(v) / bc2_sqrt + b.eps;
  t = t * decay - step_size * (m / denom);
}

// Writes element i of the step's results: target, moments, and the rounded parameter (P a 16-bit type).
template <typename A, typename P>
__device__ __forceinline__ void adamw_store(A* t, P* p, A* m, A* v, int64_t i, A ti, A mi, A vi) {
  t[i] = ti;
  m[i] = mi;
  v[i] = vi;
  if constexpr (!std::is_same_v<P, A>) st(p + i, ti);
}

// The AdamW step (adamw_values) over every chunk of the table, a block per chunk (grid-stride over the chunks).
template <typename A, typename P>
__global__ void __launch_bounds__(kAdamWThreads)
    adamw_multi_tensor_kernel(const AdamWLaunch<A> launch, int chunks, int64_t chunk_elems, AdamWBetas<A> betas) {
  for (int c = blockIdx.x; c < chunks; c += gridDim.x) {
    const int k = launch.tensor[c];
    const int64_t begin = static_cast<int64_t>(launch.chunk[c]) * chunk_elems;
    const int64_t end = min(begin + chunk_elems, launch.n[k]);
    A* t = launch.target[k];
    P* p = static_cast<P*>(launch.param[k]);
    const A* g = launch.grad[k];
    A* m = launch.exp_avg[k];
    A* v = launch.exp_avg_sq[k];
    const A decay = static_cast<A>(launch.decay[k]), step_size = static_cast<A>(launch.step_size[k]);
    const A bc2_sqrt = static_cast<A>(launch.bc2_sqrt[k]);
    const int64_t stride = blockDim.x;
    for (int64_t base = begin + threadIdx.x; base < end; base += stride * kAdamWIlp) {
      A tv[kAdamWIlp], gv[kAdamWIlp], mv[kAdamWIlp], vv[kAdamWIlp];
#pragma unroll
      for (int j = 0; j < kAdamWIlp; ++j) {
        const int64_t i = base + j * stride;
        tv[j] = i < end ? t[i] : A(0);
        gv[j] = i < end ? g[i] : A(0);
        mv[j] = i < end ? m[i] : A(0);
        vv[j] = i < end ? v[i] : A(0);
      }
#pragma unroll
      for (int j = 0; j < kAdamWIlp; ++j) {
        const int64_t i = base + j * stride;
        if (i >= end) continue;
        adamw_values(tv[j], gv[j], mv[j], vv[j], betas, decay, step_size, bc2_sqrt);
        adamw_store(t, p, m, v, i, tv[j], mv[j], vv[j]);
      }
    }
  }
}

// Reference: the same step for one tensor, one thread per element (grid-stride).
template <typename A, typename P>
__global__ void adamw_reference_kernel(A* t, P* p, const A* g, A* m, A* v, int64_t n, AdamWBetas<A> betas, A decay,
                                       A step_size, A bc2_sqrt) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A ti = t[i], mi = m[i], vi = v[i];
    adamw_values(ti, g[i], mi, vi, betas, decay, step_size, bc2_sqrt);
    adamw_store(t, p, m, v, i, ti, mi, vi);
  }
}

// ================================ launchers ================================

template <typename A>
AdamWBetas<A> betas_of(double beta1, double beta2, double eps) {
  return {static_cast<A>(beta1), static_cast<A>(beta2), static_cast<A>(1.0 - beta1), static_cast<A>(1.0 - beta2),
          static_cast<A>(eps)};
}

// The target (the master of a bf16/f16 parameter, else the parameter) of slot s.
const Tensor& target_of(const AdamWSlot& s) { return s.master.defined() ? s.master : s.param; }

// Every slot of one parameter dtype P (A its master dtype), in launches of at most kAdamWMaxTensors tensors and
// kAdamWMaxChunks chunks; a tensor with more chunks than fit continues in the next launch.
template <typename A, typename P>
void launch_multi_tensor(const std::vector<const AdamWSlot*>& group, const AdamWBetas<A>& betas, int64_t chunk_elems) {
  AdamWLaunch<A> launch{};
  int tensors = 0, chunks = 0;
  const auto flush = [&] {
    if (chunks > 0) {
      adamw_multi_tensor_kernel<A, P><<<chunks, kAdamWThreads, 0, stream()>>>(launch, chunks, chunk_elems, betas);
      PX_CUDA_LAUNCH_CHECK();
    }
    tensors = 0;
    chunks = 0;
  };
  const auto add_tensor = [&](const AdamWSlot& s) {
    const int k = tensors++;
    launch.target[k] = target_of(s).data<A>();
    launch.param[k] = s.param.raw_data();
    launch.grad[k] = s.grad.data<A>();
    launch.exp_avg[k] = s.exp_avg.data<A>();
    launch.exp_avg_sq[k] = s.exp_avg_sq.data<A>();
    launch.n[k] = s.param.numel();
    launch.step_size[k] = s.step_size;
    launch.bc2_sqrt[k] = s.bc2_sqrt;
    launch.decay[k] = s.decay;
    return k;
  };
  for (const AdamWSlot* s : group) {
    const int64_t n = s->param.numel();
    if (n == 0) continue;
    const int64_t pieces = (n + chunk_elems - 1) / chunk_elems;
    CHECK_LE(pieces, static_cast<int64_t>(INT_MAX))
        << "adamw: " << s->param.str() << " has too many chunks of " << chunk_elems << " elements";
    if (tensors == kAdamWMaxTensors) flush();
    int k = add_tensor(*s);
    for (int64_t c = 0; c < pieces; ++c) {
      if (chunks == kAdamWMaxChunks) {  // the rest of this tensor goes to the next launch
        flush();
        k = add_tensor(*s);
      }
      launch.tensor[chunks] = static_cast<uint8_t>(k);
      launch.chunk[chunks] = static_cast<int32_t>(c);
      ++chunks;
    }
  }
  flush();
}

template <typename A, typename P>
void launch_reference(const std::vector<const AdamWSlot*>& group, const AdamWBetas<A>& betas) {
  for (const AdamWSlot* s : group) {
    const int64_t n = s->param.numel();
    if (n == 0) continue;
    adamw_reference_kernel<A, P><<<blocks_for(n), kThreads, 0, stream()>>>(
        target_of(*s).data<A>(), static_cast<P*>(s->param.raw_data()), s->grad.data<A>(), s->exp_avg.data<A>(),
        s->exp_avg_sq.data<A>(), n, betas, static_cast<A>(s->decay), static_cast<A>(s->step_size),
        static_cast<A>(s->bc2_sqrt));
    PX_CUDA_LAUNCH_CHECK();
  }
}

template <typename A, typename P>
void launch_group(const std::vector<const AdamWSlot*>& group, double beta1, double beta2, double eps, Impl impl,
                  int64_t chunk_elems) {
  if (group.empty()) return;
  const AdamWBetas<A> betas = betas_of<A>(beta1, beta2, eps);
  if (impl == Impl::reference) launch_reference<A, P>(group, betas);
  else launch_multi_tensor<A, P>(group, betas, chunk_elems);
}

}  // namespace

void adamw(const std::vector<AdamWSlot>& slots, double beta1, double beta2, double eps, Impl impl,
           int64_t chunk_elems) {
  if (chunk_elems <= 0) chunk_elems = kAdamWChunk;
  CHECK_LE(chunk_elems, kAdamWChunk) << "adamw: chunks of at most " << kAdamWChunk << " elements";
  // The slots by parameter dtype: f32, f64, bf16, f16.
  std::vector<const AdamWSlot*> groups[4];
  for (size_t k = 0; k < slots.size(); ++k) {
    const AdamWSlot& s = slots[k];
    check_adamw_slot(s, k, "gpu::adamw");
    check_on_cuda(s.param, "gpu::adamw", "param");
    CHECK(s.param.device() == slots.front().param.device())
        << "gpu::adamw: slot " << k << ": " << s.param.str() << " is on another device than slot 0 ("
        << slots.front().param.str() << ")";
    groups[static_cast<int>(s.param.dtype())].push_back(&s);
  }
  static_assert(static_cast<int>(DType::f32) == 0 && static_cast<int>(DType::f64) == 1 &&
                static_cast<int>(DType::bf16) == 2 && static_cast<int>(DType::f16) == 3);
  launch_group<float, float>(groups[0], beta1, beta2, eps, impl, chunk_elems);
  launch_group<double, double>(groups[1], beta1, beta2, eps, impl, chunk_elems);
  launch_group<float, bf16>(groups[2], beta1, beta2, eps, impl, chunk_elems);
  launch_group<float, f16>(groups[3], beta1, beta2, eps, impl, chunk_elems);
}

}  // namespace px::gpu

// index_add and scatter_add (embedding and gather backward) give the same bits run after run: on the CPU, and on
// CUDA through the sorted segmented sums, with long and skewed segments; the CUDA rows skip without a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/autograd/engine.h"
#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_kernels.h"
#endif

namespace px {
namespace {

// The bytes of t (on any device).
std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor h = to_device(contiguous(t), cpu());
  std::vector<uint8_t> b(static_cast<size_t>(h.numel()) * dtype_size(h.dtype()));
  if (!b.empty()) std::memcpy(b.data(), h.raw_data(), b.size());
  return b;
}

// n token ids below v, half of them one id (a padding-like segment longer than many chunks), the rest uniform.
Tensor skewed_ids(int64_t n, int64_t v, uint64_t seed) {
  Generator gen(seed);
  const std::vector<double> u = to_vector(rand({n}, gen));
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[i] = i % 2 == 0 ? 3 : static_cast<int64_t>(u[i] * static_cast<double>(v)) % v;
  return from_vector(ids, {n});
}

// dL/dW of sum(embedding(W, ids) * g) for W (V, C): the embedding backward, one index_add.
Tensor embedding_grad(Device device, int64_t v, int64_t c, const Tensor& ids, const Tensor& g) {
  Generator gen(11);
  Tensor w = randn({v, c}, gen, DType::f32, device);
  w.set_requires_grad();
  backward(sum(mul(embedding(w, to_device(ids, device)), to_device(g, device))));
  return w.grad();
}

TEST(DeterministicIndex, CpuEmbeddingBackwardIsBitReproducible) {
  const int64_t n = 6000, v = 50, c = 40;
  Generator gen(5);
  const Tensor ids = skewed_ids(n, v, 1), g = randn({n, c}, gen);
  EXPECT_EQ(bytes_of(embedding_grad(cpu(), v, c, ids, g)), bytes_of(embedding_grad(cpu(), v, c, ids, g)));
}

#ifdef PARALLAX_WITH_CUDA

#define PX_SKIP_WITHOUT_GPU() \
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why

// max |a - r| / max |r|.
double relative_error(const Tensor& a, const Tensor& r) {
  const std::vector<double> x = to_vector(a), y = to_vector(r);
  double err = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? err / scale : err;
}

struct IndexAddCase {
  Shape out;    // (O, D, W) or (D, W)
  int64_t dim;  // the indexed dim
  int64_t len;  // index (L)
};

TEST(DeterministicIndex, CudaIndexAddIsBitReproducibleAndMatchesTheReference) {
  PX_SKIP_WITHOUT_GPU();
  for (const IndexAddCase& k :
       {IndexAddCase{{37, 1}, 0, 20000}, IndexAddCase{{37, 96}, 0, 20000}, IndexAddCase{{300, 512}, 0, 4096},
        IndexAddCase{{3, 37, 40}, 1, 5000}, IndexAddCase{{64, 33}, 0, 31}}) {
    SCOPED_TRACE(shape_str(k.out) + " dim " + std::to_string(k.dim) + " index (" + std::to_string(k.len) + ")");
    Shape src_shape = k.out;
    src_shape[k.dim] = k.len;
    Generator gen(7);
    const Tensor out0 = to_device(randn(k.out, gen), cuda()), src = to_device(randn(src_shape, gen), cuda());
    const Tensor index = to_device(skewed_ids(k.len, k.out[k.dim], 2), cuda());
    std::vector<Tensor> runs;
    for (gpu::Impl impl : {gpu::Impl::fast, gpu::Impl::fast, gpu::Impl::reference, gpu::Impl::atomic}) {
      runs.push_back(clone(out0));
      gpu::index_add(runs.back(), k.dim, index, src, impl);
    }
    EXPECT_EQ(bytes_of(runs[0]), bytes_of(runs[1]));
    EXPECT_LT(relative_error(runs[0], runs[2]), 1e-5);
    EXPECT_LT(relative_error(runs[3], runs[2]), 1e-5);
  }
}

TEST(DeterministicIndex, CudaScatterAddIsBitReproducibleAndMatchesTheReference) {
  PX_SKIP_WITHOUT_GPU();
  const int64_t d = 9, w = 70, l = 4000;
  Generator gen(8);
  const Tensor out0 = to_device(randn({d, w}, gen), cuda()), src = to_device(randn({l, w}, gen), cuda());
  // index (L, W) into dim 0, skewed like the ids
  const Tensor index = to_device(reshape(skewed_ids(l * w, d, 3), {l, w}), cuda());
  std::vector<Tensor> runs;
  for (gpu::Impl impl : {gpu::Impl::fast, gpu::Impl::fast, gpu::Impl::reference}) {
    runs.push_back(clone(out0));
    gpu::scatter_add(runs.back(), 0, index, src, impl);
  }
  EXPECT_EQ(bytes_of(runs[0]), bytes_of(runs[1]));
  EXPECT_LT(relative_error(runs[0], runs[2]), 1e-5);
}

TEST(DeterministicIndex, CudaEmbeddingBackwardIsBitReproducibleAndMatchesTheCpu) {
  PX_SKIP_WITHOUT_GPU();
  const int64_t n = 16384, v = 1000, c = 256;
  Generator gen(5);
  const Tensor ids = skewed_ids(n, v, 1), g = randn({n, c}, gen);
  const Tensor a = embedding_grad(cuda(), v, c, ids, g), b = embedding_grad(cuda(), v, c, ids, g);
  EXPECT_EQ(bytes_of(a), bytes_of(b));
  EXPECT_LT(relative_error(a, embedding_grad(cpu(), v, c, ids, g)), 1e-5);
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

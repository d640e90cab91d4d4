// The CUDA multi-tensor AdamW: the chunking and the launch splits leave the bits alone, the reference kernel agrees,
// AdamW on CUDA (fused and device-generic) follows the CPU's trajectory, and a step never blocks on the GPU. Every
// test skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_kernels.h"
#endif

namespace px {
namespace {

#ifdef PARALLAX_WITH_CUDA

#define PX_SKIP_WITHOUT_GPU() \
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why

// The bytes of t (on any device).
std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor h = to_device(contiguous(t), cpu());
  std::vector<uint8_t> b(static_cast<size_t>(h.numel()) * dtype_size(h.dtype()));
  if (!b.empty()) std::memcpy(b.data(), h.raw_data(), b.size());
  return b;
}

// max |a - r| / max |r| over both tensors' values as double.
double relative_error(const Tensor& a, const Tensor& r) {
  const std::vector<double> x = to_vector(to_device(a, cpu())), y = to_vector(to_device(r, cpu()));
  double err = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? err / scale : err;
}

// Slots of the given sizes and parameter dtypes on `device`, from one seed (the same values on every device).
std::vector<AdamWSlot> make_slots(const std::vector<std::pair<int64_t, DType>>& shapes, Device device) {
  Generator gen(3);
  std::vector<AdamWSlot> slots;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const auto [n, d] = shapes[k];
    const DType md = master_dtype(d);
    AdamWSlot s;
    const Tensor master = randn({n}, gen, md);
    s.param = to_device(to_dtype(master, d), device);
    s.master = md == d ? Tensor() : to_device(master, device);
    s.grad = to_device(randn({n}, gen, md), device);
    s.exp_avg = to_device(mul(randn({n}, gen, md), 0.1), device);
    s.exp_avg_sq = to_device(rand({n}, gen, 1e-4, 1e-2, md), device);
    const int t = 1 + static_cast<int>(k % 7);
    const double lr = 1e-3 * static_cast<double>(1 + k % 3);
    s.step_size = lr / (1.0 - std::pow(0.9, t));
    s.bc2_sqrt = std::sqrt(1.0 - std::pow(0.999, t));
    s.decay = 1.0 - lr * (k % 2 == 0 ? 0.1 : 0.0);
    slots.push_back(s);
  }
  return slots;
}

// Every tensor of the slots, in order.
std::vector<Tensor> tensors_of(const std::vector<AdamWSlot>& slots) {
  std::vector<Tensor> out;
  for (const AdamWSlot& s : slots)
    for (const Tensor& t : {s.param, s.exp_avg, s.exp_avg_sq, s.master})
      if (t.defined()) out.push_back(t);
  return out;
}

// 40 tensors of every dtype, one of them 200003 elements: with 256-element chunks the launches split inside it.
std::vector<std::pair<int64_t, DType>> many_shapes() {
  std::vector<std::pair<int64_t, DType>> shapes;
  const DType dtypes[] = {DType::f32, DType::bf16, DType::f16, DType::f64};
  for (int k = 0; k < 40; ++k) shapes.push_back({k == 5 ? 200003 : 1 + 97 * k, dtypes[k % 4]});
  shapes.push_back({0, DType::f32});
  return shapes;
}

TEST(MultiTensorAdamW, ChunkingAndLaunchSplitsKeepTheBits) {
  PX_SKIP_WITHOUT_GPU();
  std::vector<std::vector<Tensor>> results;
  for (int64_t chunk : {int64_t{0}, int64_t{256}, int64_t{1000}}) {
    const std::vector<AdamWSlot> slots = make_slots(many_shapes(), cuda());
    gpu::adamw(slots, 0.9, 0.999, 1e-8, gpu::Impl::fast, chunk);
    results.push_back(tensors_of(slots));
  }
  for (size_t r = 1; r < results.size(); ++r)
    for (size_t i = 0; i < results[0].size(); ++i)
      EXPECT_EQ(bytes_of(results[0][i]), bytes_of(results[r][i])) << "run " << r << ", tensor " << i;
}

TEST(MultiTensorAdamW, FastAndReferenceKernelsMatchTheCpu) {
  PX_SKIP_WITHOUT_GPU();
  const std::vector<AdamWSlot> host = make_slots(many_shapes(), cpu());
  backend_for(cpu()).adamw(host, 0.9, 0.999, 1e-8);
  for (gpu::Impl impl : {gpu::Impl::fast, gpu::Impl::reference}) {
    const std::vector<AdamWSlot> slots = make_slots(many_shapes(), cuda());
    gpu::adamw(slots, 0.9, 0.999, 1e-8, impl);
    const std::vector<Tensor> got = tensors_of(slots), want = tensors_of(host);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const double tol = got[i].dtype() == DType::bf16 ? 1e-2 : got[i].dtype() == DType::f16 ? 2e-3 : 1e-6;
      EXPECT_LT(relative_error(got[i], want[i]), tol) << "tensor " << i << " " << got[i].str();
    }
  }
}

// A bf16 and an f32 parameter in two groups, 5 steps of AdamW from the same gradients on `device`.
std::vector<Tensor> adamw_run(Device device, bool fused) {
  Generator gen(9);
  const Tensor w0 = randn({300, 70}, gen), b0 = randn({70}, gen);
  Tensor w = to_device(to_dtype(w0, DType::bf16), device).set_requires_grad(true);
  Tensor b = to_device(b0, device).set_requires_grad(true);
  optim::AdamW opt({optim::ParamGroup{{w}, 1e-2, 0.1, "w", -1.0}, optim::ParamGroup{{b}, 3e-3, 0.0, "b", -1.0}});
  opt.set_fused(fused);
  for (int step = 0; step < 5; ++step) {
    w.set_grad(to_device(randn({300, 70}, gen), device));
    b.set_grad(to_device(randn({70}, gen), device));
    const uint64_t syncs = cuda_host_syncs();
    opt.step();
    if (fused && step > 0) EXPECT_EQ(cuda_host_syncs(), syncs) << "AdamW step " << step + 1 << " blocked on the GPU";
  }
  return {w, b, opt.state(w)->tensors.at(optim::kMasterKey), opt.state(b)->tensors.at("exp_avg_sq")};
}

TEST(MultiTensorAdamW, OptimizerOnCudaFollowsTheCpu) {
  PX_SKIP_WITHOUT_GPU();
  const std::vector<Tensor> want = adamw_run(cpu(), true);
  for (bool fused : {true, false}) {
    const std::vector<Tensor> got = adamw_run(cuda(), fused);
    for (size_t i = 0; i < got.size(); ++i) {
      const double tol = got[i].dtype() == DType::bf16 ? 1e-2 : 1e-5;
      EXPECT_LT(relative_error(got[i], want[i]), tol) << (fused ? "fused" : "generic") << ", tensor " << i;
    }
  }
}

#endif  // PARALLAX_WITH_CUDA

}  // namespace
}  // namespace px

// Mixed precision on the CPU: the f16 loss scaler's state machine, f32 gradients of 16-bit leaves, AdamW's f32
// masters for bf16 parameters against f32 AdamW, Module::to converting in place, and a bf16 MLP training like f32.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/loss_scaler.h"
#include "core/util/error.h"
#include "tests/common/compare.h"

namespace px::test {
namespace {

using optim::LossScaler;
using optim::LossScalerOptions;
using optim::LossScalerState;

// ---- the loss scaler (Megatron's DynamicGradScaler semantics) ----

TEST(LossScaler, StartsAt2To16AndBacksOffAfterTwoOverflows) {
  LossScaler s(true);
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_FALSE(s.update(true)) << "the first overflow uses up the hysteresis";
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_EQ(s.state().hysteresis_left, 1);
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 32768.0);
  EXPECT_TRUE(s.update(true)) << "with the hysteresis spent, every overflow backs off";
  EXPECT_EQ(s.scale(), 16384.0);
  // Good steps in between do not restore the hysteresis: only a growth does.
  EXPECT_FALSE(s.update(false));
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 8192.0);
  EXPECT_EQ(s.state().good_steps, 0);
}

TEST(LossScaler, GrowsAfter2000GoodStepsInARowAndRestoresTheHysteresis) {
  LossScaler s(true);
  s.update(true);  // hysteresis 1 left, no backoff
  for (int i = 0; i < 1999; ++i) ASSERT_FALSE(s.update(false)) << "good step " << i + 1;
  EXPECT_EQ(s.state().good_steps, 1999);
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 131072.0);
  EXPECT_EQ(s.state().good_steps, 0);
  EXPECT_EQ(s.state().hysteresis_left, 2);
  // An overflow resets the count of good steps.
  for (int i = 0; i < 1000; ++i) s.update(false);
  s.update(true);
  for (int i = 0; i < 1999; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 131072.0);
  s.update(false);
  EXPECT_EQ(s.scale(), 262144.0);
}

TEST(LossScaler, NeverBacksOffBelowTheMinimum) {
  LossScalerOptions o;
  o.init_scale = 4.0;
  o.hysteresis = 1;
  o.min_scale = 1.0;
  LossScaler s(true, o);
  for (double expected : {2.0, 1.0, 1.0}) {
    s.update(true);
    EXPECT_EQ(s.scale(), expected);
  }
}

TEST(LossScaler, DisabledKeepsAScaleOfOne) {
  LossScaler s(false);
  EXPECT_EQ(s.scale(), 1.0);
  EXPECT_FALSE(s.update(true));
  for (int i = 0; i < 2000; ++i) EXPECT_FALSE(s.update(false));
  EXPECT_EQ(s.scale(), 1.0);
  s.set_state(LossScalerState{1024.0, 5, 1});
  EXPECT_EQ(s.scale(), 1.0);
}

TEST(LossScaler, StateRoundTripsAndABadOneIsACheckpointError) {
  LossScaler s(true);
  s.set_state(LossScalerState{1024.0, 1998, 1});
  EXPECT_EQ(s.str(), "scale 1024 (1998 of 2000 good steps, hysteresis 1 left)");
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 2048.0);
  for (const LossScalerState& bad :
       {LossScalerState{0.0, 0, 1}, LossScalerState{-2.0, 0, 1}, LossScalerState{std::nan(""), 0, 1},
        LossScalerState{INFINITY, 0, 1}, LossScalerState{8.0, -1, 1}, LossScalerState{8.0, 0, -1}}) {
    EXPECT_THROW(s.set_state(bad), CheckpointError) << bad.scale;
  }
  EXPECT_EQ(s.scale(), 2048.0) << "a rejected state changes nothing";
}

// ---- gradients and updates of 16-bit parameters ----

TEST(MixedPrecision, A16BitLeafAccumulatesAnF32Gradient) {
  for (DType half : {DType::bf16, DType::f16}) {
    Tensor w = from_vector(std::vector<double>{1.0, 2.0, 3.0}, {3}, half).set_requires_grad(true);
    // d/dw sum(w * c) = c, here c rounded to the 16-bit dtype (1 + 2^-12 becomes 1).
    const Tensor c = from_vector(std::vector<double>{1.0 + std::ldexp(1.0, -12), 0.5, -0.25}, {3}, DType::f32);
    backward(sum(w * to_dtype(c, half)));
    ASSERT_EQ(w.grad().dtype(), DType::f32) << dtype_name(half);
    EXPECT_EQ(to_vector(w.grad()), to_vector(to_dtype(to_dtype(c, half), DType::f32)));
    // A second backward adds in f32: 16-bit steps of 2^-12 each would be lost against 1 in a 16-bit sum.
    for (int i = 0; i < 16; ++i)
      backward(sum(w * from_vector(std::vector<double>{std::ldexp(1.0, -12), 0, 0}, {3}, half)));
    EXPECT_NEAR(to_vector(w.grad())[0], 1.0 + 16 * std::ldexp(1.0, -12), 1e-7) << dtype_name(half);
  }
}

// AdamW on a bf16 parameter keeps an f32 master updated exactly as f32 AdamW updates an f32 copy given the same
// gradients; the parameter is the master rounded to bf16 after every step.
TEST(MixedPrecision, AdamWUpdatesAnF32MasterOfABf16Parameter) {
  Generator gen(7);
  const Tensor init = randn({4, 5}, gen);
  Tensor half = to_dtype(init, DType::bf16).set_requires_grad(true);
  Tensor full = to_dtype(half.detach(), DType::f32).set_requires_grad(true);  // the master starts from the bf16 values
  optim::AdamW half_opt({half}, 1e-2, 0.1), full_opt({full}, 1e-2, 0.1);
  for (int step = 0; step < 5; ++step) {
    const Tensor g = randn({4, 5}, gen);
    half.set_grad(clone(g));
    full.set_grad(clone(g));
    half_opt.step();
    full_opt.step();
    const optim::ParamState* state = half_opt.state(half);
    ASSERT_NE(state, nullptr);
    const Tensor& master = state->tensors.at(optim::kMasterKey);
    ASSERT_EQ(master.dtype(), DType::f32);
    EXPECT_EQ(state->tensors.at("exp_avg").dtype(), DType::f32);
    EXPECT_TRUE(all_close(master, full, 0.0, 0.0, "master at step " + std::to_string(step)));
    EXPECT_TRUE(
        all_close(half, to_dtype(full, DType::bf16), 0.0, 0.0, "bf16 parameter at step " + std::to_string(step)));
  }
  // Updates of 1e-2 * ~1 over 5 steps: some move a bf16 weight by less than its ulp, which only the master keeps.
  EXPECT_FALSE(all_close(to_dtype(half, DType::f32), full, 0.0, 0.0, "bf16 against the master"));
}

// ---- Module::to ----

class TwoLayers : public nn::Module {
 public:
  explicit TwoLayers(Generator& gen) : Module("TwoLayers") {
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(6, 16, gen));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(16, 3, gen));
    steps_ = register_buffer("steps", zeros({}, DType::i64));
  }
  // x (N, 6) -> (N, 3)
  Tensor forward(const Tensor& x) const { return fc2_->forward(gelu(fc1_->forward(x))); }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_;
  Tensor steps_;  // () i64
};

TEST(MixedPrecision, ModuleToConvertsInPlaceAndKeepsHandles) {
  Generator gen(3);
  TwoLayers net(gen);
  const std::vector<Tensor> handles = net.parameters();  // held elsewhere, like an optimizer's
  std::vector<Tensor> before;
  for (const Tensor& p : handles) before.push_back(clone(p));
  backward(sum(net.forward(randn({2, 6}, gen))));
  net.to(cpu(), DType::bf16);
  const std::vector<Tensor> after = net.parameters();
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(after[i].impl(), handles[i].impl());
    EXPECT_EQ(handles[i].dtype(), DType::bf16);
    EXPECT_TRUE(all_close(handles[i], to_dtype(before[i], DType::bf16), 0.0, 0.0, "parameter " + std::to_string(i)));
    EXPECT_EQ(handles[i].grad().dtype(), DType::f32) << "a bf16 parameter's gradient stays f32";
  }
  EXPECT_EQ(net.state_dict().at("steps").dtype(), DType::i64) << "integer buffers keep their dtype";
  net.to(cpu(), DType::f32);
  for (const Tensor& p : handles) EXPECT_EQ(p.dtype(), DType::f32);
}

// bf16 storage with f32 compute trains like f32: an MLP fitting a smooth target follows the f32 loss curve within
// 5% at every step of 60 (bf16 rounds each weight and activation to ~3 significant digits), and ends 20x lower.
TEST(MixedPrecision, Bf16TrainsAlongTheF32LossCurve) {
  Generator data_gen(11);
  const Tensor x = randn({128, 6}, data_gen);
  const Tensor target = tanh(x) * 0.5;  // (128, 6): the first 3 columns are fitted
  const Tensor y = contiguous(narrow(target, 1, 0, 3));
  std::vector<double> curves[2];
  for (int run = 0; run < 2; ++run) {
    const DType dtype = run == 0 ? DType::f32 : DType::bf16;
    Generator gen(5);
    TwoLayers net(gen);
    net.to(cpu(), dtype);
    optim::AdamW opt(net.parameters(), 1e-2, 0.0);
    const Tensor xd = to_dtype(x, dtype);
    for (int step = 0; step < 60; ++step) {
      const Tensor diff = to_dtype(net.forward(xd), DType::f32) - y;
      const Tensor loss = mean(diff * diff);
      opt.zero_grad();
      backward(loss);
      opt.step();
      curves[run].push_back(loss.item());
    }
  }
  for (size_t step = 0; step < curves[0].size(); ++step)
    EXPECT_NEAR(curves[1][step], curves[0][step], 0.05 * curves[0][step]) << "step " << step;
  EXPECT_LT(curves[1].back(), curves[1].front() / 20) << "bf16 trained";
}

}  // namespace
}  // namespace px::test

// ParallelMultiheadAttention and ParallelFeedForward at tp = N against nn::MultiheadAttention / nn::FeedForward
// (tp = 1) built in the same process from the same seed: init, forward/backward, KV cache, AdamW, dropout, errors.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/nn/attention.h"
#include "core/nn/feed_forward.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/util/error.h"
#include "parallel/grid.h"
#include "parallel/tp/parallel_attention.h"
#include "parallel/tp/parallel_feed_forward.h"
#include "parallel/tp/shard_spec.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"
#include "tests/common/mpi_test_main.h"

namespace px::test {
namespace {

using parallel::ParallelFeedForward;
using parallel::ParallelGrid;
using parallel::ParallelMultiheadAttention;
using parallel::ProcessGroup;
using parallel::ShardSpec;

constexpr int64_t kD = 16, kHeads = 4, kFF = 32, kB = 2, kT = 5, kS = 6;
constexpr int64_t kHeadDim = kD / kHeads;
// f64: at tp = N every head is computed exactly as at tp = 1; only the contractions split over ranks (the output
// projection over d, fc2 over d_ff, the input gradient's all-reduce over the ranks' qkv parts) add the same
// O(1) terms in another order, so results differ by a few ulps (measured: within 1e-15); 1e-12 leaves headroom
// for other BLAS blockings.
constexpr double kTol = 1e-12;
// f32: the same reorderings at f32's unit roundoff (6e-8), over contractions of at most 32 O(1) terms
// (measured: within 1e-7).
constexpr double kF32Tol = 1e-5;
// Parameters after 10 AdamW steps at lr 1e-2: AdamW divides each step by the gradient's own RMS, so the
// gradients' few-ulp differences become relative differences of the step where a gradient is small (measured:
// up to 2e-13 on O(0.1) parameters).
constexpr double kAdamTol = 1e-11;
// Parameters whose gradient is rounding noise only, after the same 10 steps (see TpTraining).
constexpr double kAdamNoiseTol = 1e-10;

// The tp sizes tested at this world size: every divisor >= 2 of it, or tp = 1 in a world of one.
std::vector<int> tp_sizes() {
  const int n = world().size();
  if (n == 1) return {1};
  std::vector<int> sizes;
  for (int tp = 2; tp <= n; ++tp)
    if (n % tp == 0) sizes.push_back(tp);
  return sizes;
}

// Batch 1 pads its last two queries/keys. (B, T)
Tensor self_padding_mask() { return bool_tensor({0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, {kB, kT}); }
// Memory padding, different per batch. (B, S)
Tensor memory_padding_mask() { return bool_tensor({0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1}, {kB, kS}); }

// The same values on every rank (uniform64 depends on the seed only), in `dtype`.
Tensor replicated_input(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  return to_dtype(uniform64(shape, seed), dtype);
}

// name -> (dim, groups) of every sharded parameter, for comparing spec tables.
std::map<std::string, std::pair<int64_t, int64_t>> spec_table(nn::Module& module) {
  std::map<std::string, std::pair<int64_t, int64_t>> table;
  for (const auto& [name, spec] : parallel::collect_shard_specs(module)) table[name] = {spec.dim, spec.groups};
  return table;
}

// Every parameter of `par` (or its gradient when `grads`) equals the slice of `full`'s parameter of the same
// name given by its ShardSpec, or the whole of it when replicated.
void expect_params_are_slices(const nn::Module& full, nn::Module& par, ProcessGroup& tp, bool grads, double tol) {
  const std::map<std::string, ShardSpec> specs = parallel::collect_shard_specs(par);
  std::map<std::string, Tensor> full_params;
  for (const auto& [name, p] : full.named_parameters()) full_params[name] = p;
  const auto par_params = par.named_parameters();
  ASSERT_EQ(par_params.size(), full_params.size());
  for (const auto& [name, p] : par_params) {
    ASSERT_EQ(full_params.count(name), 1u) << name;
    const Tensor full_value = grads ? full_params.at(name).grad() : full_params.at(name);
    const Tensor value = grads ? p.grad() : p;
    ASSERT_TRUE(full_value.defined() && value.defined()) << name;
    const auto it = specs.find(name);
    const Tensor expected =
        it == specs.end() ? full_value : parallel::shard_of(full_value, it->second, tp.rank(), tp.size());
    EXPECT_TRUE(all_close(value, expected, tol, tol, (grads ? "grad of " : "") + name));
  }
}

// Every parameter of `par` by name, its shards gathered over tp into the full tensor. Collective over tp.
std::map<std::string, Tensor> gathered_params(nn::Module& par, ProcessGroup& tp) {
  const std::map<std::string, ShardSpec> specs = parallel::collect_shard_specs(par);
  std::map<std::string, Tensor> whole;
  for (const auto& [name, p] : par.named_parameters()) {
    const auto it = specs.find(name);
    whole[name] = it == specs.end() ? p : parallel::gather_shards(p.detach(), it->second, tp);
  }
  return whole;
}

// Runs both modules on fresh leaves holding the same inputs, backpropagates the same upstream gradient through
// both, and expects equal outputs, input gradients and parameter gradients (the tp = N ones as slices).
template <typename RunFull, typename RunPar>
void expect_same_forward_backward(const nn::Module& full, nn::Module& par, ProcessGroup& tp,
                                  const std::vector<Shape>& input_shapes, DType dtype, double tol,
                                  RunFull&& run_full, RunPar&& run_par) {
  std::vector<Tensor> full_in, par_in;
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    const Tensor value = replicated_input(input_shapes[i], 100 + i, dtype);
    full_in.push_back(clone(value).set_requires_grad(true));
    par_in.push_back(clone(value).set_requires_grad(true));
  }
  const Tensor y_full = run_full(full_in), y_par = run_par(par_in);
  EXPECT_EQ(y_par.dtype(), dtype);
  EXPECT_TRUE(all_close(y_par, y_full, tol, tol, "output"));
  const Tensor gy = replicated_input(y_full.shape(), 99, dtype);  // (B, T, d)
  backward(y_full, gy);
  backward(y_par, gy);
  for (size_t i = 0; i < par_in.size(); ++i)
    EXPECT_TRUE(all_close(par_in[i].grad(), full_in[i].grad(), tol, tol, "grad of input " + std::to_string(i)));
  expect_params_are_slices(full, par, tp, /*grads=*/true, tol);
}

// what() of the px::ConfigError `make` throws, or "" when it throws none.
template <typename Make>
std::string config_error_of(Make&& make) {
  try {
    make();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// ---- initialisation ----

TEST(TpAttentionInit, ShardsAreSlicesOfTheFullInitialisation) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    for (DType dtype : {DType::f64, DType::f32}) {
      for (bool self_attention : {true, false}) {
        Generator full_gen(21), par_gen(21), dropout_gen(0);
        const nn::MultiheadAttention full(kD, kHeads, 0.0, full_gen, self_attention, dtype);
        ParallelMultiheadAttention par(kD, kHeads, 0.0, par_gen, dropout_gen, self_attention, grid.tp(), dtype);
        // The same draws at every tp, so modules built after this one start alike too.
        EXPECT_EQ(par_gen.offset(), full_gen.offset());
        EXPECT_EQ(par.local_heads(), kHeads / tp);
        using Table = std::map<std::string, std::pair<int64_t, int64_t>>;
        const Table expected_specs =
            self_attention ? Table{{"qkv.weight", {0, 3}}, {"qkv.bias", {0, 3}}, {"out.weight", {1, 1}}}
                           : Table{{"q.weight", {0, 1}}, {"q.bias", {0, 1}}, {"kv.weight", {0, 2}},
                                   {"kv.bias", {0, 2}}, {"out.weight", {1, 1}}};
        EXPECT_EQ(spec_table(par), expected_specs);
        expect_params_are_slices(full, par, grid.tp(), /*grads=*/false, 0.0);  // copies: exact
      }
      Generator full_gen(22), par_gen(22), dropout_gen(0);
      const nn::FeedForward full(kD, kFF, nn::Activation::relu, 0.0, full_gen, dtype);
      ParallelFeedForward par(kD, kFF, nn::Activation::relu, 0.0, par_gen, dropout_gen, grid.tp(), dtype);
      EXPECT_EQ(par_gen.offset(), full_gen.offset());
      EXPECT_EQ(spec_table(par), (std::map<std::string, std::pair<int64_t, int64_t>>{
                                     {"fc1.weight", {0, 1}}, {"fc1.bias", {0, 1}}, {"fc2.weight", {1, 1}}}));
      expect_params_are_slices(full, par, grid.tp(), /*grads=*/false, 0.0);
    }
  }
}

// ---- forward and backward ----

TEST(TpAttention, SelfAttentionWithPaddingAndCausalMasksMatchesTp1) {
  const Tensor mask = self_padding_mask();
  for (int tp : tp_sizes()) {
    ParallelGrid grid(world().group(), tp);
    for (bool causal : {false, true}) {
      SCOPED_TRACE("tp " + std::to_string(tp) + (causal ? " causal" : " padding only"));
      Generator full_gen(23), par_gen(23), dropout_gen(0);
      const nn::MultiheadAttention full(kD, kHeads, 0.0, full_gen, true, DType::f64);
      ParallelMultiheadAttention par(kD, kHeads, 0.0, par_gen, dropout_gen, true, grid.tp(), DType::f64);
      expect_same_forward_backward(
          full, par, grid.tp(), {{kB, kT, kD}}, DType::f64, kTol,
          [&](const std::vector<Tensor>& in) { return full.forward(in[0], mask, causal); },
          [&](const std::vector<Tensor>& in) { return par.forward(in[0], mask, causal); });
    }
  }
}

TEST(TpAttention, CrossAttentionWithMemoryPaddingMaskMatchesTp1) {
  const Tensor mask = memory_padding_mask();
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    Generator full_gen(24), par_gen(24), dropout_gen(0);
    const nn::MultiheadAttention full(kD, kHeads, 0.0, full_gen, false, DType::f64);
    ParallelMultiheadAttention par(kD, kHeads, 0.0, par_gen, dropout_gen, false, grid.tp(), DType::f64);
    expect_same_forward_backward(
        full, par, grid.tp(), {{kB, kT, kD}, {kB, kS, kD}}, DType::f64, kTol,
        [&](const std::vector<Tensor>& in) { return full.forward_cross(in[0], in[1], mask); },
        [&](const std::vector<Tensor>& in) { return par.forward_cross(in[0], in[1], mask); });
  }
}

TEST(TpAttention, F32SelfAttentionMatchesTp1) {
  const Tensor mask = self_padding_mask();
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    Generator full_gen(25), par_gen(25), dropout_gen(0);
    const nn::MultiheadAttention full(kD, kHeads, 0.0, full_gen, true, DType::f32);
    ParallelMultiheadAttention par(kD, kHeads, 0.0, par_gen, dropout_gen, true, grid.tp(), DType::f32);
    expect_same_forward_backward(
        full, par, grid.tp(), {{kB, kT, kD}}, DType::f32, kF32Tol,
        [&](const std::vector<Tensor>& in) { return full.forward(in[0], mask, true); },
        [&](const std::vector<Tensor>& in) { return par.forward(in[0], mask, true); });
  }
}

TEST(TpFeedForward, ReluAndGeluMatchTp1) {
  for (int tp : tp_sizes()) {
    ParallelGrid grid(world().group(), tp);
    for (nn::Activation act : {nn::Activation::relu, nn::Activation::gelu}) {
      SCOPED_TRACE("tp " + std::to_string(tp) + " " + nn::activation_name(act));
      Generator full_gen(26), par_gen(26), dropout_gen(0);
      const nn::FeedForward full(kD, kFF, act, 0.0, full_gen, DType::f64);
      ParallelFeedForward par(kD, kFF, act, 0.0, par_gen, dropout_gen, grid.tp(), DType::f64);
      expect_same_forward_backward(
          full, par, grid.tp(), {{kB, kT, kD}}, DType::f64, kTol,
          [&](const std::vector<Tensor>& in) { return full.forward(in[0]); },
          [&](const std::vector<Tensor>& in) { return par.forward(in[0]); });
    }
  }
}

// ---- incremental decoding ----

TEST(TpAttentionCache, SelfAttentionDecodingMatchesFullForward) {
  NoGradGuard no_grad;
  const Tensor mask = self_padding_mask();
  const Tensor x = replicated_input({kB, kT, kD}, 31);
  for (int tp : tp_sizes()) {
    ParallelGrid grid(world().group(), tp);
    Generator full_gen(27), par_gen(27), dropout_gen(0);
    const nn::MultiheadAttention full(kD, kHeads, 0.0, full_gen, true, DType::f64);
    const ParallelMultiheadAttention par(kD, kHeads, 0.0, par_gen, dropout_gen, true, grid.tp(), DType::f64);
    const Tensor whole = par.forward(x, mask, /*causal=*/true);
    EXPECT_TRUE(all_close(whole, full.forward(x, mask, true), kTol, kTol, "tp " + std::to_string(tp)));
    for (int64_t chunk : {1, 2}) {  // 2: several new positions per step, causal within the chunk too
      SCOPED_TRACE("tp " + std::to_string(tp) + " chunk " + std::to_string(chunk));
      nn::KVCache cache;
      for (int64_t t = 0; t < kT; t += chunk) {
        const int64_t n = std::min(chunk, kT - t);
        // The mask covers every key seen so far: the cached ones and the new ones.
        const Tensor step = par.forward(narrow(x, 1, t, n), narrow(mask, 1, 0, t + n), true, &cache);
        // The cache holds this rank's heads only.
        EXPECT_EQ(cache.k.shape(), (Shape{kB, kHeads / tp, t + n, kHeadDim}));
        EXPECT_EQ(cache.v.shape(), (Shape{kB, kHeads / tp, t + n, kHeadDim}));
        EXPECT_TRUE(all_close(step, narrow(whole, 1, t, n), kTol, kTol, "position " + std::to_string(t)));
      }
    }
  }
}

TEST(TpAttentionCache, CrossAttentionDecodingMatchesFullForward) {
  NoGradGuard no_grad;
  const Tensor mask = memory_padding_mask();
  const Tensor x = replicated_input({kB, kT, kD}, 32), memory = replicated_input({kB, kS, kD}, 33);
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    Generator full_gen(28), par_gen(28), dropout_gen(0);
    const nn::MultiheadAttention full(kD, kHeads, 0.0, full_gen, false, DType::f64);
    const ParallelMultiheadAttention par(kD, kHeads, 0.0, par_gen, dropout_gen, false, grid.tp(), DType::f64);
    const Tensor whole = par.forward_cross(x, memory, mask);
    EXPECT_TRUE(all_close(whole, full.forward_cross(x, memory, mask), kTol, kTol, "full forward"));
    nn::KVCache cache;
    for (int64_t t = 0; t < kT; ++t) {
      // After the first step only the cache is read.
      const Tensor step = par.forward_cross(narrow(x, 1, t, 1), t == 0 ? memory : Tensor(), mask, &cache);
      EXPECT_EQ(cache.k.shape(), (Shape{kB, kHeads / tp, kS, kHeadDim}));
      EXPECT_TRUE(all_close(step, narrow(whole, 1, t, 1), kTol, kTol, "position " + std::to_string(t)));
    }
  }
}

// ---- training ----

// mean((y - target)^2) of the residual block y = h + ffn(h), h = x + attn(x) (causal, padded). -> scalar
template <typename Attention, typename FeedForward>
Tensor block_loss(const Attention& attn, const FeedForward& ffn, const Tensor& x, const Tensor& target) {
  const Tensor h = x + attn.forward(x, self_padding_mask(), /*causal=*/true);  // (B, T, d)
  const Tensor y = h + ffn.forward(h);
  return mean(pow(y - target, 2.0));
}

std::vector<Tensor> concat(std::vector<Tensor> a, const std::vector<Tensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(TpTraining, TenAdamWStepsMatchTp1) {
  constexpr int kSteps = 10;
  const Tensor x = replicated_input({kB, kT, kD}, 41), target = replicated_input({kB, kT, kD}, 42);
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    Generator full_gen(29), par_gen(29), dropout_gen(0);
    const nn::MultiheadAttention full_attn(kD, kHeads, 0.0, full_gen, true, DType::f64);
    const nn::FeedForward full_ffn(kD, kFF, nn::Activation::gelu, 0.0, full_gen, DType::f64);
    ParallelMultiheadAttention par_attn(kD, kHeads, 0.0, par_gen, dropout_gen, true, grid.tp(), DType::f64);
    ParallelFeedForward par_ffn(kD, kFF, nn::Activation::gelu, 0.0, par_gen, dropout_gen, grid.tp(), DType::f64);
    optim::AdamW full_opt(concat(full_attn.parameters(), full_ffn.parameters()), 1e-2, 1e-2);
    optim::AdamW par_opt(concat(par_attn.parameters(), par_ffn.parameters()), 1e-2, 1e-2);
    std::vector<double> losses;
    for (int step = 0; step < kSteps; ++step) {
      full_opt.zero_grad();
      par_opt.zero_grad();
      const Tensor full_loss = block_loss(full_attn, full_ffn, x, target);
      const Tensor par_loss = block_loss(par_attn, par_ffn, x, target);
      backward(full_loss);
      backward(par_loss);
      EXPECT_NEAR(par_loss.item(), full_loss.item(), kTol * std::abs(full_loss.item())) << "step " << step;
      full_opt.step();
      par_opt.step();
      losses.push_back(full_loss.item());
    }
    EXPECT_LT(losses.back(), losses.front());  // the steps did train
    const std::map<std::string, Tensor> ffn_params = gathered_params(par_ffn, grid.tp());
    for (const auto& [name, p] : full_ffn.named_parameters())
      EXPECT_TRUE(all_close(ffn_params.at(name), p, kAdamTol, kAdamTol, name));
    const std::map<std::string, Tensor> attn_params = gathered_params(par_attn, grid.tp());
    for (const auto& [name, p] : full_attn.named_parameters()) {
      if (name != "qkv.bias") {
        EXPECT_TRUE(all_close(attn_params.at(name), p, kAdamTol, kAdamTol, name));
        continue;
      }
      // The k block of qkv.bias has an exactly zero gradient in exact arithmetic (adding q.b_k to every key's
      // score leaves the softmax unchanged), so both runs only see rounding noise (~1e-17) there, which AdamW
      // turns into steps of about lr * noise / eps ~ 1e-11 that differ between the runs: that block stays at
      // noise level (< 1e-10 from its zero init) in both, with no effect on the loss.
      const Tensor& bias = attn_params.at(name);  // (3d) rows q, k, v
      EXPECT_TRUE(all_close(narrow(bias, 0, 0, kD), narrow(p, 0, 0, kD), kAdamTol, kAdamTol, "qkv.bias q"));
      EXPECT_TRUE(all_close(narrow(bias, 0, kD, kD), narrow(p, 0, kD, kD), 0, kAdamNoiseTol, "qkv.bias k"));
      EXPECT_TRUE(all_close(narrow(p, 0, kD, kD), zeros({kD}, DType::f64), 0, kAdamNoiseTol, "tp 1 qkv.bias k"));
      EXPECT_TRUE(
          all_close(narrow(bias, 0, 2 * kD, kD), narrow(p, 0, 2 * kD, kD), kAdamTol, kAdamTol, "qkv.bias v"));
    }
  }
}

// ---- dropout ----

bool all_finite(const Tensor& t) {
  const std::vector<double> v = to_vector(t);
  return std::all_of(v.begin(), v.end(), [](double e) { return std::isfinite(e); });
}

// Every tp rank's copy of `t` (all_gather over tp) is bit-identical to this rank's. t (B, ...)
void expect_identical_on_every_tp_rank(const Tensor& t, ProcessGroup& tp, const std::string& what) {
  const Tensor local = contiguous(t.detach());
  Shape gathered_shape = local.shape();
  gathered_shape[0] *= tp.size();
  const Tensor gathered = Tensor::empty(gathered_shape, local.dtype());  // (tp B, ...)
  tp.all_gather(local, gathered)->wait();
  for (int r = 0; r < tp.size(); ++r) {
    EXPECT_TRUE(all_close(narrow(gathered, 0, r * local.size(0), local.size(0)), local, 0, 0,
                          what + " of tp rank " + std::to_string(r)));
  }
}

TEST(TpDropout, ShardedMasksPerRankKeepReplicatedOutputsIdentical) {
  if (world().size() == 1) GTEST_SKIP() << "needs tp > 1: one rank has nobody to differ from";
  const Tensor mask = self_padding_mask();
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    ProcessGroup& group = grid.tp();
    Generator init_gen(30), sharded_gen(1000 + group.rank());  // each tp rank draws its own masks
    ParallelMultiheadAttention attn(kD, kHeads, 0.5, init_gen, sharded_gen, true, group, DType::f64);
    ParallelFeedForward ffn(kD, kFF, nn::Activation::relu, 0.5, init_gen, sharded_gen, group, DType::f64);
    const Tensor x = clone(replicated_input({kB, kT, kD}, 43)).set_requires_grad(true);
    const Tensor y = ffn.forward(attn.forward(x, mask, true));  // (B, T, d)
    // One counter per local attention probability, then per local hidden activation.
    EXPECT_EQ(sharded_gen.offset(), static_cast<uint64_t>(kB * (kHeads / tp) * kT * kT + kB * kT * (kFF / tp)));
    EXPECT_TRUE(all_finite(y));
    expect_identical_on_every_tp_rank(y, group, "output");
    backward(y, replicated_input(y.shape(), 44));
    EXPECT_TRUE(all_finite(x.grad()));
    expect_identical_on_every_tp_rank(x.grad(), group, "input gradient");
    attn.eval();
    ffn.eval();
    EXPECT_FALSE(all_close(ffn.forward(attn.forward(x, mask, true)), y, 1e-3, 1e-3));  // dropout did act
  }
}

// ---- configuration errors ----

TEST(TpConfig, IndivisibleHeadsOrDffAreConfigErrors) {
  if (world().size() == 1) GTEST_SKIP() << "every head count and d_ff divide tp = 1";
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(world().group(), tp);
    Generator init_gen(31), dropout_gen(0);
    const int64_t heads = tp / 2;  // divides d_model, not tp
    for (bool self_attention : {true, false}) {
      const std::string message = config_error_of([&] {
        const ParallelMultiheadAttention attn(kD, heads, 0.0, init_gen, dropout_gen, self_attention, grid.tp());
      });
      EXPECT_NE(message.find("num_heads " + std::to_string(heads)), std::string::npos) << message;
      EXPECT_NE(message.find("tensor-parallel size " + std::to_string(tp)), std::string::npos) << message;
    }
    const int64_t d_ff = 4 * tp + 1;
    const std::string message = config_error_of([&] {
      const ParallelFeedForward ffn(kD, d_ff, nn::Activation::relu, 0.0, init_gen, dropout_gen, grid.tp());
    });
    EXPECT_NE(message.find("d_ff " + std::to_string(d_ff)), std::string::npos) << message;
    EXPECT_EQ(init_gen.offset(), 0u);  // refused before drawing anything
  }
}

}  // namespace
}  // namespace px::test

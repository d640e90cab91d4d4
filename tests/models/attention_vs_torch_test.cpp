// MultiheadAttention, the Transformer encoder/decoder layers (torch's and DETR's) and the sinusoidal positional
// encoding against PyTorch (tests/oracle/gen_attention.py, f64, same weights), plus incremental decoding,
// padding, f32 and init.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/nn/attention.h"
#include "core/nn/positional_encoding.h"
#include "core/ops/ops.h"
#include "models/common/transformer_layers.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

using models::DecoderLayerCache;
using models::TransformerDecoderLayer;
using models::TransformerEncoderLayer;

constexpr int64_t kD = 8, kHeads = 2, kFF = 16, kT = 5, kS = 6;
// f64 against torch's f64: both sum the same products in different orders, so only rounding differs.
constexpr double kTol = 1e-10;
// An f32 run against the f64 reference.
constexpr double kF32Tol = 1e-5;

const PxtFile& oracle() {
  static const PxtFile file("attention.pxt");
  return file;
}

Tensor oracle_as(const std::string& key, DType dtype) { return to_dtype(oracle().get(key), dtype); }

// Entries "<case>.sd.<key>" as a state dict keyed by <key>, converted to dtype.
nn::StateDict torch_state(const std::string& c, DType dtype = DType::f64) {
  nn::StateDict sd;
  const std::string prefix = c + ".sd.";
  for (const auto& [key, t] : oracle().all())
    if (key.rfind(prefix, 0) == 0) sd.emplace(key.substr(prefix.size()), to_dtype(t, dtype));
  return sd;
}

// The oracle's input "<case>.<name>" as a fresh leaf that requires grad.
Tensor leaf(const std::string& c, const std::string& name) {
  return clone(oracle().get(c + "." + name)).set_requires_grad(true);
}

// Loads the case's weights, runs forward on leaves of the named inputs, backward with torch's upstream
// gradient, and compares the output, each input's gradient and every parameter's gradient.
template <typename Forward>
void check_against_torch(nn::Module& module, const std::string& c, const std::vector<std::string>& inputs,
                         Forward&& forward) {
  SCOPED_TRACE(c);
  const PxtFile& f = oracle();
  module.load_state_dict(torch_state(c));
  module.zero_grad();
  std::vector<Tensor> leaves;
  for (const std::string& name : inputs) leaves.push_back(leaf(c, name));
  const Tensor y = forward(leaves);
  EXPECT_ALL_CLOSE(y, f.get(c + ".y"), kTol, kTol);
  backward(y, f.get(c + ".gy"));
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_TRUE(all_close(leaves[i].grad(), f.get(c + ".g" + inputs[i]), kTol, kTol, "d" + inputs[i]));
  for (const auto& [name, p] : module.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_TRUE(all_close(p.grad(), f.get(c + ".grad." + name), kTol, kTol, name));
  }
}

std::vector<std::string> parameter_names(const nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
  return names;
}

std::string variant(bool pre_norm, nn::Activation act) {
  return std::string(pre_norm ? "pre_" : "post_") + nn::activation_name(act);
}

// ---- MultiheadAttention ----

TEST(AttentionVsTorch, SelfAttentionWithPaddingMask) {
  Generator gen(1);
  nn::MultiheadAttention mha(kD, kHeads, 0.0, gen, /*self_attention=*/true, DType::f64);
  EXPECT_EQ(parameter_names(mha), (std::vector<std::string>{"qkv.weight", "qkv.bias", "out.weight", "out.bias"}));
  const Tensor mask = oracle().get("mha_self.mask");
  check_against_torch(mha, "mha_self_pad", {"x"}, [&](const std::vector<Tensor>& in) { return mha(in[0], mask); });
}

TEST(AttentionVsTorch, SelfAttentionCausalWithPaddingMask) {
  Generator gen(2);
  nn::MultiheadAttention mha(kD, kHeads, 0.0, gen, true, DType::f64);
  const Tensor mask = oracle().get("mha_self.mask");
  check_against_torch(mha, "mha_self_causal_pad", {"x"},
                      [&](const std::vector<Tensor>& in) { return mha(in[0], mask, /*causal=*/true); });
}

TEST(AttentionVsTorch, CrossAttentionWithPaddingMask) {
  Generator gen(3);
  nn::MultiheadAttention mha(kD, kHeads, 0.0, gen, /*self_attention=*/false, DType::f64);
  EXPECT_EQ(parameter_names(mha), (std::vector<std::string>{"q.weight", "q.bias", "kv.weight", "kv.bias",
                                                            "out.weight", "out.bias"}));
  const Tensor mask = oracle().get("mha_cross.mask");
  check_against_torch(mha, "mha_cross_pad", {"x", "memory"}, [&](const std::vector<Tensor>& in) {
    return mha.forward_cross(in[0], in[1], mask);
  });
}

// ---- encoder and decoder layers: post/pre-norm x relu/gelu ----

TEST(TransformerLayersVsTorch, EncoderLayer) {
  const Tensor mask = oracle().get("layers.src_mask");
  for (bool pre_norm : {false, true}) {
    for (nn::Activation act : {nn::Activation::relu, nn::Activation::gelu}) {
      Generator gen(4);
      TransformerEncoderLayer layer(kD, kHeads, kFF, 0.0, act, pre_norm, gen, DType::f64);
      check_against_torch(layer, "enc_" + variant(pre_norm, act), {"x"},
                          [&](const std::vector<Tensor>& in) { return layer.forward(in[0], mask); });
    }
  }
}

TEST(TransformerLayersVsTorch, DecoderLayer) {
  const Tensor mask = oracle().get("layers.src_mask");
  for (bool pre_norm : {false, true}) {
    for (nn::Activation act : {nn::Activation::relu, nn::Activation::gelu}) {
      Generator gen(5);
      TransformerDecoderLayer layer(kD, kHeads, kFF, 0.0, act, pre_norm, gen, DType::f64);
      check_against_torch(layer, "dec_" + variant(pre_norm, act), {"tgt", "memory"},
                          [&](const std::vector<Tensor>& in) { return layer.forward(in[0], in[1], mask); });
    }
  }
}

// DETR's layers: positions added to the queries and keys (never the values) at every layer; the decoder's
// object queries attend to each other without a causal mask.
TEST(TransformerLayersVsTorch, DetrPositionsOnQueriesAndKeys) {
  const Tensor mask = oracle().get("layers.src_mask");
  for (bool pre_norm : {false, true}) {
    const std::string norm = pre_norm ? "pre" : "post";
    Generator gen(15);
    TransformerEncoderLayer enc(kD, kHeads, kFF, 0.0, nn::Activation::relu, pre_norm, gen, DType::f64);
    check_against_torch(enc, "detr_enc_" + norm, {"x", "pos"},
                        [&](const std::vector<Tensor>& in) { return enc.forward(in[0], mask, in[1]); });
    TransformerDecoderLayer dec(kD, kHeads, kFF, 0.0, nn::Activation::relu, pre_norm, gen, DType::f64);
    check_against_torch(dec, "detr_dec_" + norm, {"tgt", "memory", "query_pos", "pos"},
                        [&](const std::vector<Tensor>& in) {
                          return dec.forward(in[0], in[1], mask, /*cache=*/nullptr, /*causal=*/false, {in[2], in[3]});
                        });
  }
}

// ---- incremental decoding ----

TEST(IncrementalDecoding, SelfAttentionCacheWithPaddingMaskMatchesFull) {
  NoGradGuard no_grad;
  Generator gen(14);
  nn::MultiheadAttention mha(kD, kHeads, 0.0, gen, true, DType::f64);
  mha.load_state_dict(torch_state("mha_self_causal_pad"));
  const Tensor x = oracle().get("mha_self_causal_pad.x"), mask = oracle().get("mha_self.mask");
  const Tensor full = mha(x, mask, /*causal=*/true);
  nn::KVCache cache;
  for (int64_t t = 0; t < kT; ++t) {
    // The mask covers every key seen so far: the cached ones and the new one.
    const Tensor step = mha(narrow(x, 1, t, 1), narrow(mask, 1, 0, t + 1), /*causal=*/true, &cache);
    EXPECT_TRUE(all_close(step, narrow(full, 1, t, 1), 1e-12, 1e-12, "position " + std::to_string(t)));
    EXPECT_EQ(cache.k.shape(), (Shape{2, kHeads, t + 1, kD / kHeads}));
  }
}

// Decoding in chunks of `chunk` positions with a cache reproduces the full causal layer at every position.
void check_incremental(TransformerDecoderLayer& layer, const std::string& c, int64_t chunk) {
  SCOPED_TRACE(c + " chunk " + std::to_string(chunk));
  NoGradGuard no_grad;
  layer.load_state_dict(torch_state(c));
  const Tensor y = oracle().get(c + ".tgt"), memory = oracle().get(c + ".memory");
  const Tensor mask = oracle().get("layers.src_mask");
  const Tensor full = layer.forward(y, memory, mask);
  DecoderLayerCache cache;
  for (int64_t t = 0; t < kT; t += chunk) {
    const int64_t n = std::min(chunk, kT - t);
    // After the first step the cross-attention reads only the cache.
    const Tensor step = layer.forward(narrow(y, 1, t, n), t == 0 ? memory : Tensor(), mask, &cache);
    EXPECT_TRUE(all_close(step, narrow(full, 1, t, n), 1e-12, 1e-12, "position " + std::to_string(t)));
    EXPECT_EQ(cache.self_attn.length(), t + n);
    EXPECT_EQ(cache.cross_attn.length(), kS);
  }
}

TEST(IncrementalDecoding, CacheMatchesFullCausalLayer) {
  for (bool pre_norm : {false, true}) {
    Generator gen(6);
    TransformerDecoderLayer layer(kD, kHeads, kFF, 0.0, nn::Activation::gelu, pre_norm, gen, DType::f64);
    const std::string c = "dec_" + variant(pre_norm, nn::Activation::gelu);
    check_incremental(layer, c, 1);
    check_incremental(layer, c, 2);  // several new positions per step: causal within the chunk too
  }
}

// ---- padding ----

TEST(EncoderPadding, PadContentDoesNotReachRealPositions) {
  const Tensor mask = oracle().get("layers.src_mask");  // batch 1 pads its last two positions
  for (bool pre_norm : {false, true}) {
    const std::string c = "enc_" + variant(pre_norm, nn::Activation::relu);
    Generator gen(7);
    TransformerEncoderLayer layer(kD, kHeads, kFF, 0.0, nn::Activation::relu, pre_norm, gen, DType::f64);
    layer.load_state_dict(torch_state(c));
    const Tensor x = oracle().get(c + ".x");
    Tensor noisy = clone(x);
    copy_(narrow(narrow(noisy, 0, 1, 1), 1, kS - 2, 2), 100.0 * randn({1, 2, kD}, gen, DType::f64));
    const Tensor y = layer.forward(x, mask), y_noisy = layer.forward(noisy, mask);
    EXPECT_TRUE(all_close(narrow(y, 0, 0, 1), narrow(y_noisy, 0, 0, 1), 0, 0, "unpadded batch 0"));
    EXPECT_TRUE(all_close(narrow(narrow(y, 0, 1, 1), 1, 0, kS - 2), narrow(narrow(y_noisy, 0, 1, 1), 1, 0, kS - 2),
                          1e-13, 1e-13, "real positions of batch 1"));
    EXPECT_FALSE(all_close(y, y_noisy, 1e-3, 1e-3));  // the pad positions themselves did change
  }
}

// ---- f32 ----

TEST(AttentionF32, LayersWithinF32ToleranceOfF64Reference) {
  const Tensor mask = oracle().get("layers.src_mask");
  for (bool pre_norm : {false, true}) {
    Generator gen(8);
    const nn::Activation act = nn::Activation::gelu;
    TransformerEncoderLayer enc(kD, kHeads, kFF, 0.0, act, pre_norm, gen, DType::f32);
    const std::string e = "enc_" + variant(pre_norm, act);
    enc.load_state_dict(torch_state(e, DType::f32));
    const Tensor y_enc = enc.forward(oracle_as(e + ".x", DType::f32), mask);
    EXPECT_EQ(y_enc.dtype(), DType::f32);
    EXPECT_TRUE(all_close(to_dtype(y_enc, DType::f64), oracle().get(e + ".y"), kF32Tol, kF32Tol, e));

    TransformerDecoderLayer dec(kD, kHeads, kFF, 0.0, act, pre_norm, gen, DType::f32);
    const std::string d = "dec_" + variant(pre_norm, act);
    dec.load_state_dict(torch_state(d, DType::f32));
    const Tensor y_dec = dec.forward(oracle_as(d + ".tgt", DType::f32), oracle_as(d + ".memory", DType::f32), mask);
    EXPECT_TRUE(all_close(to_dtype(y_dec, DType::f64), oracle().get(d + ".y"), kF32Tol, kF32Tol, d));
  }
}

// ---- initialisation and dropout ----

// Every element within [-bound, bound] and the spread of U(-bound, bound) (variance bound^2 / 3).
void expect_uniform(const Tensor& t, double bound, const std::string& what) {
  const std::vector<double> v = to_vector(t);
  double sq = 0, lo = 0, hi = 0;
  for (double e : v) {
    sq += e * e;
    lo = std::min(lo, e);
    hi = std::max(hi, e);
  }
  EXPECT_GE(lo, -bound) << what;
  EXPECT_LE(hi, bound) << what;
  EXPECT_NEAR(sq / v.size(), bound * bound / 3, 0.1 * bound * bound / 3) << what;
}

TEST(AttentionInit, XavierInProjectionZeroBiasesLinearOut) {
  const int64_t d = 64;
  const double xavier = std::sqrt(6.0 / (d + 3 * d));
  Generator gen(9);
  nn::MultiheadAttention self(d, 4, 0.1, gen, true);
  const nn::StateDict s = self.state_dict();
  expect_uniform(s.at("qkv.weight"), xavier, "qkv.weight");
  expect_uniform(s.at("out.weight"), 1.0 / std::sqrt(d), "out.weight");
  EXPECT_ALL_CLOSE(s.at("qkv.bias"), zeros({3 * d}), 0, 0);
  EXPECT_ALL_CLOSE(s.at("out.bias"), zeros({d}), 0, 0);
  nn::MultiheadAttention cross(d, 4, 0.1, gen, false);
  const nn::StateDict c = cross.state_dict();
  expect_uniform(c.at("q.weight"), xavier, "q.weight");  // rows of the same (3d, d) xavier matrix
  expect_uniform(c.at("kv.weight"), xavier, "kv.weight");
  EXPECT_ALL_CLOSE(c.at("kv.bias"), zeros({2 * d}), 0, 0);
  EXPECT_EQ(cross.head_dim(), 16);
  EXPECT_FALSE(cross.is_self_attention());
}

TEST(AttentionDropout, OnlyWhileTrainingOnTheProbabilities) {
  Generator init(10), drop(11);
  nn::MultiheadAttention mha(kD, kHeads, 0.5, init, drop, true, DType::f64);
  const Tensor x = randn({2, kT, kD}, init, DType::f64);
  mha.eval();
  const Tensor y_eval = mha(x);
  EXPECT_EQ(drop.offset(), 0u);
  mha.train();
  const Tensor y_train = mha(x);
  EXPECT_EQ(drop.offset(), static_cast<uint64_t>(2 * kHeads * kT * kT));  // one counter per probability
  EXPECT_FALSE(all_close(y_train, y_eval, 1e-3, 1e-3));
}

// At a group of one the sharded activations (attention probabilities, the feed-forward block) drop from the
// ordinary dropout stream, as the single-process layers did, so a one-rank run is the same with or without a
// sharded stream.
TEST(TransformerLayersDropout, OneRankDrawsShardedActivationsFromTheOrdinaryStream) {
  const Tensor x = uniform64({2, kS, kD}, 17);
  Tensor outputs[2];
  for (int with_sharded : {0, 1}) {
    Generator init(18), drop(19), sharded(20);
    models::TensorParallel tp;
    if (with_sharded) tp.sharded_dropout_gen = &sharded;
    TransformerEncoderLayer layer(kD, kHeads, kFF, 0.5, 0.5, nn::Activation::relu, false, init, drop, DType::f64, tp);
    outputs[with_sharded] = layer.forward(x);
    EXPECT_EQ(sharded.offset(), 0u);
    // attention probabilities (B H S S), the feed-forward's hidden units (B S FF), two residual branches (B S D)
    EXPECT_EQ(drop.offset(), static_cast<uint64_t>(2 * kHeads * kS * kS + 2 * kS * kFF + 2 * 2 * kS * kD));
  }
  EXPECT_ALL_CLOSE(outputs[0], outputs[1], 0, 0);
}

// ---- positional encoding ----

TEST(PositionalEncoding, MatchesPaperFormulaAndOffsets) {
  for (int64_t d : {8, 7}) {
    const Tensor expected = oracle().get("pe_" + std::to_string(d) + ".table");
    const int64_t max_len = expected.size(0);
    nn::SinusoidalPositionalEncoding pe(d, max_len, DType::f64);
    EXPECT_ALL_CLOSE(pe.table(), expected, 1e-12, 1e-12);
    EXPECT_TRUE(pe.state_dict().empty());  // non-persistent
    EXPECT_EQ(pe.named_buffers().size(), 1u);
    Generator gen(12);
    const Tensor x = randn({2, 4, d}, gen, DType::f64);
    const Tensor y = pe(x, /*offset=*/3);
    EXPECT_ALL_CLOSE(y, x + narrow(expected, 0, 3, 4), 1e-15, 1e-15);
    nn::SinusoidalPositionalEncoding pe32(d, max_len);
    EXPECT_ALL_CLOSE(to_dtype(pe32.table(), DType::f64), expected, 1e-6, 1e-7);
  }
}

// ---- finite differences ----

TEST(GradcheckAttention, InputsOfMaskedSelfAndCrossAttention) {
  Generator gen(13);
  const nn::MultiheadAttention self(kD, kHeads, 0.0, gen, true, DType::f64);
  const nn::MultiheadAttention cross(kD, kHeads, 0.0, gen, false, DType::f64);
  const Tensor self_mask = bool_tensor({0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, {2, kT});
  const Tensor mem_mask = bool_tensor({0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1}, {2, kS});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& v) { return self.forward(v[0], self_mask, true); },
                        {uniform64({2, kT, kD}, 14)}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& v) { return cross.forward_cross(v[0], v[1], mem_mask); },
                        {uniform64({2, kT, kD}, 15), uniform64({2, kS, kD}, 16)}));
}

}  // namespace
}  // namespace px::test

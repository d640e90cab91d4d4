// The Translator against its PyTorch twin (tests/oracle/gen_translator.py, f64, same weights): memory, logits,
// loss, every parameter gradient and a 20-step AdamW run; plus cache decoding, padding, options, loading and init.
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/clip_grad_norm.h"
#include "core/optim/lr_schedule.h"
#include "core/util/error.h"
#include "models/translator/transformer.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

using translator::DecoderCache;
using translator::Encoded;
using translator::Translator;
using translator::TranslatorOptions;

// gen_translator.py's sizes and cases.
constexpr int64_t kVocab = 23, kD = 16, kHeads = 2, kLayers = 2, kFF = 32, kB = 3, kT = 6;
constexpr int64_t kPad = 0;
constexpr double kLabelSmoothing = 0.1;
constexpr int kTrainSteps = 20, kWarmup = 5;
constexpr double kLr = 1e-3, kWeightDecay = 0.01, kClip = 1.0;
const std::vector<std::string> kCases = {"post", "pre_shared_tied"};

// f64 against torch's f64: the same products summed in other orders through ~10 layers, so only rounding
// differs (observed < 1e-14); 1e-12 leaves room for other BLAS blockings and still catches any wiring error.
constexpr double kTol = 1e-12;
// The 20 f64 training steps: losses, norms and weights agree to < 1e-13 (observed), except the attention key
// biases: AdamW divides by sqrt(v) + 1e-9, so the rounding noise (~1e-18) of their gradients, which are zero
// in exact arithmetic, moves them by up to lr * 1e-18 / 1e-9 per step (observed 6e-12 after 20 steps).
constexpr double kTrainTol = 1e-12;
constexpr double kKeyBiasTol = 1e-10;
// The same run in f32 against torch's f64 trajectory: f32 rounding (~6e-8) grown over 20 Adam steps
// (observed < 1e-6 relative); key biases are skipped (see without_key_bias).
constexpr double kTrainF32Tol = 1e-5;
// Cached decoding against the full pass, both f64: the same sums except over fewer (cached) keys.
constexpr double kCacheTol = 1e-10;

const PxtFile& oracle() {
  static const PxtFile file("translator.pxt");
  return file;
}

TranslatorOptions case_options(const std::string& c, DType dtype = DType::f64) {
  TranslatorOptions o;
  o.src_vocab = o.tgt_vocab = kVocab;
  o.d_model = kD;
  o.num_heads = kHeads;
  o.encoder_layers = o.decoder_layers = kLayers;
  o.d_ff = kFF;
  o.dropout = 0.0;
  o.max_positions = 32;
  o.pad_id = kPad;
  o.dtype = dtype;
  if (c == "post") {
    o.activation = nn::Activation::relu;
  } else {
    CHECK_EQ(c, "pre_shared_tied");
    o.activation = nn::Activation::gelu;
    o.pre_norm = o.share_embeddings = o.tie_output = true;
  }
  return o;
}

// Entries "<prefix><key>" as a map keyed by <key>, converted to dtype.
nn::StateDict oracle_group(const std::string& prefix, DType dtype = DType::f64) {
  nn::StateDict sd;
  for (const auto& [key, t] : oracle().all())
    if (key.rfind(prefix, 0) == 0) sd.emplace(key.substr(prefix.size()), to_dtype(t, dtype));
  return sd;
}

// A model of the case with torch's weights (strict load).
struct CaseModel {
  explicit CaseModel(const std::string& c, DType dtype = DType::f64)
      : init(1), dropout(2), model(case_options(c, dtype), init, dropout) {
    model.load_state_dict(oracle_group(c + ".sd.", dtype));
  }
  Generator init, dropout;
  Translator model;
};

// Non-pad entries of tgt_out (B, T).
double count_targets(const Tensor& tgt_out) {
  double n = 0;
  for (double id : to_vector(tgt_out)) n += id != kPad ? 1 : 0;
  return n;
}

std::set<std::string> keys(const nn::StateDict& sd) {
  std::set<std::string> out;
  for (const auto& [k, v] : sd) out.insert(k);
  return out;
}

// ---- against torch ----

TEST(TranslatorVsTorch, MemoryLogitsLossAndEveryGradient) {
  for (const std::string& c : kCases) {
    SCOPED_TRACE(c);
    CaseModel m(c);
    Translator& model = m.model;
    std::set<std::string> names;
    for (const auto& [name, p] : model.named_parameters()) names.insert(name);
    EXPECT_EQ(names, keys(oracle_group(c + ".grad.")));  // the same parameters as torch's, by mapped name
    EXPECT_EQ(keys(model.state_dict()), keys(oracle_group(c + ".sd.")));

    const Tensor src = oracle().get(c + ".src"), tgt_in = oracle().get(c + ".tgt_in");
    const Encoded enc = model.encode(src);
    EXPECT_TRUE(all_close(enc.memory, oracle().get(c + ".memory"), kTol, kTol, "memory"));
    EXPECT_TRUE(all_close(to_dtype(enc.pad_mask, DType::i64), to_dtype(oracle().get(c + ".pad_mask"), DType::i64),
                          0, 0, "pad_mask"));
    const Tensor logits = model.decode(tgt_in, enc);
    EXPECT_TRUE(all_close(logits, oracle().get(c + ".logits"), kTol, kTol, "logits"));
    const Tensor loss = translator::translation_loss(logits, oracle().get(c + ".tgt_out"), kPad, kLabelSmoothing);
    EXPECT_NEAR(loss.item(), oracle().get(c + ".loss").item(), kTol * std::abs(loss.item()));

    backward(loss);
    for (const auto& [name, p] : model.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_TRUE(all_close(p.grad(), oracle().get(c + ".grad." + name), kTol, kTol, name));
    }
  }
}

// t without the key-projection bias rows when `name` is an attention in-projection bias. Those rows cannot
// change any output (they add the same q.b_k to every score of a query), so their gradient is zero up to
// rounding, and AdamW turns that noise into steps of up to lr in f32 (where it exceeds eps = 1e-9).
Tensor without_key_bias(const std::string& name, const Tensor& t) {
  const auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with("self_attn.qkv.bias")) return cat({narrow(t, 0, 0, kD), narrow(t, 0, 2 * kD, kD)}, 0);  // q, v
  if (ends_with("cross_attn.kv.bias")) return narrow(t, 0, kD, kD);  // v
  return t;
}

// The 20 recorded batches, loss = sum CE / target tokens, clip at 1, AdamW with the inverse-sqrt schedule;
// compares each step's loss, pre-clip gradient norm and lr, then the final weights.
void check_training_run(DType dtype, double tol) {
  CaseModel m("post", dtype);
  Translator& model = m.model;
  optim::AdamW opt(model.parameters(), kLr, kWeightDecay, {.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-9});
  const optim::InverseSqrtSchedule schedule(kWarmup);
  const std::vector<double> losses = to_vector(oracle().get("train.loss"));
  const std::vector<double> norms = to_vector(oracle().get("train.grad_norm"));
  const std::vector<double> lrs = to_vector(oracle().get("train.lr"));
  for (int k = 0; k < kTrainSteps; ++k) {
    SCOPED_TRACE("step " + std::to_string(k + 1));
    const std::string i = std::to_string(k);
    const Tensor tgt_out = oracle().get("train.tgt_out." + i);
    opt.zero_grad();
    const Tensor logits = model.forward(oracle().get("train.src." + i), oracle().get("train.tgt_in." + i));
    const Tensor loss = translator::translation_loss(logits, tgt_out, kPad, kLabelSmoothing) / count_targets(tgt_out);
    backward(loss);
    const double norm = optim::clip_grad_norm(model.parameters(), kClip);
    optim::apply_schedule(opt, schedule, k + 1);
    EXPECT_NEAR(opt.lr(), lrs[k], 1e-15);
    opt.step();
    EXPECT_NEAR(loss.item(), losses[k], tol * losses[k]);
    EXPECT_NEAR(norm, norms[k], tol * norms[k]);
  }
  const nn::StateDict final_state = oracle_group("train.final.");
  for (const auto& [name, p] : model.named_parameters()) {
    const Tensor actual = to_dtype(p, DType::f64), expected = final_state.at(name);
    EXPECT_TRUE(all_close(without_key_bias(name, actual), without_key_bias(name, expected), tol, tol, name));
    if (dtype == DType::f64) {
      EXPECT_TRUE(all_close(actual, expected, kKeyBiasTol, kKeyBiasTol, name));
    }
  }
}

TEST(TranslatorVsTorch, TwentyAdamWStepsF64) { check_training_run(DType::f64, kTrainTol); }

TEST(TranslatorVsTorch, TwentyAdamWStepsF32) { check_training_run(DType::f32, kTrainF32Tol); }

// ---- state dicts and options ----

template <typename F>
void expect_checkpoint_error_naming(F&& f, const std::string& key) {
  try {
    f();
    ADD_FAILURE() << "no CheckpointError for " << key;
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(TranslatorStateDict, StrictLoadNamesMissingExtraAndMisshapedKeys) {
  CaseModel m("post");
  const nn::StateDict good = oracle_group("post.sd.");
  const std::string victim = "decoder.layers.1.cross_attn.kv.weight";
  const Tensor before = clone(m.model.state_dict().at(victim));

  nn::StateDict missing = good;
  missing.erase(victim);
  expect_checkpoint_error_naming([&] { m.model.load_state_dict(missing); }, victim);
  nn::StateDict extra = good;
  extra.emplace("decoder.layers.2.norm1.weight", good.at("decoder.layers.1.norm1.weight"));
  expect_checkpoint_error_naming([&] { m.model.load_state_dict(extra); }, "decoder.layers.2.norm1.weight");
  nn::StateDict misshaped = good;
  misshaped[victim] = zeros({2 * kD, kD + 1}, DType::f64);
  expect_checkpoint_error_naming([&] { m.model.load_state_dict(misshaped); }, victim);
  EXPECT_ALL_CLOSE(m.model.state_dict().at(victim), before, 0, 0);  // failed loads copied nothing

  // A shared/tied model's state dict has one table and no output projection.
  CaseModel shared("pre_shared_tied");
  const std::set<std::string> shared_keys = keys(shared.model.state_dict());
  EXPECT_EQ(shared_keys.count("embed.weight"), 1u);
  EXPECT_EQ(shared_keys.count("src_embed.weight") + shared_keys.count("tgt_embed.weight") +
                shared_keys.count("output_proj.weight"),
            0u);
  EXPECT_EQ(shared_keys.count("decoder.norm.weight"), 1u);
  // Separate tables loaded into a shared model: the shared table is missing.
  expect_checkpoint_error_naming([&] { shared.model.load_state_dict(good); }, "'embed.weight'");
}

template <typename F>
void expect_config_error_naming(F&& f, const std::string& field) {
  try {
    f();
    ADD_FAILURE() << "no ConfigError for " << field;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(TranslatorOptions, InconsistentOptionsAreConfigErrors) {
  EXPECT_NO_THROW(translator::check_options(case_options("post")));
  TranslatorOptions heads = case_options("post");
  heads.num_heads = 3;
  expect_config_error_naming([&] { translator::check_options(heads); }, "d_model");
  TranslatorOptions vocabs = case_options("pre_shared_tied");
  vocabs.tgt_vocab = kVocab + 1;
  expect_config_error_naming([&] { translator::check_options(vocabs); }, "share_embeddings");
  Generator gen(3);
  expect_config_error_naming([&] { Translator model(vocabs, gen, gen); }, "share_embeddings");
  TranslatorOptions zero_layers = case_options("post");
  zero_layers.decoder_layers = 0;
  expect_config_error_naming([&] { translator::check_options(zero_layers); }, "decoder_layers");
  TranslatorOptions dropout = case_options("post");
  dropout.dropout = 1.0;
  expect_config_error_naming([&] { translator::check_options(dropout); }, "dropout");
  TranslatorOptions pad = case_options("post");
  pad.pad_id = kVocab;
  expect_config_error_naming([&] { translator::check_options(pad); }, "pad_id");
}

TEST(TranslatorOptions, PositionsBeyondMaxPositionsAreADataError) {
  CaseModel m("post");
  const Tensor long_src = full({1, 33}, 5, DType::i64);  // max_positions is 32
  EXPECT_THROW(m.model.encode(long_src), DataError);
}

// ---- incremental decoding ----

// Decoding one token at a time with a cache reproduces the teacher-forced logits at every position.
TEST(TranslatorDecoding, CacheOneTokenAtATimeMatchesTeacherForcing) {
  for (const std::string& c : kCases) {
    SCOPED_TRACE(c);
    NoGradGuard no_grad;
    CaseModel m(c);
    m.model.eval();
    const Tensor src = oracle().get(c + ".src"), tgt_in = oracle().get(c + ".tgt_in");
    const Encoded enc = m.model.encode(src);
    const Tensor full_logits = m.model.decode(tgt_in, enc);
    DecoderCache cache = m.model.new_cache();
    EXPECT_EQ(cache.layers.size(), static_cast<size_t>(kLayers));
    // After the first step the cross-attention caches hold the projected memory.
    const Encoded mask_only{Tensor(), enc.pad_mask};
    for (int64_t t = 0; t < kT; ++t) {
      const Tensor step = m.model.decode(narrow(tgt_in, 1, t, 1), t == 0 ? enc : mask_only, &cache);
      EXPECT_EQ(cache.length, t + 1);
      // f64 with the same weights; only the order of additions differs from the full pass.
      EXPECT_TRUE(all_close(step, narrow(full_logits, 1, t, 1), kCacheTol, kCacheTol, "position " + std::to_string(t)));
    }
  }
}

// After select_rows([2, 0]) the cache continues rows 2 and 0, in that order.
TEST(TranslatorDecoding, SelectRowsReordersTheCache) {
  NoGradGuard no_grad;
  CaseModel m("pre_shared_tied");
  const std::string c = "pre_shared_tied";
  const Tensor src = oracle().get(c + ".src"), tgt_in = oracle().get(c + ".tgt_in");
  const Tensor rows = int_tensor({2, 0}, {2});
  const Encoded enc = m.model.encode(src);
  const Tensor expected = index_select(m.model.decode(tgt_in, enc), 0, rows);  // (2, T, V)

  constexpr int64_t kBefore = 3;  // steps decoded for the whole batch before the reordering
  DecoderCache cache = m.model.new_cache();
  m.model.decode(narrow(tgt_in, 1, 0, kBefore), enc, &cache);
  cache.select_rows(rows);
  EXPECT_EQ(cache.layers[0].self_attn.k.size(0), 2);
  EXPECT_EQ(cache.layers[kLayers - 1].cross_attn.v.size(0), 2);
  const Encoded reordered{Tensor(), index_select(enc.pad_mask, 0, rows)};
  const Tensor tgt_rows = index_select(tgt_in, 0, rows);
  for (int64_t t = kBefore; t < kT; ++t) {
    const Tensor step = m.model.decode(narrow(tgt_rows, 1, t, 1), reordered, &cache);
    EXPECT_TRUE(all_close(step, narrow(expected, 1, t, 1), kCacheTol, kCacheTol, "position " + std::to_string(t)));
  }
  EXPECT_EQ(cache.length, kT);
}

// ---- padding ----

TEST(TranslatorPadding, PaddedMemoryDoesNotReachRealOutputs) {
  for (const std::string& c : kCases) {
    SCOPED_TRACE(c);
    NoGradGuard no_grad;
    CaseModel m(c);
    const Tensor src = oracle().get(c + ".src"), tgt_in = oracle().get(c + ".tgt_in");
    const Encoded enc = m.model.encode(src);
    const Tensor logits = m.model.decode(tgt_in, enc);
    // Garbage in the padded memory rows: masked keys get probability exactly 0.
    Generator gen(4);
    const Tensor noise = 100.0 * randn(enc.memory.shape(), gen, DType::f64);
    const Tensor pad = unsqueeze(enc.pad_mask, 2);  // (B, S, 1)
    const Encoded noisy{where(pad, enc.memory + noise, enc.memory), enc.pad_mask};
    EXPECT_ALL_CLOSE(m.model.decode(tgt_in, noisy), logits, 0, 0);
    // Two more pad columns change neither the real memory rows nor the logits.
    const Tensor wider = cat({src, full({kB, 2}, kPad, DType::i64)}, 1);
    const Encoded enc_wider = m.model.encode(wider);
    EXPECT_TRUE(all_close(narrow(enc_wider.memory, 1, 0, src.size(1)), enc.memory, 1e-12, 1e-12, "memory"));
    EXPECT_TRUE(all_close(m.model.decode(tgt_in, enc_wider), logits, 1e-12, 1e-12, "logits with wider padding"));
  }
}

// ---- dropout and determinism ----

TEST(TranslatorDropout, DrawsFromDropoutGenOnlyWhileTraining) {
  TranslatorOptions o = case_options("post");
  o.dropout = 0.3;
  Generator init_a(9), drop_a(10), init_b(9), drop_b(11);
  Translator a(o, init_a, drop_a), b(o, init_b, drop_b);
  EXPECT_EQ(init_a.offset(), init_b.offset());
  for (const auto& [name, t] : a.state_dict()) EXPECT_ALL_CLOSE(t, b.state_dict().at(name), 0, 0);  // same init
  const Tensor src = oracle().get("post.src"), tgt_in = oracle().get("post.tgt_in");
  a.eval();
  b.eval();
  EXPECT_ALL_CLOSE(a.forward(src, tgt_in), b.forward(src, tgt_in), 0, 0);
  EXPECT_EQ(drop_a.offset(), 0u);
  a.train();
  b.train();
  const Tensor train_a = a.forward(src, tgt_in);
  EXPECT_GT(drop_a.offset(), 0u);
  EXPECT_FALSE(all_close(train_a, b.forward(src, tgt_in), 1e-3, 1e-3));  // other masks
}

// ---- initialisation and size ----

TEST(TranslatorInit, EmbeddingsAreNormalWithStdInvSqrtDAndZeroPadRow) {
  TranslatorOptions o = case_options("post", DType::f32);
  o.d_model = 64;
  o.num_heads = 4;
  o.src_vocab = 1000;
  o.tgt_vocab = 1200;
  o.pad_id = 1;
  Generator init(5), drop(6);
  const Translator model(o, init, drop);
  const nn::StateDict sd = model.state_dict();
  for (const char* name : {"src_embed.weight", "tgt_embed.weight"}) {
    SCOPED_TRACE(name);
    const Tensor w = sd.at(name);
    std::vector<double> v = to_vector(w);
    double sum_sq = 0, total = 0;
    for (double e : v) {
      sum_sq += e * e;
      total += e;
    }
    const double n = static_cast<double>(v.size() - o.d_model);  // the pad row is excluded
    // ~64k draws: the sample std is within 1% of 1/8 and the mean within 5 standard errors of 0.
    EXPECT_NEAR(std::sqrt(sum_sq / n), 1.0 / 8.0, 0.01 / 8.0);
    EXPECT_NEAR(total / n, 0.0, 5.0 / 8.0 / std::sqrt(n));
    EXPECT_ALL_CLOSE(narrow(w, 0, o.pad_id, 1), zeros({1, o.d_model}), 0, 0);
  }
  EXPECT_EQ(sd.count("output_proj.weight"), 1u);
  EXPECT_EQ(model.state_dict().at("output_proj.weight").shape(), (Shape{1200, 64}));
}

// Embeddings + per layer (attention 4d^2 + 4d each, FF 2 d d_ff + d_ff + d, 2d per LayerNorm) + final norms
// + the output projection; a shared table counts once.
int64_t expected_parameter_count(const TranslatorOptions& o) {
  const int64_t d = o.d_model, attention = 4 * d * d + 4 * d, ff = 2 * d * o.d_ff + o.d_ff + d, norm = 2 * d;
  const int64_t embeddings = o.share_embeddings ? o.src_vocab * d : (o.src_vocab + o.tgt_vocab) * d;
  const int64_t encoder = o.encoder_layers * (attention + ff + 2 * norm) + (o.pre_norm ? norm : 0);
  const int64_t decoder = o.decoder_layers * (2 * attention + ff + 3 * norm) + (o.pre_norm ? norm : 0);
  return embeddings + encoder + decoder + (o.tie_output ? 0 : o.tgt_vocab * d);
}

TEST(TranslatorInit, ParameterCountFollowsTheFormula) {
  TranslatorOptions base = case_options("post", DType::f32);
  base.src_vocab = 37;
  base.tgt_vocab = 41;
  base.encoder_layers = 3;
  base.decoder_layers = 2;
  Generator gen(7);
  const Translator separate(base, gen, gen);
  EXPECT_EQ(separate.num_parameters(), expected_parameter_count(base));
  // d = 16, d_ff = 32: embeddings 78 * 16, encoder 3 * 2224, decoder 2 * 3344, output 41 * 16.
  EXPECT_EQ(separate.num_parameters(), 1248 + 6672 + 6688 + 656);

  TranslatorOptions shared = case_options("pre_shared_tied", DType::f32);
  Generator gen2(8);
  const Translator tied(shared, gen2, gen2);
  EXPECT_EQ(tied.num_parameters(), expected_parameter_count(shared));
  EXPECT_EQ(tied.parameters().size(), tied.named_parameters().size());
}

TEST(TranslatorLoss, MeanIsSumOverNonPadTargets) {
  const std::string c = "post";
  const Tensor logits = oracle().get(c + ".logits"), tgt_out = oracle().get(c + ".tgt_out");
  const double total = translator::translation_loss(logits, tgt_out, kPad, kLabelSmoothing).item();
  const double mean = translator::translation_loss(logits, tgt_out, kPad, kLabelSmoothing, Reduction::mean).item();
  const double tokens = count_targets(tgt_out);
  EXPECT_EQ(tokens, 14.0);  // rows of 5, 6 and 3 targets
  EXPECT_NEAR(mean, total / tokens, 1e-13);
  EXPECT_NEAR(total, oracle().get(c + ".loss").item(), kTol * total);
}

}  // namespace
}  // namespace px::test

// Tensor-parallel building blocks under mpirun, each against its tp = 1 counterpart computed in the same process:
// ShardSpec slicing/gathering, the conjugate mappings, Column/RowParallelLinear, VocabParallelEmbedding,
// vocab-parallel cross-entropy and a short MLP training run.
//
// Every rank builds the full nn::Linear / nn::Embedding / px::cross_entropy from a Generator with the same seed
// as the parallel layer and compares. Tolerances: f64 1e-12 — the parallel path only reorders sums (the GEMM's
// inner dimension split over ranks and added by the all-reduce, row statistics summed per shard), which moves
// results by a few ulps (~1e-16 relative), far below 1e-12, while any slicing or communication mistake is O(1).
// f32 1e-5 for the same reason at f32's ~6e-8 ulp over sums of at most a few dozen terms.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/embedding.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/sgd.h"
#include "core/util/error.h"
#include "parallel/grid.h"
#include "parallel/tp/mappings.h"
#include "parallel/tp/parallel_linear.h"
#include "parallel/tp/shard_spec.h"
#include "parallel/tp/vocab_parallel.h"
#include "tests/common/compare.h"
#include "tests/common/gradcheck.h"
#include "tests/common/mpi_test_main.h"

namespace px::test {
namespace {

using parallel::ColumnParallelLinear;
using parallel::ParallelGrid;
using parallel::ProcessGroup;
using parallel::RowParallelLinear;
using parallel::ShardSpec;
using parallel::VocabParallelEmbedding;

constexpr double kTol64 = 1e-12;  // see the file comment
constexpr double kTol32 = 1e-5;

// The tp sizes this world runs: np 1 -> tp 1; np 2 -> tp 2; np 4 -> tp 2 (dp 2) and tp 4.
std::vector<int> tp_sizes() {
  const int world = test::world().size();
  if (world == 1) return {1};
  std::vector<int> sizes;
  for (int tp = 2; tp <= world; ++tp)
    if (world % tp == 0) sizes.push_back(tp);
  return sizes;
}

// The same draw on every rank: N(0, 1) from a generator seeded with `seed`.
Tensor same_randn(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  return randn(shape, gen, dtype);
}

Tensor leaf(const Tensor& t) {
  Tensor l = clone(t);
  l.set_requires_grad();
  return l;
}

ShardSpec last_dim(const Tensor& t, int64_t groups = 1) { return ShardSpec{t.dim() - 1, groups}; }

Tensor shard(const Tensor& full, const ShardSpec& spec, ProcessGroup& tp) {
  return parallel::shard_of(full, spec, tp.rank(), tp.size());
}

// ---------------------------------------------------------------- ShardSpec

TEST(ShardSpec, ShardOfKeepsEachGroupsRankChunk) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const int64_t rows = 12, cols = 4 * tp;
    const Tensor full = same_randn({rows, cols}, 1);  // (12, 4 tp)
    const std::vector<double> f = to_vector(full);
    for (const ShardSpec spec : {ShardSpec{0, 1}, ShardSpec{0, 3}, ShardSpec{1, 1}, ShardSpec{1, 2}}) {
      SCOPED_TRACE("dim " + std::to_string(spec.dim) + " groups " + std::to_string(spec.groups));
      const int64_t n = full.size(spec.dim);
      if (n % (spec.groups * tp) != 0) continue;  // 12 rows do not split into 3 groups x 8 ranks
      const int64_t chunk = n / (spec.groups * tp);
      const Tensor s = shard(full, spec, grid.tp());
      Shape expected_shape = full.shape();
      expected_shape[spec.dim] = n / tp;
      ASSERT_EQ(s.shape(), expected_shape);
      const std::vector<double> got = to_vector(s);
      // Shard index i along dim = (group g, offset j) -> full index (g * tp + rank) * chunk + j.
      for (int64_t r = 0; r < s.size(0); ++r)
        for (int64_t c = 0; c < s.size(1); ++c) {
          const int64_t i = spec.dim == 0 ? r : c;
          const int64_t mapped = (i / chunk * tp + grid.tp_rank()) * chunk + i % chunk;
          const int64_t fr = spec.dim == 0 ? mapped : r, fc = spec.dim == 0 ? c : mapped;
          EXPECT_EQ(got[r * s.size(1) + c], f[fr * cols + fc]) << "shard element (" << r << ", " << c << ")";
        }
    }
    // Replicated: a copy, not a view.
    const Tensor copy = shard(full, ShardSpec{}, grid.tp());
    EXPECT_ALL_CLOSE(copy, full, 0.0, 0.0);
    EXPECT_NE(copy.storage(), full.storage());
  }
}

TEST(ShardSpec, GatherShardsRoundTrip) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const Tensor full = same_randn({2, 6 * tp, 3}, 2);  // (2, 6 tp, 3)
    for (const ShardSpec spec : {ShardSpec{1, 1}, ShardSpec{1, 3}, ShardSpec{1, 2}, ShardSpec{0, 1},
                                 ShardSpec{2, 1}, ShardSpec{}}) {
      if (spec.sharded() && full.size(spec.dim) % (spec.groups * tp) != 0) continue;
      SCOPED_TRACE("dim " + std::to_string(spec.dim) + " groups " + std::to_string(spec.groups));
      const Tensor back = parallel::gather_shards(shard(full, spec, grid.tp()), spec, grid.tp());
      EXPECT_ALL_CLOSE(back, full, 0.0, 0.0);  // pure data movement: exact
    }
  }
}

// A module tree with sharded and replicated parameters.
class TwoLayer : public nn::Module {
 public:
  TwoLayer(Generator& gen, ProcessGroup& tp) : Module("TwoLayer") {
    qkv_ = register_module("qkv", std::make_shared<ColumnParallelLinear>(4, 12, gen, tp, true, DType::f64, 3));
    out_ = register_module("out", std::make_shared<RowParallelLinear>(4, 4, gen, tp, true, DType::f64));
    emb_ = register_module("emb", std::make_shared<VocabParallelEmbedding>(8, 4, gen, tp, DType::f64));
  }

 private:
  std::shared_ptr<ColumnParallelLinear> qkv_;
  std::shared_ptr<RowParallelLinear> out_;
  std::shared_ptr<VocabParallelEmbedding> emb_;
};

TEST(ShardSpec, CollectShardSpecsNamesEverySharedParameter) {
  for (int tp : tp_sizes()) {
    if (4 % tp != 0) continue;
    ParallelGrid grid(test::world().group(), tp);
    Generator gen(3);
    TwoLayer model(gen, grid.tp());
    const auto specs = parallel::collect_shard_specs(model);
    ASSERT_EQ(specs.size(), 4u);
    EXPECT_EQ(specs.at("qkv.weight").dim, 0);
    EXPECT_EQ(specs.at("qkv.weight").groups, 3);
    EXPECT_EQ(specs.at("qkv.bias").groups, 3);
    EXPECT_EQ(specs.at("out.weight").dim, 1);
    EXPECT_EQ(specs.count("out.bias"), 0u);  // replicated
    EXPECT_EQ(specs.at("emb.weight").dim, 0);
  }
}

// ---------------------------------------------------------------- mappings

// Rank r's tensor of a per-rank family: every rank can draw every rank's (seed + r).
Tensor rank_randn(const Shape& shape, uint64_t seed, int rank) { return same_randn(shape, seed * 1000 + rank); }

TEST(Mappings, CopyToIsIdentityForwardAndSumsGradients) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const Tensor x = leaf(same_randn({2, 3, 4}, 10));
    const Tensor y = parallel::copy_to_tp_region(x, grid.tp());
    EXPECT_ALL_CLOSE(y, x, 0.0, 0.0);
    backward(y, rank_randn({2, 3, 4}, 11, grid.tp_rank()));
    Tensor expected = zeros({2, 3, 4}, DType::f64);
    for (int r = 0; r < tp; ++r) expected = add(expected, rank_randn({2, 3, 4}, 11, r));
    EXPECT_ALL_CLOSE(x.grad(), expected, kTol64, kTol64);  // the all-reduce may add in another order
  }
}

TEST(Mappings, ReduceFromSumsForwardAndPassesGradients) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const Tensor x = leaf(rank_randn({3, 5}, 12, grid.tp_rank()));
    const Tensor x_before = clone(x.detach());
    const Tensor y = parallel::reduce_from_tp_region(x, grid.tp());
    Tensor expected = zeros({3, 5}, DType::f64);
    for (int r = 0; r < tp; ++r) expected = add(expected, rank_randn({3, 5}, 12, r));
    EXPECT_ALL_CLOSE(y, expected, kTol64, kTol64);
    EXPECT_ALL_CLOSE(x.detach(), x_before, 0.0, 0.0);  // an input the caller still holds is not reduced in place
    const Tensor g = same_randn({3, 5}, 13);
    backward(y, g);
    EXPECT_ALL_CLOSE(x.grad(), g, 0.0, 0.0);
    // A partial sum handed over is reduced in its own storage.
    Tensor partial = x_before * 1.0;
    const Storage* storage = partial.storage().get();
    const Tensor reduced = parallel::reduce_from_tp_region(std::move(partial), grid.tp());
    EXPECT_EQ(reduced.storage().get(), storage);
    EXPECT_ALL_CLOSE(reduced, expected, kTol64, kTol64);
  }
}

TEST(Mappings, ScatterToKeepsChunkAndGathersGradients) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const Tensor x = leaf(same_randn({2, 3, 2 * tp}, 14));
    const Tensor y = parallel::scatter_to_tp_region(x, grid.tp());
    EXPECT_ALL_CLOSE(y, narrow(x.detach(), 2, 2 * grid.tp_rank(), 2), 0.0, 0.0);
    backward(y, rank_randn({2, 3, 2}, 15, grid.tp_rank()));
    std::vector<Tensor> parts;
    for (int r = 0; r < tp; ++r) parts.push_back(rank_randn({2, 3, 2}, 15, r));
    EXPECT_ALL_CLOSE(x.grad(), cat(parts, 2), 0.0, 0.0);
  }
}

TEST(Mappings, GatherFromConcatenatesAndKeepsGradientChunk) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    // A transposed (non-contiguous) input: the gather must read it by its strides.
    const Tensor x = leaf(rank_randn({3, 2, 4}, 16, grid.tp_rank()));
    const Tensor xt = transpose(x, 0, 1);  // (2, 3, 4)
    const Tensor y = parallel::gather_from_tp_region(xt, grid.tp());
    std::vector<Tensor> parts;
    for (int r = 0; r < tp; ++r) parts.push_back(transpose(rank_randn({3, 2, 4}, 16, r), 0, 1));
    EXPECT_ALL_CLOSE(y, cat(parts, 2), 0.0, 0.0);
    const Tensor g = same_randn({2, 3, 4 * tp}, 17);
    backward(y, g);
    EXPECT_ALL_CLOSE(x.grad(), transpose(narrow(g, 2, 4 * grid.tp_rank(), 4), 0, 1), 0.0, 0.0);
  }
}

// ---------------------------------------------------------------- parallel linears

TEST(ColumnParallelLinear, MatchesLinearForwardBackwardAndInit) {
  for (int tp : tp_sizes()) {
    ParallelGrid grid(test::world().group(), tp);
    for (int64_t groups : {1, 3}) {
      for (bool bias : {true, false}) {
        for (bool gather_output : {false, true}) {
          SCOPED_TRACE("tp " + std::to_string(tp) + " groups " + std::to_string(groups) + " bias " +
                       std::to_string(bias) + " gather_output " + std::to_string(gather_output));
          const int64_t in = 5, out = 6 * tp;
          Generator full_gen(20), tp_gen(20);
          nn::Linear full(in, out, full_gen, bias, DType::f64);
          ColumnParallelLinear col(in, out, tp_gen, grid.tp(), bias, DType::f64, groups, gather_output);
          EXPECT_EQ(tp_gen.offset(), full_gen.offset()) << "the generator must advance as at tp = 1";
          const ShardSpec rows{0, groups};
          EXPECT_ALL_CLOSE(col.weight(), shard(full.weight(), rows, grid.tp()), 0.0, 0.0);
          if (bias) {
            EXPECT_ALL_CLOSE(col.bias(), shard(full.bias(), rows, grid.tp()), 0.0, 0.0);
          }
          EXPECT_EQ(col.bias().defined(), bias);

          const Tensor x_full = leaf(same_randn({2, 3, in}, 21)), x = leaf(x_full.detach());  // (2, 3, in)
          const Tensor y_full = full(x_full);  // (2, 3, out)
          const Tensor y = col(x);
          const Tensor w = same_randn({2, 3, out}, 22);  // weights of the scalar loss
          const ShardSpec cols = last_dim(y_full, groups);
          EXPECT_ALL_CLOSE(y, gather_output ? y_full : shard(y_full, cols, grid.tp()), kTol64, kTol64);
          backward(sum(mul(y_full, w)));
          backward(sum(mul(y, gather_output ? w : shard(w, cols, grid.tp()))));
          EXPECT_ALL_CLOSE(x.grad(), x_full.grad(), kTol64, kTol64);
          EXPECT_ALL_CLOSE(col.weight().grad(), shard(full.weight().grad(), rows, grid.tp()), kTol64, kTol64);
          if (bias) {
            EXPECT_ALL_CLOSE(col.bias().grad(), shard(full.bias().grad(), rows, grid.tp()), kTol64, kTol64);
          }
        }
      }
    }
  }
}

TEST(RowParallelLinear, MatchesLinearForwardBackwardAndInit) {
  for (int tp : tp_sizes()) {
    ParallelGrid grid(test::world().group(), tp);
    for (bool bias : {true, false}) {
      for (bool input_is_parallel : {true, false}) {
        SCOPED_TRACE("tp " + std::to_string(tp) + " bias " + std::to_string(bias) + " input_is_parallel " +
                     std::to_string(input_is_parallel));
        const int64_t in = 4 * tp, out = 5;
        Generator full_gen(30), tp_gen(30);
        nn::Linear full(in, out, full_gen, bias, DType::f64);
        RowParallelLinear row(in, out, tp_gen, grid.tp(), bias, DType::f64, input_is_parallel);
        EXPECT_EQ(tp_gen.offset(), full_gen.offset()) << "the generator must advance as at tp = 1";
        const ShardSpec in_cols{1, 1};
        EXPECT_ALL_CLOSE(row.weight(), shard(full.weight(), in_cols, grid.tp()), 0.0, 0.0);
        if (bias) {
          EXPECT_ALL_CLOSE(row.bias(), full.bias(), 0.0, 0.0);
        }

        const Tensor x_full = leaf(same_randn({3, 2, in}, 31));  // (3, 2, in)
        const Tensor x = leaf(input_is_parallel ? shard(x_full, last_dim(x_full), grid.tp()) : x_full.detach());
        const Tensor y_full = full(x_full);  // (3, 2, out)
        const Tensor y = row(x);
        EXPECT_ALL_CLOSE(y, y_full, kTol64, kTol64);
        const Tensor w = same_randn({3, 2, out}, 32);
        backward(sum(mul(y_full, w)));
        backward(sum(mul(y, w)));
        EXPECT_ALL_CLOSE(x.grad(),
                         input_is_parallel ? shard(x_full.grad(), last_dim(x_full), grid.tp()) : x_full.grad(),
                         kTol64, kTol64);
        EXPECT_ALL_CLOSE(row.weight().grad(), shard(full.weight().grad(), in_cols, grid.tp()), kTol64, kTol64);
        if (bias) {
          EXPECT_ALL_CLOSE(row.bias().grad(), full.bias().grad(), kTol64, kTol64);
        }
      }
    }
  }
}

TEST(ParallelLinear, IndivisibleFeaturesAreConfigErrors) {
  for (int tp : tp_sizes()) {
    if (tp == 1) continue;
    ParallelGrid grid(test::world().group(), tp);
    Generator gen(40);
    EXPECT_THROW(ColumnParallelLinear(4, tp + 1, gen, grid.tp()), ConfigError);
    EXPECT_THROW(ColumnParallelLinear(4, 2 * tp, gen, grid.tp(), true, DType::f32, 3), ConfigError);
    EXPECT_THROW(RowParallelLinear(tp + 1, 4, gen, grid.tp()), ConfigError);
  }
}

// ---------------------------------------------------------------- vocab parallel

TEST(VocabParallelEmbedding, MatchesEmbedding) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const int64_t vocab = 3 * tp, dim = 4;
    Generator full_gen(50), tp_gen(50);
    nn::Embedding full(vocab, dim, full_gen, DType::f64);
    VocabParallelEmbedding emb(vocab, dim, tp_gen, grid.tp(), DType::f64);
    EXPECT_EQ(tp_gen.offset(), full_gen.offset());
    EXPECT_EQ(emb.vocab_start(), grid.tp_rank() * 3);
    EXPECT_ALL_CLOSE(emb.weight(), shard(full.weight(), ShardSpec{0, 1}, grid.tp()), 0.0, 0.0);
    // Every id of the vocabulary (so every rank owns some), with repeats, in i64 and i32.
    std::vector<int64_t> id_values;
    for (int64_t i = 0; i < 2 * vocab; ++i) id_values.push_back((i * 5 + 1) % vocab);
    for (DType id_type : {DType::i64, DType::i32}) {
      full.zero_grad();
      emb.zero_grad();
      const Tensor ids = int_tensor(id_values, {2, vocab}, id_type);  // (2, V)
      const Tensor y_full = full(ids), y = emb.forward(ids);  // (2, V, d)
      // Exact: each output row is one table row plus exact zeros from the other ranks.
      EXPECT_ALL_CLOSE(y, y_full, 0.0, 0.0);
      const Tensor w = same_randn({2, vocab, dim}, 51);
      backward(sum(mul(y_full, w)));
      backward(sum(mul(y, w)));
      // Same scatter-add order per row as the full table, plus exact zeros for masked ids.
      EXPECT_ALL_CLOSE(emb.weight().grad(), shard(full.weight().grad(), ShardSpec{0, 1}, grid.tp()), 0.0, 0.0);
    }
    EXPECT_THROW(emb.forward(int_tensor({0, vocab}, {2})), Error);  // outside the full vocabulary
  }
}

TEST(VocabParallelEmbedding, IndivisibleVocabularyIsConfigError) {
  for (int tp : tp_sizes()) {
    if (tp == 1) continue;
    ParallelGrid grid(test::world().group(), tp);
    Generator gen(52);
    EXPECT_THROW(VocabParallelEmbedding(2 * tp + 1, 4, gen, grid.tp()), ConfigError);
  }
}

const char* reduction_name(Reduction r) {
  return r == Reduction::none ? "none" : r == Reduction::sum ? "sum" : "mean";
}

// Targets (N = 8) over a vocabulary of 3 tp: one in every rank's range, two ignored rows (and, with
// ignore_index 1, a valid class id used as the ignored one, as a padding id is).
Tensor ce_targets(int tp, int64_t ignore_index) {
  const int64_t vocab = 3 * tp;
  std::vector<int64_t> t;
  for (int r = 0; r < tp; ++r) t.push_back(3 * r + (r % 3));
  while (t.size() < 6) t.push_back((static_cast<int64_t>(t.size()) * 7 + 2) % vocab);
  t.resize(6);
  t.insert(t.begin() + 2, ignore_index);
  t.push_back(ignore_index);
  return int_tensor(t, {8});
}

TEST(VocabParallelCrossEntropy, MatchesCrossEntropy) {
  for (int tp : tp_sizes()) {
    ParallelGrid grid(test::world().group(), tp);
    const int64_t n = 8, vocab = 3 * tp;
    for (int64_t ignore_index : {-100, 1}) {
      const Tensor target = ce_targets(tp, ignore_index);
      for (double eps : {0.0, 0.1}) {
        for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
          SCOPED_TRACE("tp " + std::to_string(tp) + " ignore " + std::to_string(ignore_index) + " eps " +
                       std::to_string(eps) + " reduction " + reduction_name(red));
          // Spread 3 so that the max shift matters.
          const Tensor logits_full = leaf(mul(same_randn({n, vocab}, 60), 3.0));  // (N, V)
          const Tensor logits = leaf(shard(logits_full.detach(), ShardSpec{1, 1}, grid.tp()));  // (N, V / tp)
          const Tensor loss_full = cross_entropy(logits_full, target, ignore_index, eps, red);
          const Tensor loss = parallel::vocab_parallel_cross_entropy(logits, target, ignore_index, eps, grid.tp(), red);
          EXPECT_ALL_CLOSE(loss, loss_full, kTol64, kTol64);
          const Tensor g = red == Reduction::none ? same_randn({n}, 61) : Tensor();
          backward(loss_full, g);
          backward(loss, g);
          EXPECT_ALL_CLOSE(logits.grad(), shard(logits_full.grad(), ShardSpec{1, 1}, grid.tp()), kTol64, kTol64);
        }
      }
    }
  }
}

TEST(VocabParallelCrossEntropy, F32AndAllIgnoredMean) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    const int64_t n = 8, vocab = 3 * tp;
    const Tensor target = ce_targets(tp, -100);
    const Tensor logits_full = leaf(same_randn({n, vocab}, 62, DType::f32));
    const Tensor logits = leaf(shard(logits_full.detach(), ShardSpec{1, 1}, grid.tp()));
    const Tensor loss_full = cross_entropy(logits_full, target, -100, 0.1, Reduction::mean);
    const Tensor loss = parallel::vocab_parallel_cross_entropy(logits, target, -100, 0.1, grid.tp(), Reduction::mean);
    EXPECT_EQ(loss.dtype(), DType::f32);
    EXPECT_ALL_CLOSE(loss, loss_full, kTol32, kTol32);
    backward(loss_full);
    backward(loss);
    EXPECT_ALL_CLOSE(logits.grad(), shard(logits_full.grad(), ShardSpec{1, 1}, grid.tp()), kTol32, kTol32);

    // Every row ignored: the mean divides by zero rows, nan as px::cross_entropy (and torch).
    const Tensor none = full({n}, -100.0, DType::i64);
    const double expected = cross_entropy(logits_full.detach(), none, -100, 0.1, Reduction::mean).item();
    const double got =
        parallel::vocab_parallel_cross_entropy(logits.detach(), none, -100, 0.1, grid.tp(), Reduction::mean).item();
    EXPECT_TRUE(std::isnan(expected) && std::isnan(got)) << expected << " vs " << got;
  }
}

TEST(VocabParallelCrossEntropy, GradcheckThroughScatter) {
  // The full logits are the gradcheck input on every rank and scatter_to_tp_region hands each rank its columns:
  // every rank perturbs the same element, so the differences see the whole tp = N function, and the scatter's
  // backward all-gathers the local gradients into the full one.
  for (int tp : tp_sizes()) {
    ParallelGrid grid(test::world().group(), tp);
    const Tensor target = ce_targets(tp, -100);
    for (double eps : {0.0, 0.1}) {
      for (Reduction red : {Reduction::none, Reduction::mean}) {
        SCOPED_TRACE("tp " + std::to_string(tp) + " eps " + std::to_string(eps) + " reduction " + reduction_name(red));
        auto fn = [&](const std::vector<Tensor>& v) {
          return parallel::vocab_parallel_cross_entropy(parallel::scatter_to_tp_region(v[0], grid.tp()), v[1], -100,
                                                        eps, grid.tp(), red);
        };
        EXPECT_TRUE(gradcheck(fn, {uniform64({8, 3 * tp}, 63, -2, 2), target}));
      }
    }
  }
}

// ---------------------------------------------------------------- training

// fc2(tanh(fc1(x))) at tp = 1 (nn::Linear) or sharded (Column then Row), built from the same draws.
class Mlp : public nn::Module {
 public:
  static constexpr int64_t kIn = 6, kHidden = 8, kOut = 5;
  Mlp(Generator& gen, ProcessGroup* tp, DType dtype) : Module("Mlp") {
    if (tp == nullptr) {
      fc1_ = register_module("fc1", std::make_shared<nn::Linear>(kIn, kHidden, gen, true, dtype));
      fc2_ = register_module("fc2", std::make_shared<nn::Linear>(kHidden, kOut, gen, true, dtype));
    } else {
      col_ = register_module("fc1", std::make_shared<ColumnParallelLinear>(kIn, kHidden, gen, *tp, true, dtype));
      row_ = register_module("fc2", std::make_shared<RowParallelLinear>(kHidden, kOut, gen, *tp, true, dtype));
    }
  }
  // x (N, in) -> logits (N, out)
  Tensor forward(const Tensor& x) const {
    return fc1_ ? fc2_->forward(tanh(fc1_->forward(x))) : row_->forward(tanh(col_->forward(x)));
  }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_;
  std::shared_ptr<ColumnParallelLinear> col_;
  std::shared_ptr<RowParallelLinear> row_;
};

// Each parameter of `sharded` against the matching slice of `full`'s parameter of the same name.
void expect_sharded_params_match(const Mlp& full, Mlp& sharded, ProcessGroup& tp, double tol, bool grads) {
  const auto specs = parallel::collect_shard_specs(sharded);
  const auto full_params = full.named_parameters();
  const auto tp_params = sharded.named_parameters();
  ASSERT_EQ(full_params.size(), tp_params.size());
  for (size_t i = 0; i < full_params.size(); ++i) {
    const auto& [name, p_full] = full_params[i];
    const auto& [tp_name, p] = tp_params[i];
    ASSERT_EQ(name, tp_name);
    const auto it = specs.find(name);
    const ShardSpec spec = it == specs.end() ? ShardSpec{} : it->second;
    const Tensor expected = shard(grads ? p_full.grad() : p_full, spec, tp);
    EXPECT_TRUE(all_close(grads ? p.grad() : p, expected, tol, tol, name + (grads ? " grad" : "")));
  }
}

TEST(ParallelMlp, F32ForwardAndGradients) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    Generator full_gen(70), tp_gen(70);
    Mlp full(full_gen, nullptr, DType::f32);
    Mlp sharded(tp_gen, &grid.tp(), DType::f32);
    expect_sharded_params_match(full, sharded, grid.tp(), 0.0, false);  // identical draws
    const Tensor x_full = leaf(same_randn({4, Mlp::kIn}, 71, DType::f32)), x = leaf(x_full.detach());
    const Tensor y_full = full.forward(x_full), y = sharded.forward(x);
    EXPECT_ALL_CLOSE(y, y_full, kTol32, kTol32);
    const Tensor w = same_randn({4, Mlp::kOut}, 72, DType::f32);
    backward(sum(mul(y_full, w)));
    backward(sum(mul(y, w)));
    EXPECT_ALL_CLOSE(x.grad(), x_full.grad(), kTol32, kTol32);
    expect_sharded_params_match(full, sharded, grid.tp(), kTol32, true);
  }
}

// 10 steps of `make_opt` on cross-entropy at tp = 1 and tp = N: the same losses and parameters.
template <typename MakeOptimizer>
void train_and_compare(uint64_t seed, MakeOptimizer make_opt) {
  for (int tp : tp_sizes()) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    ParallelGrid grid(test::world().group(), tp);
    Generator full_gen(seed), tp_gen(seed);
    Mlp full(full_gen, nullptr, DType::f64);
    Mlp sharded(tp_gen, &grid.tp(), DType::f64);
    std::unique_ptr<optim::Optimizer> full_opt = make_opt(full.parameters());
    std::unique_ptr<optim::Optimizer> tp_opt = make_opt(sharded.parameters());
    const Tensor x = same_randn({16, Mlp::kIn}, seed + 1);
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < 16; ++i) labels.push_back((i * 3) % Mlp::kOut);
    const Tensor y = int_tensor(labels, {16});
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < 10; ++step) {
      full_opt->zero_grad();
      tp_opt->zero_grad();
      const Tensor loss_full = cross_entropy(full.forward(x), y);
      const Tensor loss = cross_entropy(sharded.forward(x), y);
      EXPECT_NEAR(loss.item(), loss_full.item(), kTol64) << "step " << step;
      backward(loss_full);
      backward(loss);
      full_opt->step();
      tp_opt->step();
      (step == 0 ? first_loss : last_loss) = loss_full.item();
    }
    EXPECT_LT(last_loss, first_loss) << "the run must train for the comparison to mean something";
    expect_sharded_params_match(full, sharded, grid.tp(), kTol64, false);
  }
}

TEST(ParallelMlp, TrainsLikeTp1WithSgd) {
  train_and_compare(80, [](std::vector<Tensor> params) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::SGD>(std::move(params), 0.1, optim::SGDOptions{0.9});
  });
}

TEST(ParallelMlp, TrainsLikeTp1WithAdamW) {
  train_and_compare(90, [](std::vector<Tensor> params) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::AdamW>(std::move(params), 1e-2, 1e-2);
  });
}

}  // namespace
}  // namespace px::test

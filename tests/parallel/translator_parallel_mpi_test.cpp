// The Translator on dp x tp layouts against the single-process model in the same process: initial shards,
// logits, loss and every gradient at tp = 2 and 4, ten clipped AdamW steps on dp x tp, and checkpoints that
// a tp > 1 run saves (gathered) and any layout loads (sliced).
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/clip_grad_norm.h"
#include "launcher/checkpoint.h"
#include "models/translator/transformer.h"
#include "parallel/dp/grad_bucketer.h"
#include "parallel/grad_clip.h"
#include "parallel/grid.h"
#include "tests/common/compare.h"
#include "tests/common/mpi_test_main.h"
#include "tests/parallel/small_translator.h"

namespace px {
namespace {

using parallel::ParallelGrid;

constexpr uint64_t kSeed = 1234;
// f64 with the same weights and data: tp = N only reorders sums (the row-parallel all-reduce, the vocab-parallel
// log-sum-exp), so results agree to rounding, far below 1e-10.
constexpr double kTol = 1e-10;

// Every parameter of `par` equals its slice of the same-named parameter of `ref` (values, or gradients).
void expect_shards_match(const translator::Translator& par, const translator::Translator& ref, ParallelGrid& grid,
                         bool grads, double tol) {
  auto& par_mut = const_cast<translator::Translator&>(par);
  const auto specs = parallel::collect_shard_specs(par_mut);
  std::map<std::string, Tensor> full;
  for (const auto& [name, p] : ref.named_parameters()) full[name] = p;
  for (const auto& [name, p] : par.named_parameters()) {
    ASSERT_TRUE(full.count(name)) << name;
    const Tensor& r = full[name];
    const auto spec = specs.count(name) ? specs.at(name) : parallel::ShardSpec{};
    const Tensor expected = parallel::shard_of(grads ? r.grad() : r, spec, grid.tp_rank(), grid.tp_size());
    const Tensor actual = grads ? p.grad() : p;
    ASSERT_TRUE(actual.defined()) << name << " has no gradient";
    EXPECT_TRUE(test::all_close(actual, expected, tol, tol, name + (grads ? ".grad" : "")));
  }
}

class TranslatorParallel : public ::testing::TestWithParam<int> {};  // tp

TEST_P(TranslatorParallel, InitLogitsLossAndGradientsMatchOneProcess) {
  parallel::World& world = test::world();
  const int tp = GetParam();
  if (world.size() % tp != 0) GTEST_SKIP() << "world " << world.size() << " is not a multiple of tp " << tp;
  ParallelGrid grid(world.group(), tp);
  for (const bool shared_tied : {true, false}) {
    SCOPED_TRACE(shared_tied ? "shared + tied, post-norm" : "separate + untied, pre-norm");
    const auto o = test::small_translator_options(shared_tied, !shared_tied);
    test::BuiltTranslator ref = test::build_small_translator(o, nullptr, kSeed), par = test::build_small_translator(o, &grid, kSeed);
    expect_shards_match(*par.model, *ref.model, grid, /*grads=*/false, 0.0);  // init: exact slices

    const test::TranslationBatch b = test::random_translation_batch(o, 5, 77);
    const Tensor ref_logits = ref.model->forward(b.src, b.tgt_in);
    EXPECT_ALL_CLOSE(par.model->forward(b.src, b.tgt_in), ref_logits, kTol, kTol);
    for (const double eps : {0.0, 0.1}) {
      const Tensor ref_loss = ref.model->loss(b.src, b.tgt_in, b.tgt_out, eps);
      const Tensor par_loss = par.model->loss(b.src, b.tgt_in, b.tgt_out, eps);
      EXPECT_NEAR(par_loss.item(), ref_loss.item(), kTol * std::abs(ref_loss.item())) << "eps " << eps;
      ref.model->zero_grad();
      par.model->zero_grad();
      backward(ref_loss);
      backward(par_loss);
      expect_shards_match(*par.model, *ref.model, grid, /*grads=*/true, kTol);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tp, TranslatorParallel, ::testing::Values(2, 4));

// One training step on `model`'s slice of the global batch: loss / global tokens, backward, dp all-reduce,
// clipping, AdamW. Returns the global mean loss.
double train_step(translator::Translator& model, optim::AdamW& opt, parallel::GradBucketer* bucketer,
                  ParallelGrid& grid, const test::TranslationBatch& global, double max_norm) {
  const int64_t B = global.src.size(0), per = B / grid.dp_size();
  const test::TranslationBatch mine = global.rows(grid.dp_rank() * per, per);
  const double tokens = global.target_tokens();
  const Tensor loss = model.loss(mine.src, mine.tgt_in, mine.tgt_out, 0.1);
  backward(loss * (1.0 / tokens));
  if (bucketer != nullptr) bucketer->finish();
  const Tensor total = full({1}, loss.item(), DType::f64);
  grid.dp().all_reduce(total, parallel::ReduceOp::sum)->wait();
  parallel::clip_grad_norm(model.named_parameters(), parallel::collect_shard_specs(model), grid.tp(), max_norm);
  opt.step();
  opt.zero_grad();
  return total.item() / tokens;
}

class TranslatorTraining : public ::testing::TestWithParam<int> {};  // tp

// dp x tp = world with the global batch split over dp: ten AdamW steps with clipping active equal one process.
TEST_P(TranslatorTraining, TenStepsOnDpTimesTpMatchOneProcess) {
  parallel::World& world = test::world();
  const int tp = GetParam();
  if (world.size() % tp != 0) GTEST_SKIP() << "world " << world.size() << " is not a multiple of tp " << tp;
  ParallelGrid grid(world.group(), tp);
  const auto o = test::small_translator_options();
  test::BuiltTranslator ref = test::build_small_translator(o, nullptr, kSeed), par = test::build_small_translator(o, &grid, kSeed);
  auto ref_grid = ParallelGrid::single();
  optim::AdamW ref_opt(ref.model->parameters(), 1e-2, 0.01);
  optim::AdamW par_opt(par.model->parameters(), 1e-2, 0.01);
  std::unique_ptr<parallel::GradBucketer> bucketer;
  if (grid.dp_size() > 1) {
    parallel::GradBucketerOptions options;
    options.bucket_bytes = 4096;  // several buckets
    bucketer = std::make_unique<parallel::GradBucketer>(par.model->parameters(), grid.dp(), options);
  }
  const double max_norm = 0.5;  // below the gradient norms of the first steps: clipping is exercised
  for (int step = 0; step < 10; ++step) {
    const test::TranslationBatch global = test::random_translation_batch(o, 8, 1000 + step);
    const double ref_loss = train_step(*ref.model, ref_opt, nullptr, *ref_grid, global, max_norm);
    const double par_loss = train_step(*par.model, par_opt, bucketer.get(), grid, global, max_norm);
    EXPECT_NEAR(par_loss, ref_loss, kTol) << "step " << step;
  }
  expect_shards_match(*par.model, *ref.model, grid, /*grads=*/false, kTol);

  // A checkpoint of the tp run holds the full tensors: it loads into the one-process model (and AdamW), and back
  // into a fresh tp model, bit for bit.
  const Tensor pid = full({1}, world.rank() == 0 ? static_cast<double>(::getpid()) : 0.0, DType::f64);
  world.group().broadcast(pid, 0)->wait();
  const std::string run_dir = "/tmp/px_translator_parallel_" + std::to_string(static_cast<int64_t>(pid.item())) +
                              "_tp" + std::to_string(tp);
  ShardLayout layout;
  layout.tp = &grid.tp();
  layout.specs = parallel::collect_shard_specs(*par.model);
  layout.writer = world.rank() == 0;
  layout.world_size = world.size();
  TrainState state;
  state.step = 10;
  const std::string dir = save_checkpoint(run_dir, *par.model, par_opt, state, "", 1, layout);
  world.group().barrier()->wait();

  test::BuiltTranslator loaded_ref = test::build_small_translator(o, nullptr, kSeed);
  optim::AdamW loaded_ref_opt(loaded_ref.model->parameters(), 1e-2, 0.01);
  load_checkpoint(dir, *loaded_ref.model, &loaded_ref_opt, nullptr);
  const auto ref_named = ref.model->named_parameters();
  const auto loaded_named = loaded_ref.model->named_parameters();
  for (size_t i = 0; i < ref_named.size(); ++i) {
    EXPECT_TRUE(test::all_close(loaded_named[i].second, ref_named[i].second, kTol, kTol, ref_named[i].first));
    const auto* a = loaded_ref_opt.state(loaded_named[i].second);
    const auto* e = ref_opt.state(ref_named[i].second);
    ASSERT_TRUE(a != nullptr && e != nullptr) << ref_named[i].first;
    EXPECT_EQ(a->step, e->step);
    for (const auto& [key, t] : e->tensors)
      EXPECT_TRUE(test::all_close(a->tensors.at(key), t, kTol, kTol, ref_named[i].first + "." + key));
  }

  test::BuiltTranslator loaded_par = test::build_small_translator(o, &grid, kSeed);
  optim::AdamW loaded_par_opt(loaded_par.model->parameters(), 1e-2, 0.01);
  load_checkpoint(dir, *loaded_par.model, &loaded_par_opt, nullptr, layout);
  const auto par_named = par.model->named_parameters();
  const auto loaded_par_named = loaded_par.model->named_parameters();
  for (size_t i = 0; i < par_named.size(); ++i) {
    EXPECT_TRUE(test::all_close(loaded_par_named[i].second, par_named[i].second, 0, 0, par_named[i].first));
    const auto* a = loaded_par_opt.state(loaded_par_named[i].second);
    const auto* e = par_opt.state(par_named[i].second);
    ASSERT_TRUE(a != nullptr && e != nullptr) << par_named[i].first;
    for (const auto& [key, t] : e->tensors)
      EXPECT_TRUE(test::all_close(a->tensors.at(key), t, 0, 0, par_named[i].first + "." + key));
  }
  world.group().barrier()->wait();
  if (world.rank() == 0) std::filesystem::remove_all(run_dir);
}

INSTANTIATE_TEST_SUITE_P(Tp, TranslatorTraining, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace px

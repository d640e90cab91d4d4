// core/optim against PyTorch (tests/oracle/gen_optim.py): SGD and AdamW trajectories over a fixed gradient
// sequence (fused host loop and device-generic path), clip_grad_norm_, and the lr schedules.
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/clip_grad_norm.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/sgd.h"
#include "core/util/error.h"
#include "tests/common/compare.h"
#include "tests/common/pxt.h"

namespace px::test {
namespace {

using optim::ParamGroup;

const PxtFile& oracle() {
  static const PxtFile file("optim.pxt");
  return file;
}

constexpr int kSteps = 6;
constexpr int kSkipStep = 2, kSkipParam = 1;  // no gradient for parameter 1 at step index 2

// Mirrors CONFIGS in gen_optim.py.
struct Config {
  std::string name;
  bool adamw;
  std::vector<std::pair<double, double>> groups;  // (lr, weight_decay); several: group i holds param i
  DType dtype;
  std::map<int, std::vector<double>> lr_changes;  // step index -> lr per group
  optim::SGDOptions sgd{};
  optim::AdamWOptions adam{};
};

std::vector<Config> configs() {
  return {
      {"sgd_plain", false, {{0.1, 0.0}}, DType::f32, {}},
      {"sgd_momentum", false, {{0.1, 0.0}}, DType::f32, {}, {0.9, 0.0, false}},
      {"sgd_dampening", false, {{0.05, 0.0}}, DType::f32, {}, {0.8, 0.3, false}},
      {"sgd_nesterov_wd", false, {{0.05, 0.01}}, DType::f32, {}, {0.9, 0.0, true}},
      {"sgd_wd", false, {{0.1, 0.1}}, DType::f32, {}},
      {"adamw_default", true, {{1e-3, 1e-2}}, DType::f32, {}},
      {"adamw_custom", true, {{0.01, 0.1}}, DType::f32, {}, {}, {0.8, 0.95, 1e-6}},
      {"adamw_groups", true, {{0.02, 0.1}, {0.001, 0.0}}, DType::f32, {{3, {0.01, 0.004}}}},
      {"adamw_f64", true, {{0.01, 0.05}}, DType::f64, {}},
      {"sgd_groups_f64", false, {{0.1, 0.0}, {0.01, 0.2}}, DType::f64, {{4, {0.05, 0.02}}}, {0.9, 0.0, false}},
  };
}

void run_config(const Config& c, bool fused) {
  SCOPED_TRACE(c.name + (fused ? " (fused)" : " (generic)"));
  const PxtFile& f = oracle();
  std::vector<Tensor> params;
  for (int j = 0; j < 2; ++j)
    params.push_back(to_dtype(f.get("p0." + std::to_string(j)), c.dtype).set_requires_grad(true));
  std::vector<ParamGroup> groups;
  if (c.groups.size() == 1) {
    groups.push_back({params, c.groups[0].first, c.groups[0].second, "all"});
  } else {
    for (size_t i = 0; i < c.groups.size(); ++i)
      groups.push_back({{params[i]}, c.groups[i].first, c.groups[i].second, "g" + std::to_string(i)});
  }
  std::unique_ptr<optim::Optimizer> opt;
  if (c.adamw) {
    opt = std::make_unique<optim::AdamW>(groups, c.adam);
  } else {
    opt = std::make_unique<optim::SGD>(groups, c.sgd);
  }
  opt->set_fused(fused);
  const double tol = c.dtype == DType::f64 ? 1e-12 : 2e-6;
  for (int k = 0; k < kSteps; ++k) {
    if (auto it = c.lr_changes.find(k); it != c.lr_changes.end())
      for (size_t g = 0; g < it->second.size(); ++g) opt->set_lr(it->second[g], g);
    opt->zero_grad();
    for (int j = 0; j < 2; ++j)
      if (!(k == kSkipStep && j == kSkipParam))
        params[j].set_grad(to_dtype(f.get("grad." + std::to_string(k) + "." + std::to_string(j)), c.dtype));
    opt->step();
    for (int j = 0; j < 2; ++j) {
      const Tensor expected = f.get(c.name + ".step" + std::to_string(k + 1) + "." + std::to_string(j));
      EXPECT_ALL_CLOSE(params[j], expected, tol, tol) << "after step " << k + 1 << ", param " << j;
    }
  }
  // Per-parameter state: parameter 1 missed one update.
  ASSERT_NE(opt->state(params[0]), nullptr);
  EXPECT_EQ(opt->state(params[0])->step, kSteps);
  EXPECT_EQ(opt->state(params[1])->step, kSteps - 1);
  const auto& tensors = opt->state(params[0])->tensors;
  if (c.adamw) {
    EXPECT_TRUE(tensors.count("exp_avg") && tensors.count("exp_avg_sq"));
    EXPECT_EQ(tensors.at("exp_avg").shape(), params[0].shape());
  } else {
    EXPECT_EQ(tensors.count("momentum_buffer"), c.sgd.momentum != 0.0 ? 1u : 0u);
  }
}

TEST(OptimVsTorch, SgdAndAdamWFusedLoops) {
  for (const Config& c : configs()) run_config(c, /*fused=*/true);
}

TEST(OptimVsTorch, SgdAndAdamWGenericPath) {
  for (const Config& c : configs()) run_config(c, /*fused=*/false);
}

TEST(OptimVsTorch, ClipGradNorm) {
  const PxtFile& f = oracle();
  for (const std::string label : {"small", "large"}) {
    std::vector<Tensor> params;
    for (int j = 0; j < 3; ++j) {
      const Tensor g = f.get("clip.g." + std::to_string(j));
      params.push_back(zeros(g.shape()).set_requires_grad(true));
      params.back().set_grad(clone(g));
    }
    params.push_back(zeros({2}).set_requires_grad(true));  // no gradient: ignored
    const double max_norm = label == "small" ? 1.0 : 1e3;
    const double total = optim::clip_grad_norm(params, max_norm);
    EXPECT_NEAR(total, f.get("clip." + label + ".total").item(), 1e-5) << label;
    for (int j = 0; j < 3; ++j)
      EXPECT_ALL_CLOSE(params[j].grad(), f.get("clip." + label + ".g." + std::to_string(j)), 1e-6, 1e-7) << label;
    if (label == "small") EXPECT_NEAR(std::sqrt(optim::grad_sq_sum(params)), 1.0, 1e-5);
  }
}

TEST(OptimVsTorch, ClipGradNormReducesAcrossRanks) {
  // Two "ranks" each holding half of the gradients: the reducer adds the other rank's local sum.
  const PxtFile& f = oracle();
  auto make = [&](int j) {
    Tensor p = zeros(f.get("clip.g." + std::to_string(j)).shape()).set_requires_grad(true);
    p.set_grad(clone(f.get("clip.g." + std::to_string(j))));
    return p;
  };
  std::vector<Tensor> rank0 = {make(0)}, rank1 = {make(1), make(2)};
  const double s0 = optim::grad_sq_sum(rank0), s1 = optim::grad_sq_sum(rank1);
  const double t0 = optim::clip_grad_norm(rank0, 1.0, [&](double local) { return local + s1; });
  const double t1 = optim::clip_grad_norm(rank1, 1.0, [&](double local) { return local + s0; });
  EXPECT_NEAR(t0, f.get("clip.small.total").item(), 1e-5);
  EXPECT_DOUBLE_EQ(t0, t1);
  EXPECT_ALL_CLOSE(rank0[0].grad(), f.get("clip.small.g.0"), 1e-6, 1e-7);
  EXPECT_ALL_CLOSE(rank1[1].grad(), f.get("clip.small.g.2"), 1e-6, 1e-7);
  EXPECT_THROW(optim::clip_grad_norm(rank0, 0.0), ConfigError);
}

// The lr used by updates 1..n under `s` with base 0.5, as an f64 tensor.
Tensor lrs(const optim::LrSchedule& s, int64_t n, int64_t first = 1) {
  std::vector<double> v;
  for (int64_t k = first; k < first + n; ++k) v.push_back(s.lr_at(k, 0.5));
  return from_vector(v, {n}, DType::f64);
}

TEST(OptimVsTorch, Schedules) {
  const PxtFile& f = oracle();
  EXPECT_ALL_CLOSE(lrs(optim::ConstantSchedule(), 40), f.get("sched.constant"), 1e-12, 0);
  EXPECT_ALL_CLOSE(lrs(optim::InverseSqrtSchedule(8), 40), f.get("sched.inverse_sqrt"), 1e-12, 0);
  EXPECT_ALL_CLOSE(lrs(optim::StepDecaySchedule(7, 0.5), 40), f.get("sched.step_decay"), 1e-12, 0);
  const optim::CosineSchedule cosine(5, 30, 0.1);
  EXPECT_ALL_CLOSE(lrs(cosine, 40), f.get("sched.cosine"), 1e-12, 1e-15);
  EXPECT_ALL_CLOSE(lrs(cosine, 26, /*first=*/5), f.get("sched.cosine_torch_tail"), 1e-9, 1e-12);
  // Landmarks of the formulas.
  const optim::InverseSqrtSchedule inv(4000);
  EXPECT_DOUBLE_EQ(inv.lr_at(4000, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(inv.lr_at(16000, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(inv.lr_at(1, 1.0), 1.0 / 4000);
  // The paper's rate: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) with base (d_model * warmup)^-0.5.
  const double d = 512, w = 4000, base = 1.0 / std::sqrt(d * w);
  for (double s : {1.0, 100.0, 3999.0, 4000.0, 4001.0, 1e5})
    EXPECT_NEAR(inv.lr_at(static_cast<int64_t>(s), base), std::pow(d, -0.5) * std::min(std::pow(s, -0.5), s * std::pow(w, -1.5)),
                1e-15);
  EXPECT_DOUBLE_EQ(cosine.lr_at(30, 0.5), 0.05);
  EXPECT_DOUBLE_EQ(cosine.lr_at(1000, 0.5), 0.05);
  EXPECT_THROW(optim::InverseSqrtSchedule(0), ConfigError);
  EXPECT_THROW(optim::CosineSchedule(10, 10), ConfigError);
  EXPECT_THROW(optim::StepDecaySchedule(0, 0.1), ConfigError);
}

TEST(Optimizer, GroupsScheduleRelativeToTheirInitialLr) {
  // DETR: backbone at 1e-5, the rest at 1e-4; a schedule keeps the ratio.
  Tensor backbone = zeros({3}).set_requires_grad(true), head = zeros({2}).set_requires_grad(true);
  optim::AdamW opt({{{backbone}, 1e-5, 1e-4, "backbone"}, {{head}, 1e-4, 1e-4, "rest"}});
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_EQ(opt.group(0).name, "backbone");
  const optim::StepDecaySchedule decay(10, 0.1);
  optim::apply_schedule(opt, decay, 11);
  EXPECT_DOUBLE_EQ(opt.lr(0), 1e-6);
  EXPECT_DOUBLE_EQ(opt.lr(1), 1e-5);
  optim::apply_schedule(opt, decay, 1);
  EXPECT_DOUBLE_EQ(opt.lr(0), 1e-5);
  opt.set_lr(3e-4);
  EXPECT_DOUBLE_EQ(opt.lr(0), 3e-4);
  EXPECT_DOUBLE_EQ(opt.group(0).initial_lr, 1e-5);  // set_lr does not move the schedule's base
  EXPECT_EQ(opt.params().size(), 2u);
  EXPECT_EQ(opt.state(head), nullptr);  // no state before the first update
  EXPECT_THROW(opt.set_lr(-1.0, 0), ConfigError);
}

TEST(Optimizer, InvalidHyperparametersAreConfigErrors) {
  Tensor p = zeros({2}).set_requires_grad(true);
  EXPECT_THROW(optim::SGD({p}, -0.1), ConfigError);
  EXPECT_THROW(optim::SGD({p}, 0.1, {0.0, 0.0, /*nesterov=*/true}), ConfigError);
  EXPECT_THROW(optim::SGD({p}, 0.1, {0.9, 0.5, /*nesterov=*/true}), ConfigError);
  EXPECT_THROW(optim::AdamW({p}, 1e-3, 0.01, {1.0, 0.999, 1e-8}), ConfigError);
  EXPECT_THROW(optim::AdamW({p}, 1e-3, -0.01), ConfigError);
  try {
    optim::SGD opt({{{p}, 0.1, -1.0, "backbone"}});
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("backbone"), std::string::npos) << e.what();
  }
}

TEST(Optimizer, StepSkipsParametersWithoutGradientsAndZeroGradClears) {
  Tensor a = ones({2}).set_requires_grad(true), b = ones({2}).set_requires_grad(true);
  optim::SGD opt({a, b}, 0.5);
  a.set_grad(full({2}, 2.0));
  const uint64_t version = a.version();
  opt.step();
  EXPECT_EQ(to_vector(a), (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(to_vector(b), (std::vector<double>{1.0, 1.0}));
  EXPECT_GT(a.version(), version);  // saved-tensor checks see the update
  opt.zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(to_vector(a.grad()), (std::vector<double>{0.0, 0.0}));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  // State can be created for checkpoint loading, and is then used.
  optim::SGD mom({a}, 1.0, {0.5});
  optim::ParamState& st = mom.mutable_state(a);
  st.tensors["momentum_buffer"] = full({2}, 4.0);
  a.set_grad(full({2}, 1.0));
  mom.step();  // buf = 0.5 * 4 + 1 = 3; a = 0 - 3
  EXPECT_EQ(to_vector(a), (std::vector<double>{-3.0, -3.0}));
}

TEST(Optimizer, FullStateLoadsIntoAFreshOptimizerThatThenContinuesExactly) {
  // a and b are trained for three steps; c never gets a gradient (no state, no entry).
  auto make = [] {
    std::vector<Tensor> params;
    for (int64_t n : {4, 3, 2}) params.push_back(full({n}, 0.5).set_requires_grad(true));
    return params;
  };
  const std::vector<Tensor> trained = make(), fresh = make();
  optim::AdamW opt({{{trained[0], trained[1]}, 1e-2, 0.1, "ab"}, {{trained[2]}, 1e-3, 0.0, "c"}});
  optim::AdamW loaded({{{fresh[0], fresh[1]}, 1e-2, 0.1, "ab"}, {{fresh[2]}, 1e-3, 0.0, "c"}});
  auto step = [](optim::AdamW& o, const std::vector<Tensor>& params, int k) {
    for (size_t j = 0; j < 2; ++j) params[j].set_grad(full(params[j].shape(), 0.25 * (k + 1) - 0.3 * j));
    o.step();
    o.zero_grad();
  };
  for (int k = 0; k < 3; ++k) step(opt, trained, k);
  step(loaded, fresh, 7);  // stale state the load must replace; c gets some too
  fresh[2].set_grad(full({2}, 1.0));
  loaded.step();
  loaded.zero_grad();
  EXPECT_EQ(opt.model_params().size(), 3u);

  const std::vector<optim::FullParamState> state = opt.gather_full_state();
  ASSERT_EQ(state.size(), 2u);  // c has none
  EXPECT_EQ(state[1].param.impl(), trained[1].impl());
  EXPECT_EQ(state[1].state.step, 3);
  EXPECT_EQ(state[1].state.tensors.at("exp_avg").shape(), trained[1].shape());
  std::vector<optim::FullParamState> keyed;  // the same state, keyed by the fresh parameters
  for (size_t j = 0; j < state.size(); ++j) keyed.push_back(optim::FullParamState{fresh[j], state[j].state});
  {
    NoGradGuard no_grad;
    for (size_t j = 0; j < 3; ++j) copy_(fresh[j], trained[j]);
  }
  loaded.load_full_state(keyed);
  EXPECT_EQ(loaded.state(fresh[2]), nullptr);  // absent from the full state: none, as before a first update
  ASSERT_NE(loaded.state(fresh[0]), nullptr);
  EXPECT_EQ(loaded.state(fresh[0])->step, 3);
  step(opt, trained, 3);
  step(loaded, fresh, 3);
  for (size_t j = 0; j < 3; ++j) EXPECT_ALL_CLOSE(fresh[j], trained[j], 0, 0) << "param " << j;
}

}  // namespace
}  // namespace px::test
